/* bam_crash: stands in for an optimized binary that is broken: it faults
 * at once. Like GCC's cc1, it first installs its own SIGSEGV handler (which
 * would report and exit 4): the preload must keep its own handler in an
 * optimized process, or the fault would not be seen as one. The BAM
 * fallback test installs this program as a cache entry's `optimized`. */
#include <signal.h>
#include <unistd.h>

static void crash_signal(int sig)
{
	(void)sig;
	static const char m[] = "bam_crash: internal error (own handler)\n";
	write(2, m, sizeof(m) - 1);
	_exit(4);
}

int main(void)
{
	signal(SIGSEGV, crash_signal);
	raise(SIGSEGV);
	return 0;
}

/* bam_crash: stands in for an optimized binary that is broken: it faults
 * at once. The BAM fallback test installs it as a cache entry's
 * `optimized` file. */
#include <signal.h>
int main(void)
{
	raise(SIGSEGV);
	return 0;
}

/*
 * autoself — LD_PRELOAD shim that runs one libocolos round inside an
 * unmodified program (used by the benchmark on SQLite's speedtest1).
 *
 * Responsible for: starting, from a constructor, a detached thread that
 * sleeps OCOLOS_AFTER seconds and then calls ocolos_optimize_self(), and
 * reporting the result on stderr as one machine-readable line:
 *   ocolos rc=<rc> t_start=<s> t_done=<s> samples=... pause_ns=...
 *   rss_before_kb=... rss_after_kb=... [error="..."]
 * Times are seconds since the constructor ran (≈ program start). Also makes
 * stdout line-buffered so a driver reading a pipe sees lines as they come.
 * Not responsible for measuring the program's speed.
 *
 * Environment:
 *   OCOLOS_AFTER       seconds to wait (default 5; unset or "off": no round)
 *   OCOLOS_PROFILE_MS  sampling window (default: library default)
 *   OCOLOS_HZ          sample rate (default: library default)
 *   OCOLOS_MAX_OVERHEAD sampling cost limit, permille (default: library
 *                      default; 1000: no limit)
 *   OCOLOS_KEEP        1: keep the library's work directory
 *   OCOLOS_VERBOSE     1: the library's log (info and above) on stderr,
 *                      "ocolos-log: " before each line
 *   OCOLOS_BOLT        llvm-bolt to use (opts.bolt_path), e.g.
 *                      bench/bolt_twostep.sh
 *   OCOLOS_BOLT_ARGS   extra llvm-bolt arguments, space-separated
 *   OCOLOS_AB_PAIRS    after a successful round, K pairs of windows running
 *                      C1 then C0 (or C0 then C1, alternating) through
 *                      ocolos_revert_self()/ocolos_reapply_self(); every
 *                      switch is reported as
 *                        ocolos-ab state=<c1|c0> t=<s> pause_ns=<ns>
 *                      and the driver attributes the program's own timings
 *                      to the windows (bench/driver.py ab --workload sqlite)
 *   OCOLOS_AB_SECS     window length (default 4)
 *
 * build: gcc -O2 -fPIC -shared -o autoself.so bench/autoself.c \
 *          -Iinclude -Lbuild -locolos -Wl,-rpath,$PWD/build -pthread
 * use:   OCOLOS_AFTER=5 LD_PRELOAD=$PWD/autoself.so ./speedtest1 ...
 * LD_PRELOAD is inherited: unset it in children you do not want optimized
 * (the shim removes it from its own environment once the thread started).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ocolos/ocolos.h>

static struct timespec g_t0;
static double g_after;

static double since_start(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - g_t0.tv_sec) +
	       (double)(t.tv_nsec - g_t0.tv_nsec) / 1e9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static uint32_t env_u32(const char *name)
{
	const char *v = getenv(name);

	return v ? (uint32_t)strtoul(v, NULL, 0) : 0;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* See OCOLOS_AB_PAIRS above. C1 is in use when this starts. */
static void ab_phase(int pairs, double secs)
{
	int in_c1 = 1;

	for (int i = 0; i < pairs; i++) {
		int first = (i % 2 == 0);
		for (int k = 0; k < 2; k++) {
			int want = k == 0 ? first : !first;
			OCOLOS_OPTS(ocolos_switch_stats, ss);
			if (want != in_c1) {
				int rc = want ? ocolos_reapply_self(&ss)
					      : ocolos_revert_self(&ss);
				if (rc) {
					fprintf(stderr, "ocolos-ab error=\"%s\"\n",
						ocolos_strerror(rc));
					return;
				}
				in_c1 = want;
			}
			fprintf(stderr, "ocolos-ab state=%s t=%.3f pause_ns=%" PRIu64
				"\n", want ? "c1" : "c0", since_start(), ss.pause_ns);
			sleep_s(secs);
		}
	}
	if (!in_c1)
		ocolos_reapply_self(NULL);
	fprintf(stderr, "ocolos-ab state=end t=%.3f\n", since_start());
}

static void log_stderr(enum ocolos_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level <= OCOLOS_LOG_INFO)
		fprintf(stderr, "ocolos-log: %s\n", msg);
}

static void *autoself_main(void *arg)
{
	struct timespec ts = { (time_t)g_after,
			       (long)((g_after - (time_t)g_after) * 1e9) };
	OCOLOS_OPTS(ocolos_stats, st);
	int rc;

	(void)arg;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	/* OCOLOS_BOLT_ARGS split at spaces (16 at most). */
	static char argbuf[1024];
	static const char *bolt_args[17];
	const char *ea = getenv("OCOLOS_BOLT_ARGS");
	int na = 0;
	if (ea && *ea) {
		snprintf(argbuf, sizeof(argbuf), "%s", ea);
		for (char *save = NULL, *t = strtok_r(argbuf, " ", &save);
		     t && na < 16; t = strtok_r(NULL, " ", &save))
			bolt_args[na++] = t;
	}
	const char *bolt = getenv("OCOLOS_BOLT");
	OCOLOS_OPTS(ocolos_opts, opts,
		    .profile_ms = env_u32("OCOLOS_PROFILE_MS"),
		    .sample_hz = env_u32("OCOLOS_HZ"),
		    .max_overhead_permille = env_u32("OCOLOS_MAX_OVERHEAD"),
		    .keep_work_dir = (int)env_u32("OCOLOS_KEEP"),
		    .log_fn = env_u32("OCOLOS_VERBOSE") ? log_stderr : NULL,
		    .bolt_path = bolt && *bolt ? bolt : NULL,
		    .bolt_extra_args = na ? bolt_args : NULL);
	long rss0 = rss_kb();
	double t_start = since_start();
	rc = ocolos_optimize_self(&opts, &st);
	double t_done = since_start();
	long rss1 = rss_kb();
	char msg[1024] = "";
	if (rc) {
		snprintf(msg, sizeof(msg), "%s", ocolos_last_error(NULL));
		for (char *c = msg; *c; c++)
			if (*c == '"' || *c == '\n')
				*c = '\'';
	}
	/* One fprintf: stderr is unbuffered, keep the line in one write. */
	fprintf(stderr,
		"ocolos rc=%d t_start=%.3f t_done=%.3f samples=%" PRIu64
		" samples_in_binary=%" PRIu64 " functions_moved=%" PRIu32
		" c1_bytes=%" PRIu64 " call_sites_patched=%" PRIu32
		" pointer_slots_patched=%" PRIu32 " threads_stopped=%" PRIu32
		" profile_ns=%" PRIu64 " bolt_ns=%" PRIu64 " pause_ns=%" PRIu64
		" round_ns=%" PRIu64 " rss_before_kb=%ld rss_after_kb=%ld profile_stop=%u"
		" sample_overhead_ppm=%" PRIu32 " sample_hz_final=%" PRIu32 "%s%s%s%s%s\n",
		rc, t_start, t_done, st.samples, st.samples_in_binary,
		st.functions_moved, st.c1_bytes, st.call_sites_patched,
		st.pointer_slots_patched, st.threads_stopped, st.profile_ns,
		st.bolt_ns, st.pause_ns, st.round_ns, rss0, rss1, (unsigned)st.profile_stop,
		st.sample_overhead_ppm, st.sample_hz_final,
		rc ? " strerror=\"" : "", rc ? ocolos_strerror(rc) : "",
		rc ? "\" error=\"" : "", rc ? msg : "", rc ? "\"" : "");
	int pairs = (int)env_u32("OCOLOS_AB_PAIRS");
	if (rc == 0 && pairs > 0) {
		const char *v = getenv("OCOLOS_AB_SECS");
		ab_phase(pairs, v && *v ? atof(v) : 4.0);
	}
	return NULL;
}

__attribute__((constructor)) static void autoself_init(void)
{
	const char *after = getenv("OCOLOS_AFTER");
	pthread_attr_t attr;
	pthread_t tid;

	clock_gettime(CLOCK_MONOTONIC, &g_t0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!after || !*after || !strcmp(after, "off"))
		return;
	g_after = atof(after);
	/* Children (e.g. a shell the program runs) should not run rounds of
	 * their own on their own binaries. */
	unsetenv("LD_PRELOAD");
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, autoself_main, NULL))
		fprintf(stderr, "ocolos rc=-1 error=\"autoself: "
				"pthread_create failed\"\n");
	pthread_attr_destroy(&attr);
}

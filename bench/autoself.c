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
 *   OCOLOS_KEEP        1: keep the library's work directory
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

static void *autoself_main(void *arg)
{
	struct timespec ts = { (time_t)g_after,
			       (long)((g_after - (time_t)g_after) * 1e9) };
	struct ocolos_stats st;
	int rc;

	(void)arg;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	OCOLOS_OPTS(ocolos_self_opts, opts,
		    .profile_ms = env_u32("OCOLOS_PROFILE_MS"),
		    .sample_hz = env_u32("OCOLOS_HZ"),
		    .keep_work_dir = (int)env_u32("OCOLOS_KEEP"));
	memset(&st, 0, sizeof(st));
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
		" round_ns=%" PRIu64 " rss_before_kb=%ld rss_after_kb=%ld%s%s%s%s%s\n",
		rc, t_start, t_done, st.samples, st.samples_in_binary,
		st.functions_moved, st.c1_bytes, st.call_sites_patched,
		st.pointer_slots_patched, st.threads_stopped, st.profile_ns,
		st.bolt_ns, st.pause_ns, st.round_ns, rss0, rss1,
		rc ? " strerror=\"" : "", rc ? ocolos_strerror(rc) : "",
		rc ? "\" error=\"" : "", rc ? msg : "", rc ? "\"" : "");
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

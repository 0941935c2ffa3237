/*
 * main() of the generated front-end-bound benchmark (bench/gen_frontend.py
 * copies this file next to the generated sources as fe_main.c).
 *
 * Responsible for: running the worker loop in N threads, printing
 * machine-readable throughput lines, a correctness checksum before and after
 * the run, and (when built with -DWITH_OCOLOS and linked with libocolos) one
 * in-process optimization round after a warm-up. Not responsible for any
 * measurement logic beyond counting operations: bench/driver.py does that.
 *
 * Output lines (one record per line, key=value, stdout, flushed):
 *   fe pid=<pid> funcs=<n> roots=<n> threads=<n> depth=<d> pie=<0|1>
 *   check start=<hex>
 *   tput t=<sec> ops=<ops in interval> ops_per_s=<rate>
 *   ocolos rc=<rc> t_start=<sec> t_done=<sec> samples=... [error="..."]
 *   ab pair=<i> first=<c1|c0> c1_ops_per_s=<x> c0_ops_per_s=<x> ratio=<c1/c0>
 *      revert_ns=<ns> reapply_ns=<ns>          (--ab-pairs, after the round)
 *   ab done pairs=<k> median=<x> q1=<x> q3=<x>
 *   cg phase=<c0|c1> round=<i> ops=<n> valgrind=<0|1>  (--cg-ops, after the
 *      round; under callgrind each phase is one dump, named "phase-c0-<i>")
 *   phase t=<sec> set=<0|1>   (program generated with --phases 2: at the
 *      start, and at the end of the interval in which the hot set switched)
 *   done secs=<sec> ops=<total> ops_per_s=<rate> rss_kb=<kb>
 *   check end=<hex> ok=<0|1>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fe.h"

#ifdef WITH_OCOLOS
#include <ocolos/ocolos.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define FE_HAVE_CALLGRIND 1
#endif
#endif

/* Rare-block mask: the compiler cannot see its value, so the cold blocks
 * stay in the code; with 20 bits they run about once in 2^20 tests. */
uint64_t fe_rare_mask = 0xfffff;

struct worker {
	_Atomic uint64_t ops; /* operations done so far */
	uint64_t sum;	      /* keeps the results alive */
	uint64_t limit;	      /* --ops mode: stop after this many (0: none) */
	int id;
	pthread_t tid;
	char pad[64];
};

static _Atomic int g_stop;
static _Atomic int g_ab_done;	/* --ab-pairs: the A/B phase is over */
/* --cg-ops: workers park while the online thread measures alone. */
static pthread_mutex_t g_park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_park_cv = PTHREAD_COND_INITIALIZER;
static int g_park, g_parked;
static struct worker *g_workers;
static long g_nthreads;
static int g_depth = 5;
static struct timespec g_t0;

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - g_t0.tv_sec) +
	       (double)(t.tv_nsec - g_t0.tv_nsec) / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* One operation: a call tree of depth g_depth from a root picked with a
 * skewed distribution (product of two uniforms), so some hot functions are
 * much hotter than others, as in real programs. */
#if FE_NPHASES == 2
/* Hot set in use (program generated with --phases 2): 0 runs the roots of
 * set 0, 1 those of set 1. --phase2-after SEC and SIGUSR1 switch it. */
static _Atomic int g_phase;

static uint64_t fe_op_in(uint64_t *rng, int phase)
{
	uint64_t r = xorshift(rng);
	uint64_t base = phase ? FE_NROOTS0 : 0;
	uint64_t n = phase ? FE_NROOTS - FE_NROOTS0 : FE_NROOTS0;
	uint64_t a = (uint32_t)r % n, b = (r >> 32) % n;

	return fe_roots[base + a * b / n](r, g_depth);
}

static uint64_t fe_op(uint64_t *rng)
{
	return fe_op_in(rng, atomic_load_explicit(&g_phase, memory_order_relaxed));
}

static _Atomic int g_quit; /* SIGUSR2: end the run at the next tick */

static void on_sigusr(int sig)
{
	if (sig == SIGUSR1)
		atomic_fetch_xor(&g_phase, 1);
	else
		atomic_store(&g_quit, 1);
}

/* Deterministic checksum of `n` operations of each set from a fixed seed. */
static uint64_t checksum(long n)
{
	uint64_t rng = 0x9e3779b97f4a7c15ULL, sum = 0;

	for (int ph = 0; ph < 2; ph++)
		for (long i = 0; i < n; i++)
			sum = sum * 31 + fe_op_in(&rng, ph);
	return sum;
}
#else
static uint64_t fe_op(uint64_t *rng)
{
	uint64_t r = xorshift(rng);
	uint64_t a = (uint32_t)r % FE_NROOTS, b = (r >> 32) % FE_NROOTS;

	return fe_roots[a * b / FE_NROOTS](r, g_depth);
}

/* Deterministic checksum of `n` operations from a fixed seed. */
static uint64_t checksum(long n)
{
	uint64_t rng = 0x9e3779b97f4a7c15ULL, sum = 0;

	for (long i = 0; i < n; i++)
		sum = sum * 31 + fe_op(&rng);
	return sum;
}
#endif

static void *worker_main(void *p)
{
	struct worker *w = p;
	uint64_t rng = 0x2545f4914f6cdd1dULL * (uint64_t)(w->id + 1);

	while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		for (int i = 0; i < 64; i++)
			w->sum += fe_op(&rng);
		uint64_t n = atomic_fetch_add_explicit(&w->ops, 64,
						       memory_order_relaxed);
		if (w->limit && n + 64 >= w->limit)
			break;
		if (__atomic_load_n(&g_park, __ATOMIC_RELAXED)) {
			pthread_mutex_lock(&g_park_mu);
			g_parked++;
			pthread_cond_broadcast(&g_park_cv);
			while (g_park)
				pthread_cond_wait(&g_park_cv, &g_park_mu);
			g_parked--;
			pthread_mutex_unlock(&g_park_mu);
		}
	}
	/* A finished worker counts as parked: --cg-ops never waits for it. */
	pthread_mutex_lock(&g_park_mu);
	g_parked++;
	pthread_cond_broadcast(&g_park_cv);
	pthread_mutex_unlock(&g_park_mu);
	return NULL;
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

static int is_pie(void)
{
	extern char __executable_start[];

	/* Non-PIE x86-64 executables link at 0x400000. */
	return (uintptr_t)__executable_start != 0x400000;
}

#ifdef WITH_OCOLOS
struct online {
	double after;
	uint32_t profile_ms, sample_hz;
	int keep;
	int edges;		      /* --ocolos-edges (enum ocolos_edges) */
	const char *bolt;	      /* --ocolos-bolt */
	const char *bolt_args[17];    /* --ocolos-bolt-arg, NULL-ended */
	int ab_pairs;		      /* --ab-pairs */
	double ab_secs;		      /* --ab-secs */
	long cg_ops;		      /* --cg-ops */
	int sampler;		      /* --ocolos-sampler (enum ocolos_sampler) */
	int writable_slots;	      /* --ocolos-writable-slots */
	/* --ocolos-profile-min-ms, --ocolos-profile-max-ms,
	 * --ocolos-converge-permille, --ocolos-max-overhead-permille */
	uint32_t profile_min_ms, profile_max_ms, converge_permille, max_overhead_permille;
	int rounds;		      /* --online-rounds */
	pthread_t tid;
};

static uint64_t total_ops(void)
{
	uint64_t t = 0;

	for (long i = 0; i < g_nthreads; i++)
		t += atomic_load(&g_workers[i].ops);
	return t;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Quantile with linear interpolation (same as Python's
 * statistics.quantiles(method="inclusive")). */
static double quantile(const double *sorted, int n, double q)
{
	double pos = q * (n - 1);
	int i = (int)pos;

	if (i + 1 >= n)
		return sorted[n - 1];
	return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

/*
 * In-process A/B: after a successful round, alternate C1 (reapply) and C0
 * (revert) windows of ab_secs each, K pairs, the order inside a pair
 * alternating (C1,C0), (C0,C1), ... so a slow drift of the machine's speed
 * cancels. Same process, same threads, same data: only the code differs.
 * Throughput of a window = operations completed in it / its length; the
 * first 10 % of every window is skipped (threads may still be finishing a
 * call in the other copy of the code).
 */
static void ab_phase(const struct online *o)
{
	double *ratios = calloc((size_t)o->ab_pairs, sizeof(double));
	int n = 0, in_c1 = 1;

	if (!ratios)
		return;
	sleep_s(1.0);
	for (int i = 0; i < o->ab_pairs; i++) {
		double rate[2] = { 0, 0 }; /* [0] = C0, [1] = C1 */
		uint64_t sw_ns[2] = { 0, 0 };
		int first = (i % 2 == 0) ? 1 : 0, bad = 0;
		for (int k = 0; k < 2; k++) {
			int want = k == 0 ? first : !first;
			OCOLOS_OPTS(ocolos_switch_stats, ss); /* zeroed, sz set */
			if (want != in_c1) {
				int rc = want ? ocolos_reapply_self(&ss)
					      : ocolos_revert_self(&ss);
				if (rc) {
					printf("ab pair=%d error=\"%s %s\"\n", i,
					       want ? "reapply" : "revert",
					       ocolos_strerror(rc));
					bad = 1;
					break;
				}
				in_c1 = want;
				sw_ns[want] = ss.pause_ns;
			}
			sleep_s(o->ab_secs * 0.1);
			uint64_t a = total_ops();
			double t0 = now_s();
			sleep_s(o->ab_secs * 0.9);
			uint64_t b = total_ops();
			rate[want] = (double)(b - a) / (now_s() - t0);
		}
		if (bad)
			break;
		double r = rate[1] / rate[0];
		ratios[n++] = r;
		printf("ab pair=%d first=%s c1_ops_per_s=%.0f c0_ops_per_s=%.0f "
		       "ratio=%.4f revert_ns=%" PRIu64 " reapply_ns=%" PRIu64 "\n",
		       i, first ? "c1" : "c0", rate[1], rate[0], r, sw_ns[0],
		       sw_ns[1]);
		fflush(stdout);
	}
	if (!in_c1)
		ocolos_reapply_self(NULL);
	if (n) {
		qsort(ratios, (size_t)n, sizeof(double), cmp_dbl);
		printf("ab done pairs=%d median=%.4f q1=%.4f q3=%.4f\n", n,
		       quantile(ratios, n, 0.5), quantile(ratios, n, 0.25),
		       quantile(ratios, n, 0.75));
		fflush(stdout);
	}
	free(ratios);
}

/*
 * Cache-simulation phases (--cg-ops N), for callgrind's deterministic
 * I1-miss counts of a live round (bench/callgrind_online.sh): the workers
 * park, then this thread alone runs C0 (revert), C1 (reapply), C0, C1, each
 * phase the same N operations from the same seed after a warm-up of N/4,
 * with callgrind's counters zeroed before and dumped after. Same process,
 * same work, only the code differs; the repeated pair shows the numbers
 * are reproducible. Without valgrind the phases run and print anyway.
 */
static void cg_phases(const struct online *o)
{
	pthread_mutex_lock(&g_park_mu);
	__atomic_store_n(&g_park, 1, __ATOMIC_RELAXED);
	while (g_parked < g_nthreads)
		pthread_cond_wait(&g_park_cv, &g_park_mu);
	pthread_mutex_unlock(&g_park_mu);
	int on_vg = 0;
#ifdef FE_HAVE_CALLGRIND
	on_vg = RUNNING_ON_VALGRIND != 0;
#endif
	for (int i = 0; i < 4; i++) {
		int c1 = i % 2;
		int rc = c1 ? ocolos_reapply_self(NULL) : ocolos_revert_self(NULL);
		if (rc) {
			printf("cg phase=%s round=%d error=\"%s\"\n", c1 ? "c1" : "c0", i / 2,
			       ocolos_strerror(rc));
			break;
		}
		uint64_t warm = 0x51ed2701f3a5c3b7ULL, rng = 0x9e3779b97f4a7c15ULL, sum = 0;
		for (long k = 0; k < o->cg_ops / 4; k++)
			sum += fe_op(&warm);
#ifdef FE_HAVE_CALLGRIND
		CALLGRIND_ZERO_STATS;
#endif
		for (long k = 0; k < o->cg_ops; k++)
			sum += fe_op(&rng);
#ifdef FE_HAVE_CALLGRIND
		char name[32];
		snprintf(name, sizeof(name), "phase-%s-%d", c1 ? "c1" : "c0", i / 2);
		CALLGRIND_DUMP_STATS_AT(name);
#endif
		printf("cg phase=%s round=%d ops=%ld valgrind=%d sum=%016" PRIx64 "\n",
		       c1 ? "c1" : "c0", i / 2, o->cg_ops, on_vg, sum);
		fflush(stdout);
	}
	/* Valgrind names a mapping only by a path it can open, so the
	 * optimized code and the slot stubs (memfds) are both "???" in its
	 * dumps: say where each lies, for the reader to tell them apart. */
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	while (maps && fgets(line, sizeof(line), maps)) {
		unsigned long lo, hi;
		const char *name = strstr(line, "/memfd:ocolos-");
		if (name && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			printf("cg map lo=%lx hi=%lx name=%.*s\n", lo, hi,
			       (int)strcspn(name + 7, " \n"), name + 7);
	}
	if (maps)
		fclose(maps);
	fflush(stdout);
	pthread_mutex_lock(&g_park_mu);
	__atomic_store_n(&g_park, 0, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&g_park_cv);
	pthread_mutex_unlock(&g_park_mu);
}

static void *online_main(void *p)
{
	struct online *o = p;
	struct timespec ts = { (time_t)o->after,
			       (long)((o->after - (time_t)o->after) * 1e9) };
	OCOLOS_OPTS(ocolos_stats, st);
	int rc;

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	/* --online-rounds: continuous rounds, one after the other (each
	 * the next generation, no revert between), a line each. */
	for (int k = 1; k <= (o->rounds > 0 ? o->rounds : 1); k++) {
		long rss0 = rss_kb();
		double t_start = now_s();
		if (o->profile_ms || o->sample_hz || o->keep || o->bolt ||
		    o->bolt_args[0] || o->edges || o->sampler || o->writable_slots ||
		    o->profile_min_ms || o->profile_max_ms || o->converge_permille ||
		    o->max_overhead_permille) {
			OCOLOS_OPTS(ocolos_opts, opts, .profile_ms = o->profile_ms,
				    .profile_min_ms = o->profile_min_ms,
				    .profile_max_ms = o->profile_max_ms,
				    .profile_converge_permille = o->converge_permille,
				    .max_overhead_permille = o->max_overhead_permille,
				    .sample_hz = o->sample_hz, .edges = o->edges,
				    .sampler = o->sampler,
				    .pointer_slots = o->writable_slots ? OCOLOS_SLOTS_ALL : OCOLOS_SLOTS_SAFE,
				    .keep_work_dir = o->keep, .bolt_path = o->bolt,
				    .bolt_extra_args = o->bolt_args[0] ? o->bolt_args
								       : NULL);
			rc = ocolos_optimize_self(&opts, &st);
		} else {
			rc = ocolos_optimize_self(NULL, &st);
		}
		double t_done = now_s();
		long rss1 = rss_kb();
		printf("ocolos rc=%d t_start=%.3f t_done=%.3f samples=%" PRIu64
		       " samples_in_binary=%" PRIu64 " functions_moved=%" PRIu32
		       " c1_bytes=%" PRIu64 " call_sites_patched=%" PRIu32
		       " pointer_slots_patched=%" PRIu32 " threads_stopped=%" PRIu32
		       " profile_ns=%" PRIu64 " bolt_ns=%" PRIu64 " pause_ns=%" PRIu64
		       " round_ns=%" PRIu64 " rss_before_kb=%ld rss_after_kb=%ld"
		       " profile_stop=%" PRIu32 " profile_distance_ppm=%" PRIu32
		       " sample_overhead_ppm=%" PRIu32 " sample_hz_final=%" PRIu32
		       " sample_cost_ns=%" PRIu32,
		       rc, t_start, t_done, st.samples, st.samples_in_binary,
		       st.functions_moved, st.c1_bytes, st.call_sites_patched,
		       st.pointer_slots_patched, st.threads_stopped, st.profile_ns,
		       st.bolt_ns, st.pause_ns, st.round_ns, rss0, rss1, st.profile_stop,
		       st.profile_distance_ppm, st.sample_overhead_ppm, st.sample_hz_final,
		       st.sample_cost_ns);
		if (rc) {
			/* Quotes in the message would break the key="..." field. */
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", ocolos_last_error(NULL));
			for (char *c = msg; *c; c++)
				if (*c == '"' || *c == '\n')
					*c = '\'';
			printf(" strerror=\"%s\" error=\"%s\"", ocolos_strerror(rc),
			       msg);
		}
		if (o->rounds > 0)
			printf(" round=%d generation=%" PRIu32 " versions_mapped=%" PRIu32
			       " versions_retired=%" PRIu32, k, st.generation, st.versions_mapped,
			       st.versions_retired);
		printf("\n");
		fflush(stdout);
		if (rc)
			break;
	}
	if (rc == 0 && o->ab_pairs > 0)
		ab_phase(o);
	if (rc == 0 && o->cg_ops > 0)
		cg_phases(o);
	atomic_store(&g_ab_done, 1);
	return NULL;
}
#endif

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--duration SEC] [--threads N] [--interval SEC]\n"
		"          [--depth D] [--ops N] [--check N]\n"
		"          [--online-after SEC [--ocolos-profile-ms MS]\n"
		"           [--ocolos-hz HZ] [--ocolos-edges 1|2] [--ocolos-keep]\n"
		"           [--ocolos-profile-min-ms MS] [--ocolos-profile-max-ms MS]\n"
		"           [--ocolos-converge-permille N] [--ocolos-max-overhead-permille N]]\n"
		"  --duration SEC      run time (default 10)\n"
		"  --threads N         worker threads (default 2)\n"
		"  --interval SEC      reporting interval (default 1)\n"
		"  --depth D           call depth of one operation (default 5)\n"
		"  --ops N             fixed work: N operations per thread, "
		"then exit\n"
		"  --check N           operations in the start/end checksum "
		"(default 2000)\n"
		"  --online-after SEC  call ocolos_optimize_self() after SEC "
		"(needs -DWITH_OCOLOS)\n"
		"  --online-rounds N   N continuous rounds from then on, one after "
		"the other (a line each)\n"
		"  --ocolos-bolt PATH  llvm-bolt (or bench/bolt_twostep.sh) "
		"for the round\n"
		"  --ocolos-bolt-arg A extra llvm-bolt argument (repeatable, "
		"16 at most)\n"
		"  --ab-pairs K        after the round, K pairs of C1/C0 "
		"windows (revert/reapply);\n"
		"                      the run ends when they are done "
		"(or at --duration)\n"
		"  --ab-secs T         length of one A/B window (default 2)\n"
		"  --cg-ops N          after the round, workers park and N "
		"operations run on C0,\n"
		"                      C1, C0, C1 (callgrind dumps per phase); "
		"the run then ends\n"
		"  --ocolos-sampler S  0 auto, 1 perf-lbr, 2 perf-ip, 3 sigprof\n"
		"  --ocolos-writable-slots  opts.pointer_slots = OCOLOS_SLOTS_ALL\n"
		"  --phase S           (--phases 2 programs) start on hot set S (0)\n"
		"  --phase2-after SEC  switch to hot set 1 at the first tick >= SEC;\n"
		"                      SIGUSR1 toggles the set at any time,\n"
		"                      SIGUSR2 ends the run (checksum as usual)\n",
		argv0);
}

int main(int argc, char **argv)
{
	double duration = 10, interval = 1, online_after = -1;
	long nthreads = 2, check_ops = 2000;
	uint64_t fixed_ops = 0;
	uint32_t profile_ms = 0, sample_hz = 0;
	uint32_t profile_min_ms = 0, profile_max_ms = 0, converge_permille = 0, max_overhead = 0;
	int edges = 0;
	int keep = 0, ab_pairs = 0, nbolt_args = 0, sampler = 0, online_rounds = 0;
	long cg_ops = 0;
	int writable_slots = 0;
	double ab_secs = 2, phase2_after = -1;
	int start_phase = 0;
	const char *bolt = NULL, *bolt_args[17] = { NULL };

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int used = 1;
		if (!strcmp(a, "--ocolos-keep")) {
			keep = 1;
			continue;
		}
		if (!strcmp(a, "--ocolos-writable-slots")) {
			writable_slots = 1;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(argv[0]);
			return 0;
		}
		if (!v) {
			usage(argv[0]);
			return 2;
		}
		if (!strcmp(a, "--duration"))
			duration = atof(v);
		else if (!strcmp(a, "--threads"))
			nthreads = atol(v);
		else if (!strcmp(a, "--interval"))
			interval = atof(v);
		else if (!strcmp(a, "--depth"))
			g_depth = atoi(v);
		else if (!strcmp(a, "--ops"))
			fixed_ops = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--check"))
			check_ops = atol(v);
		else if (!strcmp(a, "--online-after"))
			online_after = atof(v);
		else if (!strcmp(a, "--ocolos-profile-ms"))
			profile_ms = (uint32_t)atol(v);
		else if (!strcmp(a, "--ocolos-hz"))
			sample_hz = (uint32_t)atol(v);
		else if (!strcmp(a, "--ocolos-profile-min-ms"))
			profile_min_ms = (uint32_t)atol(v);
		else if (!strcmp(a, "--ocolos-profile-max-ms"))
			profile_max_ms = (uint32_t)atol(v);
		else if (!strcmp(a, "--ocolos-converge-permille"))
			converge_permille = (uint32_t)atol(v);
		else if (!strcmp(a, "--ocolos-max-overhead-permille"))
			max_overhead = (uint32_t)atol(v);
		else if (!strcmp(a, "--ocolos-edges"))
			edges = atoi(v); /* 1 hybrid (default), 2 BOLT's own inference */
		else if (!strcmp(a, "--ocolos-bolt"))
			bolt = v;
		else if (!strcmp(a, "--ocolos-bolt-arg") && nbolt_args < 16)
			bolt_args[nbolt_args++] = v;
		else if (!strcmp(a, "--ab-pairs"))
			ab_pairs = atoi(v);
		else if (!strcmp(a, "--ab-secs"))
			ab_secs = atof(v);
		else if (!strcmp(a, "--cg-ops"))
			cg_ops = atol(v);
		else if (!strcmp(a, "--online-rounds"))
			online_rounds = atoi(v);
		else if (!strcmp(a, "--ocolos-sampler"))
			sampler = atoi(v);
		else if (!strcmp(a, "--phase2-after"))
			phase2_after = atof(v);
		else if (!strcmp(a, "--phase"))
			start_phase = atoi(v);
		else
			used = 0;
		if (!used) {
			fprintf(stderr, "unknown option %s\n", a);
			usage(argv[0]);
			return 2;
		}
		i++;
	}
	if (nthreads < 1 || nthreads > 256 || interval <= 0) {
		usage(argv[0]);
		return 2;
	}
#if FE_NPHASES == 2
	if (start_phase < 0 || start_phase > 1) {
		usage(argv[0]);
		return 2;
	}
	atomic_store(&g_phase, start_phase);
	{
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigusr;
		sa.sa_flags = SA_RESTART;
		sigaction(SIGUSR1, &sa, NULL);
		sigaction(SIGUSR2, &sa, NULL);
	}
#else
	if (phase2_after >= 0 || start_phase) {
		fprintf(stderr, "--phase2-after/--phase: generate the program with "
				"--phases 2\n");
		return 2;
	}
#endif
#ifndef WITH_OCOLOS
	if (online_after >= 0) {
		fprintf(stderr, "--online-after: this binary was built without "
				"libocolos (-DWITH_OCOLOS)\n");
		return 2;
	}
#endif
	clock_gettime(CLOCK_MONOTONIC, &g_t0);
	printf("fe pid=%d funcs=%d roots=%d threads=%ld depth=%d pie=%d "
	       "seed=%d\n",
	       (int)getpid(), FE_NFUNCS, FE_NROOTS, nthreads, g_depth,
	       is_pie(), FE_SEED);
	uint64_t check0 = checksum(check_ops);
	printf("check start=%016" PRIx64 "\n", check0);
	fflush(stdout);

	struct worker *w = calloc((size_t)nthreads, sizeof(*w));
	if (!w)
		return 1;
	g_workers = w;
	g_nthreads = nthreads;
	double t_begin = now_s();
	for (long i = 0; i < nthreads; i++) {
		w[i].id = (int)i;
		w[i].limit = fixed_ops;
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i])) {
			perror("pthread_create");
			return 1;
		}
	}
#ifdef WITH_OCOLOS
	struct online on = { .after = online_after, .profile_ms = profile_ms,
			     .sample_hz = sample_hz, .edges = edges, .keep = keep, .bolt = bolt,
			     .ab_pairs = ab_pairs, .ab_secs = ab_secs,
			     .cg_ops = cg_ops, .sampler = sampler,
			     .writable_slots = writable_slots,
			     .profile_min_ms = profile_min_ms, .profile_max_ms = profile_max_ms,
			     .converge_permille = converge_permille,
			     .max_overhead_permille = max_overhead, .rounds = online_rounds };
	memcpy(on.bolt_args, bolt_args, sizeof(bolt_args));
	if (online_after < 0)
		atomic_store(&g_ab_done, 1);
	if (online_after >= 0 &&
	    pthread_create(&on.tid, NULL, online_main, &on)) {
		perror("pthread_create");
		return 1;
	}
#else
	(void)profile_ms;
	(void)sample_hz;
	(void)profile_min_ms;
	(void)profile_max_ms;
	(void)converge_permille;
	(void)max_overhead;
	(void)edges;
	(void)keep;
	(void)bolt;
	(void)bolt_args;
	(void)ab_secs;
	(void)sampler;
	(void)writable_slots;
	if (ab_pairs > 0 || cg_ops > 0) {
		fprintf(stderr, "--ab-pairs/--cg-ops: built without libocolos\n");
		return 2;
	}
#endif

	uint64_t last = 0;
#if FE_NPHASES == 2
	int phase_seen = start_phase;
	printf("phase t=0.00 set=%d\n", phase_seen);
	fflush(stdout);
#endif
	if (!fixed_ops) {
		struct timespec next = g_t0;
		double t_next = t_begin;
		for (;;) {
			t_next += interval;
			if (t_next > t_begin + duration + 1e-9)
				break;
			/* --ab-pairs: stop once the A/B phase is over. */
			if ((ab_pairs > 0 || cg_ops > 0) && atomic_load(&g_ab_done))
				break;
			double whole = (double)(long)t_next;
			next.tv_sec = g_t0.tv_sec + (time_t)whole;
			next.tv_nsec = g_t0.tv_nsec +
				       (long)((t_next - whole) * 1e9);
			while (next.tv_nsec >= 1000000000L) {
				next.tv_nsec -= 1000000000L;
				next.tv_sec++;
			}
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
					       &next, NULL) == EINTR)
				;
#if FE_NPHASES == 2
			if (phase2_after >= 0 && t_next - t_begin >= phase2_after - 1e-9) {
				atomic_store(&g_phase, 1);
				phase2_after = -1;
			}
#endif
			uint64_t tot = 0;
			for (long i = 0; i < nthreads; i++)
				tot += atomic_load(&w[i].ops);
			printf("tput t=%.2f ops=%" PRIu64 " ops_per_s=%.0f\n",
			       t_next - t_begin, tot - last,
			       (double)(tot - last) / interval);
#if FE_NPHASES == 2
			/* A switch is reported at the end of the interval it fell
			 * in: that interval mixes both sets. */
			int ph = atomic_load(&g_phase);
			if (ph != phase_seen) {
				phase_seen = ph;
				printf("phase t=%.2f set=%d\n", t_next - t_begin, ph);
			}
			if (atomic_load(&g_quit)) {
				fflush(stdout);
				break;
			}
#endif
			fflush(stdout);
			last = tot;
		}
		atomic_store(&g_stop, 1);
	}
	uint64_t tot = 0, sink = 0;
	for (long i = 0; i < nthreads; i++) {
		pthread_join(w[i].tid, NULL);
		tot += atomic_load(&w[i].ops);
		sink ^= w[i].sum;
	}
	double secs = now_s() - t_begin;
#ifdef WITH_OCOLOS
	if (online_after >= 0)
		pthread_join(on.tid, NULL);
#endif
	printf("done secs=%.3f ops=%" PRIu64 " ops_per_s=%.0f rss_kb=%ld "
	       "sink=%016" PRIx64 "\n",
	       secs, tot, (double)tot / secs, rss_kb(), sink);
	uint64_t check1 = checksum(check_ops);
	printf("check end=%016" PRIx64 " ok=%d\n", check1, check1 == check0);
	fflush(stdout);
	free(w);
	return check1 == check0 ? 0 : 1;
}

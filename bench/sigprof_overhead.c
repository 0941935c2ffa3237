/*
 * sigprof_overhead — what sampling costs the sampled program.
 *
 * Responsible for: measuring the throughput of a busy 2-thread loop while
 * the calling thread samples the process (sigprof or perf-ip backend, at
 * several rates) against the same loop while it does not, in interleaved
 * windows: each pair is one unsampled and one sampled window back to back,
 * their order alternating between pairs, so drift of the machine (other
 * load, frequency) hits both halves of a pair alike. Reports, per backend
 * and rate, the median of the paired ratios (sampled / unsampled) as a loss
 * in percent, the min..max of the pairs, the same per CPU second of the
 * workers (robust to other load on the machine), and the samples obtained
 * per second per busy thread (the sigprof rate is capped by the kernel tick),
 * beside the library's own estimate of the same windows' cost
 * (sample/window.c: per-sample cost measured once per backend and rate on
 * the calling thread, times samples, plus the sampling thread's CPU time,
 * per CPU time of the workers), so the estimate can be checked against
 * the measured loss.
 * Not responsible for: the profile's quality, or optimizing anything.
 *
 * build (after building the library in BUILD, e.g. /tmp/sigprof-build):
 *   gcc -O2 -D_GNU_SOURCE -Iinclude -Ilib -o /tmp/sigprof_overhead \
 *       bench/sigprof_overhead.c BUILD/libocolos_internal.a -lelf -lZydis -lpfm -lpthread
 * run:
 *   /tmp/sigprof_overhead [--pairs N] [--window-ms MS] [--rates 1000,4000,10000]
 *                         [--backends sigprof,perf-ip]
 * Output: one line per backend and rate, `key=value` fields.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "sample/sample.h"

#define NWORKERS 2
#define MAX_PAIRS 64
#define MAX_RATES 16

struct worker {
	_Atomic uint64_t units; /* work units done; written by its worker only */
	char pad[64 - sizeof(uint64_t)];
};

static struct worker workers[NWORKERS] __attribute__((aligned(64)));
static clockid_t worker_clock[NWORKERS]; /* each worker's CPU-time clock */
static atomic_int quit;
static volatile uint64_t sink;

/* One unit of work: a fixed number of xorshift steps, no calls. */
__attribute__((noinline)) static uint64_t work_unit(uint64_t x)
{
	for (int i = 0; i < 4096; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t x = 88172645463325252ull, n = 0;
	while (!atomic_load_explicit(&quit, memory_order_relaxed)) {
		x = work_unit(x);
		atomic_store_explicit(&w->units, ++n, memory_order_relaxed);
	}
	sink = x;
	return NULL;
}

static uint64_t total_units(void)
{
	uint64_t s = 0;
	for (int i = 0; i < NWORKERS; i++)
		s += atomic_load_explicit(&workers[i].units, memory_order_relaxed);
	return s;
}

/* CPU time the workers used so far, ns. */
static uint64_t workers_cpu_ns(void)
{
	uint64_t s = 0;
	for (int i = 0; i < NWORKERS; i++) {
		struct timespec ts;
		clock_gettime(worker_clock[i], &ts);
		s += (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	return s;
}

/* Throughput of one window: work units per wall second (what the program
 * sees, including CPU the sampler itself takes from the workers), and per
 * CPU second of the workers (insensitive to other load on the machine;
 * includes the signal/interrupt cost charged to the workers, not the
 * sampling thread's own CPU). */
struct rate {
	double wall, cpu;
};

/* The per-sample cost measured once per backend and rate (before its
 * pairs, so that the probe's own run is in no window), for the library's
 * estimate of each sampled window (sample/window.c). */
static uint32_t cost_ns;
static double estimate_pct; /* the last sampled window's estimate */

/* One window, sampling with `cfg` (or sleeping when cfg is NULL) as a
 * round's fixed window does (one segment). *samples gets the samples taken. */
static struct rate window(const struct sample_config *cfg, uint32_t ms, size_t *samples)
{
	uint64_t u0 = total_units(), t0 = core_now_ns(), c0 = workers_cpu_ns();
	*samples = 0;
	if (cfg) {
		struct sample_set set = { 0 };
		struct core_err err = { 0 };
		struct sample_policy pol = { .fixed_ms = ms, .max_ms = ms, .cost_ns = cost_ns };
		struct sample_window_result res;
		int rc = sample_collect_window(cfg, &pol, &set, &res, &err);
		if (rc) {
			fprintf(stderr, "sample_collect: %d %s\n", rc, err.msg);
			exit(1);
		}
		estimate_pct = res.overhead_ppm / 1e4;
		*samples = set.n;
		sample_set_free(&set);
	} else {
		poll(NULL, 0, (int)ms);
	}
	uint64_t u1 = total_units(), t1 = core_now_ns(), c1 = workers_cpu_ns();
	return (struct rate){ (double)(u1 - u0) * 1e9 / (double)(t1 - t0),
			      (double)(u1 - u0) * 1e9 / (double)(c1 - c0) };
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Run `pairs` interleaved pairs for one backend and rate; print one line. */
static void measure(enum sample_backend_kind kind, const char *name, uint32_t hz,
		    int pairs, uint32_t ms)
{
	struct sample_config cfg = { .backend = kind, .pid = getpid(), .hz = hz,
				     .window_ms = ms,
				     .exclude_tid = (pid_t)syscall(SYS_gettid) };
	double loss[MAX_PAIRS], loss_cpu[MAX_PAIRS], est[MAX_PAIRS];
	size_t total_samples = 0;
	cost_ns = sample_cost_probe(kind);
	for (int p = 0; p < pairs; p++) {
		size_t n0, n1;
		struct rate base, sampled;
		if (p % 2) {
			sampled = window(&cfg, ms, &n1);
			base = window(NULL, ms, &n0);
		} else {
			base = window(NULL, ms, &n0);
			sampled = window(&cfg, ms, &n1);
		}
		loss[p] = 100.0 * (1.0 - sampled.wall / base.wall);
		loss_cpu[p] = 100.0 * (1.0 - sampled.cpu / base.cpu);
		est[p] = estimate_pct;
		total_samples += n1;
	}
	double per_thread_s = (double)total_samples / pairs / (ms / 1000.0) / NWORKERS;
	double med = median(loss, pairs), med_cpu = median(loss_cpu, pairs); /* sort */
	double med_est = median(est, pairs);
	printf("backend=%s hz=%u pairs=%d window_ms=%u samples_per_thread_s=%.0f "
	       "loss_median=%.2f%% loss_min=%.2f%% loss_max=%.2f%% "
	       "cpu_loss_median=%.2f%% cpu_loss_min=%.2f%% cpu_loss_max=%.2f%% "
	       "cost_ns=%u estimate_median=%.2f%% estimate_min=%.2f%% estimate_max=%.2f%% losses=",
	       name, hz, pairs, ms, per_thread_s, med, loss[0], loss[pairs - 1],
	       med_cpu, loss_cpu[0], loss_cpu[pairs - 1], cost_ns, med_est, est[0],
	       est[pairs - 1]);
	for (int p = 0; p < pairs; p++)
		printf("%s%.2f", p ? "," : "", loss[p]);
	printf("\n");
	fflush(stdout);
}

static int parse_rates(const char *s, uint32_t *rates)
{
	int n = 0;
	for (char *end; *s && n < MAX_RATES; s = *end ? end + 1 : end) {
		rates[n++] = (uint32_t)strtoul(s, &end, 10);
		if (end == s)
			return -1;
	}
	return n;
}

int main(int argc, char **argv)
{
	int pairs = 7;
	uint32_t ms = 1000, rates[MAX_RATES] = { 1000, 4000, 10000 };
	int nrates = 3;
	const char *backends = "sigprof,perf-ip";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--pairs"))
			pairs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--window-ms"))
			ms = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--rates"))
			nrates = parse_rates(argv[i + 1], rates);
		else if (!strcmp(argv[i], "--backends"))
			backends = argv[i + 1];
	}
	if (pairs < 1 || pairs > MAX_PAIRS || !ms || nrates < 1) {
		fprintf(stderr, "usage: %s [--pairs 1..%d] [--window-ms MS] [--rates A,B,..] "
			"[--backends sigprof,perf-ip]\n", argv[0], MAX_PAIRS);
		return 2;
	}
	pthread_t t[NWORKERS];
	for (int i = 0; i < NWORKERS; i++)
		if (pthread_create(&t[i], NULL, worker_main, &workers[i]) ||
		    pthread_getcpuclockid(t[i], &worker_clock[i]))
			return 1;
	size_t dummy;
	window(NULL, ms, &dummy); /* warm-up, discarded */
	printf("cpus=%ld workers=%d\n", sysconf(_SC_NPROCESSORS_ONLN), NWORKERS);
	for (int r = 0; r < nrates; r++) {
		if (strstr(backends, "sigprof"))
			measure(SAMPLE_SIGPROF, "sigprof", rates[r], pairs, ms);
		if (strstr(backends, "perf-ip"))
			measure(SAMPLE_PERF_IP, "perf-ip", rates[r], pairs, ms);
	}
	atomic_store(&quit, 1);
	for (int i = 0; i < NWORKERS; i++)
		pthread_join(t[i], NULL);
	return 0;
}

/*
 * The sampling window: how long to sample, and at what rate.
 *
 * Responsible for: running a backend (sample_collect) in segments, and
 * after each one deciding whether the window is over and at which rate
 * the next segment samples:
 *  - a fixed window ends when it has as many rate-milliseconds as asked
 *    (profile_ms at sample_hz); without a cost limit it is one segment,
 *    exactly the window the library always sampled;
 *  - a converging window ends once the profile stops changing: the total
 *    variation distance between the key distribution (a key is what the
 *    caller makes of a sample: round.c, its 256-byte block of the
 *    binary's code) of the first half of the
 *    samples and that of all of them falls below a threshold, after a
 *    minimum and before a maximum. The distance shrinks as 1/sqrt(samples)
 *    for a steady program (about 0.4 * sqrt(hot keys / samples)), so
 *    the threshold sets how many samples a program of that many hot
 *    keys gets; a program whose hot set moves keeps it high;
 *  - the cost: what sampling takes from the sampled threads, estimated as
 *    (per-sample cost x samples + the calling thread's CPU time) / the
 *    sampled threads' CPU time (schedstat), per segment and for the whole
 *    window. The per-sample cost is measured before the window on the
 *    calling thread (sample_cost_abba): with cpu-clock most of the cost is
 *    the kernel's sample interrupt, charged to the interrupted thread and
 *    invisible to the thread that drains the rings. Over a limit the rate
 *    of the next segment is lowered (never raised past the asked rate),
 *    and the window lasts longer instead (up to its maximum): a fixed
 *    window and, with max_rate_ms, a converging window's maximum count
 *    rate-milliseconds, so a window at a tenth of the rate may take ten
 *    times as long to gather what the asked rate would have.
 * Not responsible for: the samples themselves (the backends), what a key
 * is (the caller: round.c maps an IP to its 256-byte block of the
 * binary's code).
 *
 * Segments reopen the backend's events (perf: one open and mmap per
 * thread; sigprof: one timer per thread), about a millisecond of the
 * sampler thread's CPU for a handful of threads on a loaded VM, every
 * SAMPLE_SEGMENT_MS (up to 4 times as long at lowered rates).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "proc/proc.h"
#include "sample/sample.h"

#define MIN_HZ 100		/* the rate is never lowered below this */
#define RATE_MARGIN 0.85	/* aim this far below the cost limit */
#define MIN_SEGMENT_CPU_NS 5000000ull /* a segment with less sampled CPU says nothing of the cost */
#define PROBE_NS 15000000ull	/* CPU time of each of the probe's four runs */

/* ---- CPU time ---------------------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct cpu_sum {
	pid_t pid, exclude;
	uint64_t ns;
};

/* Add one thread's run time (the first field of its schedstat, ns; it
 * includes the interrupts it took, the sample interrupts among them). */
static int add_thread(void *user, pid_t tid)
{
	struct cpu_sum *c = user;
	if (tid == c->exclude)
		return 0;
	char path[64], buf[96];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)c->pid, (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* exited meanwhile */
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		c->ns += strtoull(buf, NULL, 10);
	}
	return 0;
}

/* CPU time of the threads of `pid` but `exclude` so far (threads that
 * exit are lost: a segment's difference is clamped at 0). */
static uint64_t sampled_cpu_ns(pid_t pid, pid_t exclude)
{
	struct cpu_sum c = { pid, exclude, 0 };
	proc_threads_each(pid, add_thread, &c);
	return c.ns;
}

/* ---- the cost of one sample ----------------------------------------------- */

/* Work of a fixed size (the compiler cannot drop or shorten it). */
static uint64_t spin(uint64_t iters, uint64_t x)
{
	for (uint64_t i = 0; i < iters; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		__asm__ __volatile__("" : "+r"(x));
	}
	return x;
}

/* CPU time of `iters` iterations, sampled or not. */
static uint64_t timed_spin(uint64_t iters, uint64_t *x)
{
	uint64_t t0 = thread_cpu_ns();
	*x = spin(iters, *x);
	return thread_cpu_ns() - t0;
}

uint32_t sample_cost_abba(int (*set)(void *, int), uint64_t (*count)(void *), void *user)
{
	/* How much work is PROBE_NS of CPU (also warms the loop up). */
	uint64_t x = 1, iters = 0, t0 = thread_cpu_ns();
	while (thread_cpu_ns() - t0 < PROBE_NS) {
		x = spin(100000, x);
		iters += 100000;
	}
	/* A B B A: a drift of the machine's speed (another job's cache
	 * pressure, frequency) cancels to first order. */
	uint64_t plain = timed_spin(iters, &x), sampled = 0, n = 0;
	count(user);
	for (int i = 0; i < 2; i++) {
		if (set(user, 1))
			return 0;
		sampled += timed_spin(iters, &x);
		set(user, 0);
		n += count(user);
	}
	plain += timed_spin(iters, &x);
	if (x == 42)	/* keep x alive */
		plain++;
	if (!n || sampled <= plain)
		return 0;
	uint64_t ns = (sampled - plain) / n;
	return ns > 1000000 ? 1000000 : (uint32_t)ns;
}

uint32_t sample_cost_probe(enum sample_backend_kind kind)
{
	/* perf-lbr: its branch-stack event on a PMU, another cost, not
	 * measured here; sigprof: at most CONFIG_HZ signals per thread
	 * second, not measured either (docs/samplers.md: below 1 %). */
	return kind == SAMPLE_PERF_IP ? sample_perf_ip_cost_probe() : 0;
}

/* ---- convergence ---------------------------------------------------------- */

uint32_t sample_distance_ppm(const uint64_t *keys, size_t n)
{
	if (n < 2)
		return 1000000;
	size_t h = n / 2;
	uint64_t *k = malloc(n * sizeof(*k));
	if (!k)
		return 1000000;
	memcpy(k, keys, n * sizeof(*k));
	qsort(k, h, sizeof(*k), core_cmp_u64);
	qsort(k + h, n - h, sizeof(*k), core_cmp_u64);
	/* Walk both sorted halves at once: a = the key's count in the first
	 * half, a + b in all; TV = 1/2 sum |a/h - (a+b)/n|. */
	double tv = 0;
	size_t i = 0, j = h;
	while (i < h || j < n) {
		uint64_t key = j >= n || (i < h && k[i] <= k[j]) ? k[i] : k[j];
		size_t a = 0, b = 0;
		for (; i < h && k[i] == key; i++)
			a++;
		for (; j < n && k[j] == key; j++)
			b++;
		double d = (double)a / (double)h - (double)(a + b) / (double)n;
		tv += d < 0 ? -d : d;
	}
	core_free_clear(k, n * sizeof(*k)); /* keys may be addresses: core/util.c says why */
	uint64_t ppm = (uint64_t)(tv / 2 * 1e6 + 0.5);
	return ppm > 1000000 ? 1000000 : (uint32_t)ppm;
}

static int cmp_desc_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x > y ? -1 : x < y;
}

uint32_t sample_hot_keys(const uint64_t *keys, size_t n, uint32_t permille)
{
	if (!n)
		return 0;
	uint64_t *k = malloc(n * sizeof(*k));
	size_t *count = malloc(n * sizeof(*count));
	uint32_t hot = 0;
	if (k && count) {
		memcpy(k, keys, n * sizeof(*k));
		qsort(k, n, sizeof(*k), core_cmp_u64);
		size_t nk = 0;
		for (size_t i = 0, j; i < n; i = j) {
			for (j = i; j < n && k[j] == k[i]; j++)
				;
			count[nk++] = j - i;
		}
		qsort(count, nk, sizeof(*count), cmp_desc_size);
		uint64_t want = ((uint64_t)n * permille + 999) / 1000, sum = 0;
		while (hot < nk && sum < want)
			sum += count[hot++];
	}
	if (k)
		core_free_clear(k, n * sizeof(*k));
	free(count);
	return hot;
}

/* The keys of the samples of `s` from `from` on, appended to *keys. */
static int add_keys(const struct sample_policy *pol, const struct sample_set *s, size_t from,
		    uint64_t **keys, size_t *nkeys, size_t *cap)
{
	for (size_t i = from; i < s->n; i++) {
		if (core_grow((void **)keys, cap, *nkeys, sizeof(**keys)))
			return OCOLOS_ENOMEM;
		(*keys)[(*nkeys)++] = pol->key ? pol->key(pol->key_user, s->ips[i]) : s->ips[i] >> 8;
	}
	return 0;
}

/* ---- the window ------------------------------------------------------------ */

/* The rate for a cost of `per_sample_ppm` (proportional to the rate) +
 * `fixed_ppm` (the sampler thread's polling: not) at rate `hz`: as high as
 * the limit allows with a margin, never above `asked` nor below MIN_HZ (or
 * `asked` if lower; a limit the fixed part alone exceeds cannot be met:
 * that floor, and the estimate says so); unchanged within 10 %. */
static uint32_t adjust_rate(uint32_t asked, uint32_t hz, double per_sample_ppm,
			    double fixed_ppm, uint32_t limit)
{
	double room = RATE_MARGIN * limit - fixed_ppm;
	double want = per_sample_ppm <= 0 ? (double)asked
		    : room <= 0 ? MIN_HZ : (double)hz * room / per_sample_ppm;
	/* The floor never lifts the rate above the asked one (a caller
	 * asking 50 Hz gets at most 50 Hz). */
	double floor = asked < MIN_HZ ? asked : MIN_HZ;
	if (want > asked)
		want = asked;
	if (want < floor)
		want = floor;
	if (want > hz * 0.9 && want < hz * 1.1)
		return hz;
	return (uint32_t)want;
}

struct window {
	const struct sample_config *cfg;
	const struct sample_policy *pol;
	struct sample_set *out;
	struct sample_window_result *res;
	uint64_t t0, samples;
	double rate_ms;		/* fixed window: sum of segment ms x hz / asked */
	uint32_t hz, threads;
	uint64_t *keys;
	size_t nkeys, cap_keys, first, at_distance;
};

/* One segment of `ms` at w->hz; the window's sums updated. */
static int segment(struct window *w, uint32_t ms, struct core_err *err)
{
	struct sample_config c = *w->cfg;
	c.hz = w->hz;
	c.window_ms = ms ? ms : 1;
	size_t n0 = w->out->n;
	uint32_t th0 = w->out->threads;
	uint64_t cpu0 = sampled_cpu_ns(c.pid, c.exclude_tid), my0 = thread_cpu_ns();
	uint64_t s0 = core_now_ns();
	int rc = sample_collect(&c, w->out, err);
	uint64_t seg_ns = core_now_ns() - s0;
	uint64_t cpu1 = sampled_cpu_ns(c.pid, c.exclude_tid), my1 = thread_cpu_ns();
	/* Threads: the most any segment saw, not their sum (added to
	 * out->threads when the window ends). */
	uint32_t seg_threads = w->out->threads - th0;
	if (seg_threads > w->threads)
		w->threads = seg_threads;
	w->out->threads = th0;
	struct sample_window_result *r = w->res;
	uint64_t dn = w->out->n - n0, dcpu = cpu1 > cpu0 ? cpu1 - cpu0 : 0, dmy = my1 - my0;
	r->segments++;
	r->hz_final = w->hz;
	r->sampled_cpu_ns += dcpu;
	r->sampler_cpu_ns += dmy;
	w->samples += dn;
	w->rate_ms += (double)seg_ns / 1e6 * w->hz / w->cfg->hz;
	if (rc || !w->pol->max_overhead_ppm || dcpu < MIN_SEGMENT_CPU_NS)
		return rc;
	w->hz = adjust_rate(w->cfg->hz, w->hz, (double)r->cost_ns * (double)dn / (double)dcpu * 1e6,
			    (double)dmy / (double)dcpu * 1e6, w->pol->max_overhead_ppm);
	return 0;
}

/* Is the window over after this segment? Sets res->stop. */
static int window_over(struct window *w)
{
	const struct sample_policy *pol = w->pol;
	struct sample_window_result *r = w->res;
	uint64_t ms = (core_now_ns() - w->t0) / 1000000;
	if (!pol->fixed_ms && w->out->n > w->at_distance + w->at_distance / 4) {
		/* Recomputed once a quarter more samples came in: the sorting
		 * costs O(n log n) over the window, not per segment. */
		if (add_keys(pol, w->out, w->first + w->nkeys, &w->keys, &w->nkeys, &w->cap_keys))
			return 0; /* out of memory: the window runs to its end */
		r->distance_ppm = sample_distance_ppm(w->keys, w->nkeys);
		w->at_distance = w->out->n;
	}
	if (!pol->fixed_ms && ms >= pol->min_ms && r->distance_ppm < pol->converge_ppm)
		r->stop = SAMPLE_STOP_CONVERGED;
	else if (pol->fixed_ms && w->rate_ms + 0.5 >= pol->fixed_ms)
		r->stop = SAMPLE_STOP_FIXED;
	else if (ms >= pol->max_ms || (pol->max_rate_ms && w->rate_ms + 0.5 >= pol->max_rate_ms))
		r->stop = SAMPLE_STOP_MAX;
	return r->stop != SAMPLE_STOP_NONE;
}

/* Length of the next segment: SAMPLE_SEGMENT_MS at the asked rate,
 * longer at a lowered one (samples come in more slowly, and reopening the
 * events is most of the sampler thread's cost then), up to
 * SEGMENT_MAX_MS; less to end at the fixed window's end or the maximum. */
#define SEGMENT_MAX_MS 1000
static uint32_t next_ms(const struct window *w)
{
	const struct sample_policy *pol = w->pol;
	uint64_t ms = (core_now_ns() - w->t0) / 1000000;
	uint64_t seg = (uint64_t)SAMPLE_SEGMENT_MS * w->cfg->hz / w->hz;
	if (seg > SEGMENT_MAX_MS)
		seg = SEGMENT_MAX_MS;
	uint32_t rate_end = pol->fixed_ms ? pol->fixed_ms : pol->max_rate_ms;
	if (rate_end) {
		double left = (rate_end - w->rate_ms) * w->cfg->hz / w->hz;
		if (left < seg)
			seg = left < 1 ? 1 : (uint64_t)(left + 0.5);
	}
	if (pol->max_ms > ms && pol->max_ms - ms < seg)
		seg = pol->max_ms - ms;
	return (uint32_t)(seg ? seg : 1);
}

int sample_collect_window(const struct sample_config *cfg, const struct sample_policy *pol,
			  struct sample_set *out, struct sample_window_result *res,
			  struct core_err *err)
{
	memset(res, 0, sizeof(*res));
	res->distance_ppm = UINT32_MAX;
	struct window w = { .cfg = cfg, .pol = pol, .out = out, .res = res, .hz = cfg->hz,
			    .first = out->n };
	res->cost_ns = pol->cost_ns ? pol->cost_ns : sample_cost_probe(cfg->backend);
	/* Start within the limit: a cpu-clock (or cycles) event at hz takes
	 * about hz samples per CPU second of a thread. */
	if (pol->max_overhead_ppm && res->cost_ns)
		w.hz = adjust_rate(cfg->hz, cfg->hz, (double)res->cost_ns * cfg->hz / 1e3, 0,
				   pol->max_overhead_ppm);
	w.t0 = core_now_ns();
	int rc;
	if (pol->fixed_ms && !pol->max_overhead_ppm) {
		rc = segment(&w, pol->fixed_ms, err); /* the window as it always was */
		if (!rc)
			res->stop = SAMPLE_STOP_FIXED;
	} else {
		while (!(rc = segment(&w, next_ms(&w), err)) && !window_over(&w))
			;
	}
	res->elapsed_ns = core_now_ns() - w.t0;
	if (rc == OCOLOS_ECANCELED) {
		res->stop = SAMPLE_STOP_CANCELED;
		core_err_clear(err); /* sample_collect's names one segment, not the window */
		core_errf(err, OCOLOS_ECANCELED, "canceled (ocolos_cancel) %llu ms into the sampling "
			  "window of process %d: the round was abandoned",
			  (unsigned long long)(res->elapsed_ns / 1000000), (int)cfg->pid);
	}
	/* A fixed window's distance too, once, for comparison; and the hot
	 * set of every window (all its samples). */
	if (!rc && !add_keys(pol, out, w.first + w.nkeys, &w.keys, &w.nkeys, &w.cap_keys)) {
		if (pol->fixed_ms)
			res->distance_ppm = sample_distance_ppm(w.keys, w.nkeys);
		res->hot_keys = sample_hot_keys(w.keys, w.nkeys, 900);
	}
	if (res->sampled_cpu_ns) {
		double ppm = ((double)res->cost_ns * (double)w.samples + (double)res->sampler_cpu_ns) /
			     (double)res->sampled_cpu_ns * 1e6;
		res->overhead_ppm = ppm > 1e9 ? 1000000000u : (uint32_t)ppm;
	}
	out->threads += w.threads; /* segment() kept it as it came in */
	core_free_clear(w.keys, w.cap_keys * sizeof(*w.keys));
	return rc;
}

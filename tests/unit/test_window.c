/*
 * The sampling window of real profile stages on this process (self
 * context, perf-ip): two threads spend their time in 64 small functions
 * picked pseudo-randomly, a steady profile of 64 hot functions of 38
 * bytes, 48 apart, so about 13 hot 256-byte blocks (the keys, with the
 * worker loop's). For such a profile the convergence distance after n
 * samples is about 0.4 * sqrt(13 / n) (sample/window.c): 3 % (the
 * default threshold) near 2.3k samples, and no less than ~1.9 % at the
 * ~6k samples 300 ms can give two threads at 10 kHz, let alone 0.1 %.
 *
 *  1. converging, threshold 3 %, min 500 ms, max 30 s: stops "converged",
 *     with a distance below 3 %, long before the maximum;
 *  2. converging, threshold 0.1 % (1 permille), max 300 ms: stops at the
 *     maximum ("max window"), distance above 0.1 %;
 *  3. a fixed window (profile_ms 400): stops "fixed window" after one
 *     segment at the asked rate, distance reported all the same;
 *  4. a fixed window with a cost limit of 2 % (max_overhead_permille 20):
 *     where one sample costs enough that the asked 10 kHz would exceed it
 *     (cost_ns x 10 kHz > 2 %: on this VM ~17 us x 10k = 17 %), the rate
 *     is lowered, the window lengthened up to profile_max_ms 1000 (stop
 *     "max window": the fixed window's rate-ms cannot be reached at ~1 kHz
 *     in 1 s), and the estimate ends near the limit;
 * 4b. a converging window (which cannot converge: 1 permille, max 500 ms)
 *     under the default cost limit (2 %): where the rate drops, its
 *     maximum counts rate-ms and it lasts longer than 500 ms, at most
 *     16 x; the estimate ends near the limit. Parts 1 and 6 set 1000 (no
 *     limit) and keep the asked rate, part 2 too (its 300 ms are wall time);
 * 4c. a fixed window asked at 50 Hz under a limit: its rate stays at or
 *     below 50 Hz (the limit's 100 Hz floor does not raise it);
 *  5. a converging window that cannot converge (1 permille, max 30 s),
 *     canceled (ocolos_cancel) from another thread after 2 s:
 *     OCOLOS_ECANCELED, stop "canceled", the stats filled as far as it got;
 *  6. the same converging window as 1 on a forked child of this program
 *     through a pid context (the sampled threads' CPU time read from
 *     another process's /proc): converged, cost above 0;
 *  7. a whole round with a converging window, then the profile stage of
 *     the next generation, whose samples are in the optimized code
 *     (keyed by the block of the binary BAT maps them back to): both
 *     converge;
 *  8. sigprof, converging at 100 permille (about (0.4 / 0.1)^2 x 13 = 200
 *     samples, past its minimum window): converged in
 *     segments too, its per-sample cost not measured (0), the estimate
 *     the sampling thread's share only;
 *  9. the options' checks.
 * Every window also reports a cost estimate above 0 and below 100 %.
 * No timing is asserted but the windows' own bounds.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"

#define F(i) __attribute__((noinline)) static uint64_t f##i(uint64_t x) \
	{ for (int k = 0; k < 50; k++) x = x * 6364136223846793005ull + (i); return x; }
#define F8(a) F(a##0) F(a##1) F(a##2) F(a##3) F(a##4) F(a##5) F(a##6) F(a##7)
F8(1) F8(2) F8(3) F8(4) F8(5) F8(6) F8(7) F8(8)
#define R8(a) f##a##0, f##a##1, f##a##2, f##a##3, f##a##4, f##a##5, f##a##6, f##a##7,
static uint64_t (*const fns[64])(uint64_t) = { R8(1) R8(2) R8(3) R8(4) R8(5) R8(6) R8(7) R8(8) };

static atomic_int quit;
static void *worker(void *arg)
{
	uint64_t h = (uintptr_t)arg;
	while (!atomic_load_explicit(&quit, memory_order_relaxed))
		for (int i = 0; i < 1000; i++)
			h = fns[(h >> 29) & 63](h + (uint64_t)i);
	return (void *)(uintptr_t)h;
}

/* The library's account of each window, for the test's log. */
static void log_window(enum ocolos_log_level level, const char *msg, void *user)
{
	(void)level;
	(void)user;
	if (strstr(msg, "sampling window"))
		fprintf(stderr, "  %s\n", msg);
}

static const char *const stops[] = { "none", "fixed", "converged", "max", "canceled" };

struct canceler {
	struct ocolos_ctx *ctx;
	pthread_t tid;
};

static void *cancel_later(void *arg)
{
	struct canceler *c = arg;
	usleep(2000000);
	ocolos_cancel(c->ctx);
	return NULL;
}

/* A profile stage with `o` on `pid` (0: this process), canceled after
 * 600 ms if `cancel`; its stats in *st. */
static int profile_on(pid_t pid, const struct ocolos_opts *o, struct ocolos_stats *st,
		      const char *what, int cancel)
{
	struct ocolos_ctx *ctx = NULL;
	struct ocolos_opts with_log = *o;
	with_log.log_fn = log_window;
	int rc = pid ? ocolos_open_pid(pid, &with_log, &ctx) : ocolos_open_self(&with_log, &ctx);
	struct canceler c = { ctx, 0 };
	if (!rc && cancel)
		check(pthread_create(&c.tid, NULL, cancel_later, &c) == 0, "pthread_create");
	if (!rc)
		rc = ocolos_stage_profile(ctx, st);
	if (c.tid)
		pthread_join(c.tid, NULL);
	fprintf(stderr, "%s: rc %d (%s) stop %s, %.0f ms, %llu samples, distance %.2f%%, "
		"rate %u Hz, cost %u ns/sample, overhead %.2f%%\n", what, rc,
		rc ? ocolos_last_error(ctx) : "ok", st->profile_stop < 5 ? stops[st->profile_stop] : "?",
		st->profile_ns / 1e6, (unsigned long long)st->samples, st->profile_distance_ppm / 1e4,
		st->sample_hz_final, st->sample_cost_ns, st->sample_overhead_ppm / 1e4);
	ocolos_close(ctx);
	return rc;
}

static int profile(const struct ocolos_opts *o, struct ocolos_stats *st, const char *what)
{
	return profile_on(0, o, st, what, 0);
}

/* What every window reports. */
static void plausible(const struct ocolos_stats *st, const char *what)
{
	expect(st->samples > 0, "%s: no samples", what);
	/* Two workers (self: the calling thread is not sampled; the child:
	 * its two threads), counted once however many segments. */
	expect(st->threads_sampled >= 2 && st->threads_sampled <= 4, "%s: %u threads sampled",
	       what, st->threads_sampled);
	expect(st->sample_overhead_ppm > 0 && st->sample_overhead_ppm < 1000000,
	       "%s: overhead %u ppm", what, st->sample_overhead_ppm);
	expect(st->sample_hz_final >= 100 && st->sample_hz_final <= 10000, "%s: rate %u", what,
	       st->sample_hz_final);
	expect(st->profile_distance_ppm <= 1000000, "%s: distance %u", what,
	       st->profile_distance_ppm);
}

int main(void)
{
	test_require_perf();
	/* The child of part 6, forked before this process has threads. */
	pid_t child = fork();
	check(child >= 0, "fork");
	if (child == 0) {
		pthread_t ct;
		pthread_create(&ct, NULL, worker, (void *)(uintptr_t)7);
		worker((void *)(uintptr_t)11);
		_exit(0);
	}
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)((i + 1) * 0x9e3779b97f4a7c15ull));
	usleep(200000);

	OCOLOS_OPTS(ocolos_opts, conv, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_min_ms = 500,
		    .profile_max_ms = 30000, .max_overhead_permille = 1000);
	OCOLOS_OPTS(ocolos_stats, s1);
	expect(profile(&conv, &s1, "converge") == 0, "converging window failed");
	expect(s1.profile_stop == OCOLOS_PROFILE_STOP_CONVERGED, "stop %u, want converged",
	       s1.profile_stop);
	expect(s1.profile_distance_ppm < 30000, "distance %u ppm, threshold 30000",
	       s1.profile_distance_ppm);
	expect(s1.profile_ns >= 500000000ull && s1.profile_ns < 30000000000ull,
	       "window %llu ns outside [min, max]", (unsigned long long)s1.profile_ns);
	expect(s1.sample_hz_final == 10000, "rate %u without a cost limit", s1.sample_hz_final);
	plausible(&s1, "converge");

	OCOLOS_OPTS(ocolos_opts, tight, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_max_ms = 300,
		    .profile_converge_permille = 1, .max_overhead_permille = 1000);
	OCOLOS_OPTS(ocolos_stats, s2);
	int rc = profile(&tight, &s2, "max");
	expect(rc == 0 || rc == OCOLOS_ENOPROFILE, "max window failed: %d", rc);
	expect(s2.profile_stop == OCOLOS_PROFILE_STOP_MAX, "stop %u, want max", s2.profile_stop);
	expect(s2.profile_distance_ppm > 1000, "distance %u ppm at the max", s2.profile_distance_ppm);
	expect(s2.profile_ns < 2000000000ull, "300 ms window took %llu ns",
	       (unsigned long long)s2.profile_ns);
	if (!rc)
		plausible(&s2, "max");

	OCOLOS_OPTS(ocolos_opts, fixed, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_ms = 400);
	OCOLOS_OPTS(ocolos_stats, s3);
	expect(profile(&fixed, &s3, "fixed") == 0, "fixed window failed");
	expect(s3.profile_stop == OCOLOS_PROFILE_STOP_FIXED, "stop %u, want fixed", s3.profile_stop);
	expect(s3.sample_hz_final == 10000, "rate %u", s3.sample_hz_final);
	plausible(&s3, "fixed");

	OCOLOS_OPTS(ocolos_opts, lim, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_ms = 400,
		    .profile_max_ms = 1000, .max_overhead_permille = 20);
	OCOLOS_OPTS(ocolos_stats, s4);
	expect(profile(&lim, &s4, "limit") == 0, "window with a cost limit failed");
	plausible(&s4, "limit");
	if ((uint64_t)s4.sample_cost_ns * 10000 / 1000 > 2 * 20000) {
		/* 10 kHz would cost over twice the limit: the rate must drop. */
		expect(s4.sample_hz_final < 10000, "rate %u kept at %u ns per sample",
		       s4.sample_hz_final, s4.sample_cost_ns);
		expect(s4.profile_stop == OCOLOS_PROFILE_STOP_MAX, "stop %u, want max (lengthened)",
		       s4.profile_stop);
		expect(s4.profile_ns > 400000000ull, "window %llu ns not lengthened",
		       (unsigned long long)s4.profile_ns);
		expect(s4.sample_overhead_ppm < 2 * 20000, "estimate %u ppm, limit 20000",
		       s4.sample_overhead_ppm);
	} else {
		fprintf(stderr, "limit: %u ns per sample is cheap here, the rate may stay\n",
			s4.sample_cost_ns);
	}

	/* 4c: a rate asked below the 100 Hz floor stays below it under a
	 * limit (the floor is min(100 Hz, the asked rate)). */
	OCOLOS_OPTS(ocolos_opts, slow, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_ms = 300,
		    .profile_max_ms = 600, .sample_hz = 50, .max_overhead_permille = 20);
	OCOLOS_OPTS(ocolos_stats, s4c);
	rc = profile(&slow, &s4c, "50 Hz limited");
	expect(rc == 0 || rc == OCOLOS_ENOPROFILE, "50 Hz window under a limit: %d", rc);
	expect(s4c.sample_hz_final > 0 && s4c.sample_hz_final <= 50,
	       "50 Hz asked, %u Hz at the end", s4c.sample_hz_final);

	/* 4b: the default limit of a converging window, which cannot
	 * converge at 1 permille: its maximum counts rate-ms. */
	OCOLOS_OPTS(ocolos_opts, dlim, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_max_ms = 500,
		    .profile_converge_permille = 1);
	OCOLOS_OPTS(ocolos_stats, s4b);
	rc = profile(&dlim, &s4b, "default limit");
	expect(rc == 0, "converging window under the default limit failed: %d", rc);
	plausible(&s4b, "default limit");
	expect(s4b.profile_stop == OCOLOS_PROFILE_STOP_MAX, "stop %u, want max", s4b.profile_stop);
	expect(s4b.profile_ns < 16ull * 500000000ull + 2000000000ull,
	       "window %llu ns past 16 x profile_max_ms", (unsigned long long)s4b.profile_ns);
	if ((uint64_t)s4b.sample_cost_ns * 10000 / 1000 > 2 * 20000) {
		expect(s4b.sample_hz_final < 10000, "default limit: rate %u kept at %u ns per sample",
		       s4b.sample_hz_final, s4b.sample_cost_ns);
		/* At most ~1/2 of the asked rate: at least ~2 x the 500 ms. */
		expect(s4b.profile_ns > 800000000ull, "window %llu ns: the maximum did not stretch",
		       (unsigned long long)s4b.profile_ns);
		expect(s4b.sample_overhead_ppm < 2 * 20000, "estimate %u ppm, default limit 20000",
		       s4b.sample_overhead_ppm);
	} else {
		fprintf(stderr, "default limit: %u ns per sample is cheap here, the rate may stay\n",
			s4b.sample_cost_ns);
	}

	OCOLOS_OPTS(ocolos_opts, never, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_max_ms = 30000,
		    .profile_converge_permille = 1);
	OCOLOS_OPTS(ocolos_stats, s5);
	rc = profile_on(0, &never, &s5, "cancel", 1);
	expect(rc == OCOLOS_ECANCELED, "canceled window: rc %d", rc);
	expect(s5.profile_stop == OCOLOS_PROFILE_STOP_CANCELED, "stop %u, want canceled",
	       s5.profile_stop);
	/* Not s5.samples > 0: on a loaded machine the steps before the window
	 * (BOLT's probe, the reservation) may outlast the 2 s, and the window
	 * then stops at its start, canceled all the same. */
	expect(s5.profile_ns < 30000000000ull, "canceled window ran %llu ns",
	       (unsigned long long)s5.profile_ns);
	expect(strstr(ocolos_last_error(NULL), "into the sampling window") != NULL,
	       "message: %s", ocolos_last_error(NULL));

	OCOLOS_OPTS(ocolos_stats, s6);
	rc = profile_on(child, &conv, &s6, "pid", 0);
	if (rc == OCOLOS_EATTACH || rc == OCOLOS_EPERF) {
		fprintf(stderr, "pid: cannot sample or trace the child here, part 6 skipped\n");
	} else {
		expect(rc == 0, "converging window of a pid context: %d", rc);
		expect(s6.profile_stop == OCOLOS_PROFILE_STOP_CONVERGED, "pid: stop %u, want "
		       "converged", s6.profile_stop);
		plausible(&s6, "pid");
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);

	struct ocolos_ctx *ctx = NULL;
	OCOLOS_OPTS(ocolos_opts, logged, .sampler = OCOLOS_SAMPLER_PERF_IP, .profile_min_ms = 500,
		    .profile_max_ms = 30000, .log_fn = log_window);
	check(ocolos_open_self(&logged, &ctx) == 0, "open: %s", ocolos_last_error(NULL));
	OCOLOS_OPTS(ocolos_stats, s7);
	rc = ocolos_round(ctx, &s7);
	fprintf(stderr, "round: rc %d (%s) stop %u, %llu samples, moved %u\n", rc,
		rc ? ocolos_last_error(ctx) : "ok", s7.profile_stop,
		(unsigned long long)s7.samples, s7.functions_moved);
	expect(rc == 0 && s7.profile_stop == OCOLOS_PROFILE_STOP_CONVERGED,
	       "round with a converging window: rc %d, stop %u", rc, s7.profile_stop);
	if (!rc) {
		OCOLOS_OPTS(ocolos_stats, s8);
		rc = ocolos_stage_profile(ctx, &s8);
		fprintf(stderr, "next: rc %d stop %u, %llu samples, distance %.2f%%\n", rc,
			s8.profile_stop, (unsigned long long)s8.samples,
			s8.profile_distance_ppm / 1e4);
		expect(rc == 0 && s8.profile_stop == OCOLOS_PROFILE_STOP_CONVERGED,
		       "next generation's window: rc %d, stop %u", rc, s8.profile_stop);
		expect(ocolos_revert(ctx, NULL) == 0, "revert: %s", ocolos_last_error(ctx));
	}
	ocolos_close(ctx);
	ctx = NULL;

	OCOLOS_OPTS(ocolos_opts, sig, .sampler = OCOLOS_SAMPLER_SIGPROF, .profile_min_ms = 500,
		    .profile_max_ms = 30000, .profile_converge_permille = 100);
	OCOLOS_OPTS(ocolos_stats, s9);
	expect(profile(&sig, &s9, "sigprof") == 0, "sigprof converging window failed");
	expect(s9.profile_stop == OCOLOS_PROFILE_STOP_CONVERGED, "sigprof: stop %u, want converged",
	       s9.profile_stop);
	expect(s9.sample_cost_ns == 0, "sigprof: cost %u ns, not measured", s9.sample_cost_ns);
	plausible(&s9, "sigprof");

	OCOLOS_OPTS(ocolos_opts, b1, .profile_ms = 1000, .profile_min_ms = 500);
	expect(ocolos_open_self(&b1, &ctx) == OCOLOS_EINVAL, "profile_ms with profile_min_ms");
	OCOLOS_OPTS(ocolos_opts, b2, .profile_min_ms = 2000, .profile_max_ms = 1000);
	expect(ocolos_open_self(&b2, &ctx) == OCOLOS_EINVAL, "min > max");
	OCOLOS_OPTS(ocolos_opts, b3, .max_overhead_permille = 1001);
	expect(ocolos_open_self(&b3, &ctx) == OCOLOS_EINVAL, "overhead over 1000 permille");
	OCOLOS_OPTS(ocolos_opts, b4, .profile_ms = 1000, .profile_max_ms = 500);
	expect(ocolos_open_self(&b4, &ctx) == OCOLOS_EINVAL, "max shorter than the fixed window");
	OCOLOS_OPTS(ocolos_opts, b5, .profile_converge_permille = 1001);
	expect(ocolos_open_self(&b5, &ctx) == OCOLOS_EINVAL, "threshold over 1000 permille");

	atomic_store(&quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	test_done();
}

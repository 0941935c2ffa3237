/*
 * The benefit check: is the code a round just switched to faster than the
 * original, on this program, now? BOLT's layout is a bet on the profile
 * still describing the work; it can lose (a profile from another phase, a
 * machine without branch records, where inferred edges mislead), and a
 * public report has PostgreSQL about 20 % slower after BOLT on such a
 * machine. Only the program knows what "faster" means, so the caller gives
 * a work counter; the library does the rest, while the program runs.
 *
 * How. Windows of the same length alternate the two codes, in ABBA order
 * (new, original | original, new | new, original ...), so a trend in the
 * load (a ramp, a warming cache) counts against each side equally. Each
 * pair gives one ratio, new rate over original rate; the median of the
 * pairs decides, as the benchmarks in bench/ do, because a burst of noise
 * on a shared machine spoils one pair, not the verdict. A revert or a
 * re-apply is one short stop (~2 ms), not counted in any window.
 *
 * The comparison is with the original code (C0), whatever generation came
 * before: a revert takes every version's patches back to C0, and "keep the
 * newest or run the original" is a state the library can always reach.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/util.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Work per second over one window of `ms`; -1 if the counter went back. */
static double window_rate(struct ocolos_ctx *ctx, uint32_t ms)
{
	uint64_t w0 = ctx->opts.work_fn(ctx->opts.work_user), t0 = core_now_ns();
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
	uint64_t w1 = ctx->opts.work_fn(ctx->opts.work_user), t1 = core_now_ns();
	if (w1 < w0 || t1 <= t0)
		return -1;
	return (double)(w1 - w0) * 1e9 / (double)(t1 - t0);
}

static int to(struct ocolos_ctx *ctx, int forward)
{
	struct ocolos_switch_stats sw = { .sz = sizeof(sw) };
	return api_switch(ctx, forward, &sw);
}

int api_benefit_check(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	const struct api_opts *o = &ctx->opts;
	uint32_t pairs = o->benefit_pairs;
	double *ratio = calloc(pairs, sizeof(*ratio));
	if (!ratio)
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	uint64_t t0 = core_now_ns();
	int rc = 0, on_new = 1; /* the round left the new code in use */
	uint32_t done = 0, stalled = 0;
	for (uint32_t i = 0; i < pairs && !rc; i++) {
		double rate[2]; /* [0] original, [1] new */
		for (int k = 0; k < 2 && !rc; k++) {
			/* ABBA: even pairs start on the code in use, odd ones end there */
			int want_new = (i % 2 == 0) ? (k == 0) : (k == 1);
			if (want_new != on_new) {
				if ((rc = api_check_cancel(ctx, "in the benefit check")))
					break;
				if ((rc = to(ctx, want_new)))
					break;
				on_new = want_new;
			}
			rate[want_new] = window_rate(ctx, o->benefit_window_ms);
		}
		if (rc)
			break;
		if (rate[0] < 0 || rate[1] < 0) {
			rc = core_errf(&ctx->err, OCOLOS_EINVAL, "the work counter went backwards during "
				       "the benefit check: it must only grow");
			break;
		}
		if (rate[0] == 0) {
			stalled++; /* no work in the original's window: no ratio */
			continue;
		}
		ratio[done++] = rate[1] / rate[0];
	}
	double median = 0;
	if (done) {
		qsort(ratio, done, sizeof(*ratio), cmp_double);
		median = done % 2 ? ratio[done / 2] : (ratio[done / 2 - 1] + ratio[done / 2]) / 2;
	}
	free(ratio);
	st->benefit_pairs = done;
	st->benefit_ratio = median;
	st->benefit_ns = core_now_ns() - t0;
	/* The verdict; a failed switch or a bad counter keeps what is safe:
	 * the original code (a switch that failed left the target on the code
	 * it ran before it, which the record says). */
	int keep = !rc && (done ? median >= o->benefit_min_ratio : 1);
	if (!rc && !done)
		core_logf(&ctx->log, OCOLOS_LOG_WARN,
			  "benefit check: the work counter did not advance in %u of %u pairs; "
			  "no verdict, the optimized code is kept", stalled, pairs);
	if (keep != on_new) {
		int src = to(ctx, keep);
		if (src && !rc)
			rc = src;
		if (!src)
			on_new = keep;
	}
	if (rc)
		return rc;
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "benefit check: median ratio %.3f over %u pairs of %u ms (threshold %.3f): %s",
		  median, done, o->benefit_window_ms, o->benefit_min_ratio,
		  keep ? "optimized code kept" : "reverted to the original code");
	if (!keep)
		return core_errf(&ctx->err, OCOLOS_ENOGAIN,
				 "the optimized code ran at %.3f times the original's work rate "
				 "(median of %u pairs of %u ms; opts.benefit_min_ratio %.3f): the target "
				 "runs its original code again; ocolos_reapply() puts the optimized code "
				 "back", median, done, o->benefit_window_ms, o->benefit_min_ratio);
	return 0;
}

int api_stage_check(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	if (!ctx->opts.work_fn)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "the benefit check needs a work counter: "
				 "set opts.work_fn when the context is opened");
	uint64_t bias;
	int rc = api_open_model(ctx);
	if (!rc)
		rc = api_find_bias(ctx, &bias);
	if (!rc && !ctx->state->bias)
		ctx->state->bias = bias;
	if (!rc)
		rc = api_state_sync(ctx, 1);
	if (rc)
		return rc;
	if (!ctx->state->nv || !ctx->state->redirected)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "no optimized code in use to check: run "
				 "a round (or ocolos_reapply) first");
	if (ctx->round_st_valid) { /* right after this context's round: go on from it */
		size_t sz = st->sz;
		*st = ctx->round_st;
		st->sz = sz;
	}
	rc = api_benefit_check(ctx, st);
	api_fill_state_stats(ctx->state, st);
	return rc;
}

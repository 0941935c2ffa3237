/*
 * Revert and re-apply: the live round's plan written backward (C1 -> C0)
 * or forward again, in one stop-the-world. C1 stays mapped either way (a
 * thread may still run in it), so switching is cheap: an in-process A/B
 * comparison is two switches.
 */
#include <string.h>

#include "api/api.h"

int api_switch(struct ocolos_ctx *ctx, int forward, struct ocolos_switch_stats *st)
{
	if (!ctx->state->live)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "no optimized code to switch: run a round first");
	if (ctx->state->redirected == forward)
		return core_errf(&ctx->err, OCOLOS_EINVAL, forward
				 ? "the optimized code is already in use"
				 : "the target already runs its original code");
	struct inject_switch_request rq = { .plan = &ctx->state->applied.plan, .forward = forward };
	struct inject_switch_result sw = { 0 };
	int rc = inject_switch(&ctx->target, &rq, &sw, &ctx->err);
	const struct inject_apply_result res = sw.applied;
	st->threads_stopped = sw.threads;
	st->pause_ns = sw.pause_ns;
	st->call_sites = res.call_sites;
	st->pointer_slots = res.ptr_slots;
	st->entries = res.entries;
	st->mismatched = res.mismatched;
	if (rc)
		return rc;
	ctx->state->redirected = forward;
	ctx->state->generation++;
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "%s: %u call sites, %u pointer slots, %u entries (%u mismatched), %u threads "
		  "stopped for %.3f ms", forward ? "redirect to C1" : "revert to C0", res.call_sites,
		  res.ptr_slots, res.entries, res.mismatched, st->threads_stopped,
		  (double)st->pause_ns / 1e6);
	return 0;
}

/*
 * Revert and re-apply: every location the rounds changed back to its
 * original bytes (slots excepted: their stubs go back to C0), or forward
 * again to what the newest round wanted, in one stop-the-world. The code
 * versions stay mapped either way (a thread may still run in them, and a
 * re-apply is then cheap: an in-process A/B comparison is two switches).
 */
#include <string.h>

#include "api/api.h"

int api_switch(struct ocolos_ctx *ctx, int forward, struct ocolos_switch_stats *st)
{
	struct api_state *state = ctx->state;
	if (!state->nv)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "no optimized code to switch: run a round first");
	if (state->redirected == forward)
		return core_errf(&ctx->err, OCOLOS_EINVAL, forward
				 ? "the optimized code is already in use"
				 : "the target already runs its original code");
	struct inject_plan c0 = { 0 };
	int rc = forward ? 0 : api_want_c0(ctx, &c0);
	struct inject_switch_result sw = { 0 };
	if (!rc)
		rc = api_transition(ctx, forward ? &state->want : &c0, &sw, NULL);
	inject_plan_free(&c0);
	const struct inject_apply_result res = sw.applied;
	st->threads_stopped = sw.threads;
	st->pause_ns = sw.pause_ns;
	st->call_sites = res.call_sites;
	/* A slot keeps its stub: what changes is where the stub leads. */
	st->pointer_slots = res.ptr_slots + res.stubs;
	st->entries = res.entries;
	st->mismatched = res.mismatched;
	if (rc)
		return rc;
	state->redirected = forward;
	state->generation++;
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "%s: %u call sites, %u pointer slots, %u stubs, %u entries (%u mismatched), %u "
		  "threads stopped for %.3f ms", forward ? "redirect to the newest code" : "revert to C0",
		  res.call_sites, res.ptr_slots, res.stubs, res.entries, res.mismatched,
		  st->threads_stopped, (double)st->pause_ns / 1e6);
	/* The versions stay mapped: a re-apply is one switch, and a thread
	 * may still run in them; ocolos_retire() unmaps those it can. */
	return 0;
}

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
	uint64_t bias;
	int rc = api_open_model(ctx);
	if (!rc)
		rc = api_find_bias(ctx, &bias);
	if (!rc && !state->bias)
		state->bias = bias;
	/* What the rounds did, possibly by another agent (persist.c). */
	if (!rc)
		rc = api_state_sync(ctx, 1);
	if (rc)
		return rc;
	if (!state->nv)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "no optimized code to switch: run a round first");
	if (state->redirected == forward)
		return core_errf(&ctx->err, OCOLOS_EINVAL, forward
				 ? "the optimized code is already in use"
				 : "the target already runs its original code");
	struct inject_plan c0 = { 0 };
	rc = forward ? 0 : api_want_c0(ctx, &c0);
	struct inject_switch_result sw = { 0 };
	const struct inject_plan *want = forward ? &state->want : &c0;
	if (!rc)
		rc = api_state_save(ctx, &(struct api_pending){ .phase = API_PHASE_SWITCHING,
				    .want = want, .forward = forward });
	if (!rc)
		rc = api_transition(ctx, want, &sw, NULL);
	inject_plan_free(&c0);
	const struct inject_apply_result res = sw.applied;
	st->threads_stopped = sw.threads;
	st->pause_ns = sw.pause_ns;
	st->call_sites = res.call_sites;
	/* A slot keeps its stub: what changes is where the stub leads. */
	st->pointer_slots = res.ptr_slots + res.slot_stubs;
	st->entries = res.entries;
	st->mismatched = res.mismatched;
	if (rc) {
		api_state_save_quiet(ctx, NULL);
		return rc;
	}
	state->redirected = forward;
	state->generation++;
	api_state_save_quiet(ctx, NULL);
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "%s: %u call sites, %u pointer slots, %u stubs, %u entries (%u mismatched), %u "
		  "threads stopped for %.3f ms", forward ? "redirect to the newest code" : "revert to C0",
		  res.call_sites, res.ptr_slots, res.stubs, res.entries, res.mismatched,
		  st->threads_stopped, (double)st->pause_ns / 1e6);
	/* The newest version stays mapped (a re-apply is one switch);
	 * older ones go if nothing can reach them, as after a round;
	 * ocolos_retire() unmaps the newest too. A failure to retire is not
	 * the switch's. */
	uint32_t retired = 0;
	if (api_retire(ctx, NULL, 1, &retired))
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "retiring old code failed: %s", ctx->err.msg);
	core_err_clear(&ctx->err);
	return 0;
}

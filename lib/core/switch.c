/*
 * Switching the process between C0 and C1: one stop-the-world in which a
 * patch plan is written forward (a round's replace stage, a re-apply) or
 * backward (a revert). The pause is measured here and nowhere else.
 */
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/util.h"

int core_switch_self(struct ocolos_ctx *ctx, const struct inject_plan *plan,
		     int forward, struct ocolos_switch_stats *st)
{
	memset(st, 0, sizeof(*st));
	int memfd, rc = inject_mem_open(getpid(), &memfd, &ctx->err);
	if (rc)
		return rc;
	struct inject_stop *stop;
	struct inject_apply_result res = { 0 };
	uint64_t t0 = core_now_ns();
	rc = inject_stop_self(ctx->stop_signal, ctx->stop_timeout_ms, &stop,
			      &st->threads_stopped, &ctx->err);
	if (!rc) {
		uint64_t t1 = core_now_ns();
		rc = inject_apply(memfd, plan, forward, &res, &ctx->err);
		uint64_t t2 = core_now_ns(), t3;
		inject_resume_self(stop, &t3);
		/* The pause ends when the parked threads are woken. */
		st->pause_ns = t3 - t0;
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "pause: stop %.3f ms, patch %.3f ms, wake %.3f ms",
			  (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(t3 - t2) / 1e6);
	}
	close(memfd);
	if (rc)
		return rc;
	st->call_sites = res.call_sites;
	st->pointer_slots = res.ptr_slots;
	st->mismatched = res.mismatched;
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "%s: %u call sites, %u pointer slots (%u mismatched), %u threads stopped for %.3f ms",
		  forward ? "redirect to C1" : "revert to C0", res.call_sites, res.ptr_slots,
		  res.mismatched, st->threads_stopped, (double)st->pause_ns / 1e6);
	return 0;
}

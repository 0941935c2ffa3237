/*
 * The switch: the one protocol by which code in use changes, for both
 * targets (in-process and by ptrace) and both directions (C0 -> C1, and
 * back for a revert).
 *
 *   before the stop   the spans the plan writes (the target pre-faults
 *                     pages, or collects page protections: poke_prepare);
 *                     going forward with entry patches, a snapshot of the
 *                     target's mappings and scratch space for its stacks
 *   stopped           entries a thread could resume inside are blocked
 *                     (entry.c); the plan is written (apply.c); optionally
 *                     the stopped threads' frames in moved C0 code counted
 *   resume            the pause ends when the threads are let go
 *
 * Nothing inside the stop allocates or reads /proc: an in-process stop
 * parks threads that may hold the allocator's locks.
 */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "inject/inject.h"

int inject_switch(struct proc_target *t, const struct inject_switch_request *rq,
		  struct inject_switch_result *res, struct core_err *err)
{
	memset(res, 0, sizeof(*res));
	struct inject_plan *plan = rq->plan;
	struct proc_span *spans = NULL;
	size_t nspans = 0;
	struct inject_stack_snapshot ss = { 0 };
	int check_entries = rq->forward && plan->entries;
	int rc = inject_plan_spans(plan, &spans, &nspans, err);
	if (!rc && check_entries)
		rc = inject_stack_snapshot_take(t, &ss, err);
	if (!rc)
		rc = t->ops->poke_prepare(t, spans, nspans, err);
	free(spans);
	if (rc) {
		inject_stack_snapshot_free(&ss);
		return rc;
	}
	struct proc_stop *stop = NULL;
	uint64_t t0 = core_now_ns(), t1 = 0;
	rc = t->ops->stop(t, &stop, &res->threads, err);
	if (!rc) {
		size_t nts = 0;
		const struct proc_thread_state *ts = t->ops->states(stop, &nts);
		if (check_entries)
			inject_entries_check(plan, ts, nts, inject_stack_words, &ss, ss.scratch);
		rc = inject_apply(t, plan, rq->forward, &res->applied, err);
		if (!rc && rq->moved) {
			/* Counted while stopped, so part of the pause (reported apart). */
			uint64_t s0 = core_now_ns();
			if (t->ops->count_frames(t, stop, rq->moved, rq->nmoved, &res->stack_threads,
						 &res->stack_frames) == 0)
				res->stack_ns = core_now_ns() - s0;
		}
		t->ops->resume(t, stop, &t1);
		res->pause_ns = t1 - t0; /* the pause ends when the threads are let go */
	}
	t->ops->poke_done(t);
	inject_stack_snapshot_free(&ss);
	return rc;
}

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
 *                     (entry.c), older versions' entries no thread can
 *                     reach are left for later (inject_defer, entry.c);
 *                     the plan is written (apply.c); optionally
 *                     the stopped threads' frames in moved C0 code counted,
 *                     and which watched ranges (versions to retire) a
 *                     thread could still run in
 *   resume            the pause ends when the threads are let go
 *
 * Nothing inside the stop allocates or reads /proc: an in-process stop
 * parks threads that may hold the allocator's locks.
 */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "inject/inject.h"

/* `w` lies in a watched range: a PC or a register anywhere in it; a stack
 * word on a return site if they are known, or on a throw site if its
 * thread is inside the unwinder. */
static void mark(const struct inject_switch_request *rq, uint64_t w, int stack_word,
		 int unwinding)
{
	for (size_t i = 0; i < rq->nwatch; i++) {
		if (w < rq->watch[i][0] || w >= rq->watch[i][1])
			continue;
		if (!stack_word || !rq->watch_sites || !rq->watch_sites[i] ||
		    core_sorted_has(rq->watch_sites[i], rq->watch_nsites[i], w) ||
		    (unwinding && rq->watch_throw_sites && rq->watch_throw_sites[i] &&
		     core_sorted_has(rq->watch_throw_sites[i], rq->watch_nthrow_sites[i], w)))
			rq->watch_busy[i] = 1;
	}
}

static int in_unwinder(const struct inject_switch_request *rq, uint64_t w)
{
	for (size_t i = 0; i < rq->nunwinder; i++)
		if (w >= rq->unwinder[i][0] && w < rq->unwinder[i][1])
			return 1;
	return 0;
}

/* See watch_threads. */
#define THROW_SITE_TOP_WORDS 4

/* Is the thread at `pc` whose stack begins with words[0 .. n) inside the
 * unwinder? Conservative: a stale word of an earlier throw in the top of
 * its stack says yes too (the version then waits for a later stop). */
static int unwinding(const struct inject_switch_request *rq, uint64_t pc, const uint64_t *words,
		     size_t n)
{
	if (!rq->nunwinder)
		return 1;
	if (in_unwinder(rq, pc))
		return 1;
	for (size_t i = 0; i < n && i < INJECT_UNWINDER_WORDS; i++)
		if (in_unwinder(rq, words[i]))
			return 1;
	return 0;
}

/* Which watched ranges a stopped thread could still be in or return to:
 * its PC, registers, and stack words (conservatively: any word that looks
 * like such an address counts). An unreadable stack counts as all. */
static void watch_threads(const struct inject_switch_request *rq, const struct proc_thread_state *ts,
			  size_t nts, struct inject_stack_snapshot *ss, struct inject_defer *d)
{
	memset(rq->watch_busy, 0, rq->nwatch);
	if (rq->nsps)
		*rq->nsps = 0;
	for (size_t t = 0; t < nts; t++) {
		if (rq->sps && rq->nsps && *rq->nsps < rq->sps_cap)
			rq->sps[(*rq->nsps)++] = ts[t].sp;
		mark(rq, ts[t].pc, 0, 0);
		inject_defer_mark(d, ts[t].pc);
		for (uint32_t r = 0; r < ts[t].nregs; r++) {
			mark(rq, ts[t].regs[r], 0, 0);
			inject_defer_mark(d, ts[t].regs[r]);
		}
		/* The whole live stack, in scratch-sized pieces (the first one
		 * holds the top that says whether the thread unwinds). */
		int unw = 0;
		for (uint64_t sp = ts[t].sp & ~7ull;; sp += 8 * INJECT_STACK_WORDS) {
			size_t words = inject_stack_words(ss, sp, ss->scratch, INJECT_STACK_WORDS);
			if (!words && sp == (ts[t].sp & ~7ull) && ts[t].sp) {
				memset(rq->watch_busy, 1, rq->nwatch);
				d->all = 1;
				return;
			}
			if (sp == (ts[t].sp & ~7ull))
				unw = rq->watch_throw_sites && unwinding(rq, ts[t].pc, ss->scratch, words);
			/* The top words count as unwinding whatever the PC: a
			 * thread in a PLT entry of __cxa_throw & co. has the throw
			 * site there (under the two words lazy binding pushes). */
			int top = sp == (ts[t].sp & ~7ull);
			for (size_t w = 0; w < words; w++) {
				mark(rq, ss->scratch[w], 1, unw || (top && w < THROW_SITE_TOP_WORDS));
				inject_defer_mark(d, ss->scratch[w]);
			}
			if (words < INJECT_STACK_WORDS)
				break;
		}
	}
}

/* glibc's pointer guard (tcbhead_t.pointer_guard, %fs:0x30 on x86-64),
 * the same in every thread of a process: read from the first stopped
 * thread's TLS (its fs base is the last register proc/ptrace.c reports),
 * or, in this process, from our own. */
static uint64_t pointer_guard(struct proc_target *t, const struct proc_thread_state *ts, size_t nts)
{
#if defined(__x86_64__)
	uint64_t g = 0;
	if (t->ops == &proc_target_self_ops) {
		__asm__("mov %%fs:0x30, %0" : "=r"(g));
		return g;
	}
	if (nts && ts[0].nregs >= 16 && ts[0].regs[15] &&
	    t->ops->peek(t, ts[0].regs[15] + 0x30, &g, sizeof(g)) == 0)
		return g;
#else
	(void)t; (void)ts; (void)nts;
#endif
	return 0;
}

int inject_switch(struct proc_target *t, const struct inject_switch_request *rq,
		  struct inject_switch_result *res, struct core_err *err)
{
	memset(res, 0, sizeof(*res));
	struct inject_plan *plan = rq->plan;
	struct proc_span *spans = NULL;
	size_t nspans = 0;
	struct inject_stack_snapshot ss = { 0 };
	int check_entries = rq->forward && plan->entries && inject_entries_need_check(plan);
	int need_stacks = check_entries || rq->nwatch;
	struct inject_runs runs = { 0 };
	struct inject_defer defer = { 0 };
	int rc = inject_plan_spans(plan, &spans, &nspans, err);
	if (!rc && rq->forward && rq->nwatch && rq->nversions && plan->entries)
		rc = inject_defer_init(&defer, rq->versions, rq->nversions, err);
	if (!rc)
		rc = inject_runs_build(plan, &runs, err);
	if (!rc && need_stacks)
		rc = inject_stack_snapshot_take(t, &ss, err);
	if (!rc)
		rc = t->ops->poke_prepare(t, spans, nspans, err);
	core_free_clear(spans, nspans * sizeof(*spans));
	if (rc) {
		inject_runs_free(&runs);
		inject_stack_snapshot_free(&ss);
		inject_defer_free(&defer);
		return rc;
	}
	/* OCOLOS_BENCH_PATCH_BY_PATCH: the writes as before runs, for
	 * bench/pid_pause.sh's interleaved comparison only. */
	plan->runs = runs.n && !getenv("OCOLOS_BENCH_PATCH_BY_PATCH") ? &runs : NULL;
	struct proc_stop *stop = NULL;
	uint64_t t0 = core_now_ns(), t1 = 0;
	rc = t->ops->stop(t, &stop, &res->threads, err);
	if (!rc) {
		uint64_t t_look = core_now_ns(), t_write;
		res->stop_ns = t_look - t0;
		size_t nts = 0;
		const struct proc_thread_state *ts = t->ops->states(stop, &nts);
		if (check_entries)
			inject_entries_check(plan, ts, nts, inject_stack_words, &ss, ss.scratch);
		if (rq->nwatch)
			watch_threads(rq, ts, nts, &ss, &defer);
		inject_defer_apply(&defer, plan);
		t_write = core_now_ns();
		res->look_ns = t_write - t_look;
		rc = inject_apply(t, plan, rq->forward, &res->applied, err);
		res->write_ns = core_now_ns() - t_write;
		if (!rc && rq->moved) {
			/* Counted while stopped, so part of the pause (reported apart). */
			uint64_t s0 = core_now_ns();
			if (t->ops->count_frames(t, stop, rq->moved, rq->nmoved, &res->stack_threads,
						 &res->stack_frames) == 0)
				res->stack_ns = core_now_ns() - s0;
		}
		res->pointer_guard = pointer_guard(t, ts, nts);
		t->ops->resume(t, stop, &t1);
		res->pause_ns = t1 - t0; /* the pause ends when the threads are let go */
	}
	plan->runs = NULL;
	inject_runs_free(&runs);
	t->ops->poke_done(t);
	inject_stack_snapshot_free(&ss);
	inject_defer_free(&defer);
	return rc;
}

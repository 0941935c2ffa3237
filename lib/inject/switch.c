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

/* Where a word being looked at comes from (inject_pin). */
struct pin_src {
	uint8_t kind;
	uint16_t reg;
	uint32_t thread;
	uint64_t sp, where;
};

/* `w` lies in a watched range: a PC or a register anywhere in it; a stack
 * word on a return site if they are known, or on a throw site if its
 * thread is inside the unwinder. */
static void mark(const struct inject_switch_request *rq, uint64_t w, int stack_word,
		 int unwinding, struct pin_src src)
{
	w = inject_code_word(w);
	for (size_t i = 0; i < rq->nwatch; i++) {
		if (w < rq->watch[i][0] || w >= rq->watch[i][1])
			continue;
		int ret = !stack_word || !rq->watch_sites || !rq->watch_sites[i] ||
			  core_sorted_has(rq->watch_sites[i], rq->watch_nsites[i], w);
		int thr = !ret && unwinding && rq->watch_throw_sites && rq->watch_throw_sites[i] &&
			  core_sorted_has(rq->watch_throw_sites[i], rq->watch_nthrow_sites[i], w);
		if (!ret && !thr)
			continue;
		if (rq->watch_pins && !rq->watch_busy[i])
			rq->watch_pins[i] = (struct inject_pin){ .kind = src.kind, .throw_site = (uint8_t)thr,
				.any_word = (uint8_t)(stack_word && (!rq->watch_sites || !rq->watch_sites[i])),
				.reg = src.reg, .thread = src.thread, .sp = src.sp, .where = src.where,
				.value = w };
		rq->watch_busy[i] = 1;
	}
}

/* Every range busy: what a stop cannot see might be anywhere. */
static void mark_all(const struct inject_switch_request *rq, struct inject_defer *d, uint32_t thread,
		     uint64_t sp)
{
	for (size_t i = 0; rq->watch_pins && i < rq->nwatch; i++)
		if (!rq->watch_busy[i])
			rq->watch_pins[i] = (struct inject_pin){ .kind = INJECT_PIN_UNKNOWN,
								 .thread = thread, .sp = sp };
	memset(rq->watch_busy, 1, rq->nwatch);
	d->all = 1;
}

static int in_unwinder(const struct inject_switch_request *rq, uint64_t w)
{
	w = inject_code_word(w);
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

/*
 * Signal frames. A thread inside a signal handler resumes, when the handler
 * returns, at the PC saved in the frame the kernel pushed on its stack —
 * anywhere in a function, not at a return site — with the registers saved
 * there, and on the stack pointer saved there (another stack when the
 * handler runs on sigaltstack). Each frame is found by an anchor word, and
 * its saved registers (the stack pointer and PC among them) lie at fixed
 * offsets from it:
 *  - x86-64 (struct rt_sigframe): the anchor is the handler's return
 *    address, glibc's sigreturn trampoline (rq->sigreturn), which begins
 *    the frame; the ucontext's general registers start 6 words in: r8..r15,
 *    rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip.
 *  - AArch64: struct sigcontext is fault_address, x0..x30, sp, pc, pstate,
 *    then (16-aligned) the records of __reserved, the first always the
 *    FP/SIMD one, whose header {magic 0x46508001, size 528} is the anchor
 *    word; x0 is 35 words before it.
 */
#if defined(__aarch64__)
#define SIGFRAME_ANCHOR 0x0000021046508001ull
#define SIGFRAME_REGS (-35) /* x0 .. x30, sp, pc */
#define SIGFRAME_NREGS 33
#else
#define SIGFRAME_REGS 6 /* r8 .. rcx, rsp, rip */
#define SIGFRAME_NREGS 17
#endif
#define SIGFRAME_SP (SIGFRAME_NREGS - 2) /* within the registers */
#define SIGFRAME_PC (SIGFRAME_NREGS - 1)
/* Interrupted contexts on other stacks followed per thread. */
#define MAX_OTHER_STACKS 4

struct other_stack {
	uint64_t pc, sp;
};

static int is_sigframe_anchor(const struct inject_switch_request *rq, uint64_t w)
{
#if defined(__aarch64__)
	(void)rq;
	return w == SIGFRAME_ANCHOR;
#else
	for (size_t i = 0; i < rq->nsigreturn; i++)
		if (w == rq->sigreturn[i])
			return 1;
	return 0;
#endif
}

/* Mark what the stack from `sp` up (to the end of its mapping) holds, for
 * a context at `pc`: its words, and the registers and PCs of the signal
 * frames in it; contexts those frames resume on another stack go to
 * `other`. -1 if the stack cannot be read at all. */
static int watch_stack(const struct inject_switch_request *rq, struct inject_stack_snapshot *ss,
		       struct inject_defer *d, uint32_t thread, uint64_t pc, uint64_t sp0,
		       uint64_t limit, struct other_stack *other, size_t *nother)
{
	int unw = 0;
	for (uint64_t sp = sp0 & ~7ull;; sp += 8 * INJECT_STACK_WORDS) {
		size_t words = inject_stack_words(ss, sp, ss->scratch, INJECT_STACK_WORDS);
		int top = sp == (sp0 & ~7ull), last = words < INJECT_STACK_WORDS;
		if (limit && words && sp + 8 * words > limit) {
			words = limit > sp ? (size_t)((limit - sp) / 8) : 0;
			last = 1;
		}
		if (!words && top && sp0)
			return -1;
		if (top)
			unw = rq->watch_throw_sites && unwinding(rq, pc, ss->scratch, words);
		for (size_t w = 0; w < words; w++) {
			uint64_t v = ss->scratch[w];
			/* The top words count as unwinding whatever the PC: a
			 * thread in a PLT entry of __cxa_throw & co. has the throw
			 * site there (under the two words lazy binding pushes). */
			mark(rq, v, 1, unw || (top && w < THROW_SITE_TOP_WORDS),
			     (struct pin_src){ INJECT_PIN_STACK, 0, thread, sp0, sp + 8 * w });
			inject_defer_mark(d, v);
			if (!is_sigframe_anchor(rq, v))
				continue;
			/* Its registers, from this piece of the stack, or read on
			 * their own where the frame crosses its edge. */
			int64_t at = (int64_t)w + SIGFRAME_REGS;
			uint64_t own[SIGFRAME_NREGS];
			const uint64_t *g = own;
			if (at >= 0 && at + SIGFRAME_NREGS <= (int64_t)words)
				g = &ss->scratch[at];
			else if (inject_stack_words(ss, sp + 8 * (uint64_t)at, own, SIGFRAME_NREGS) <
				 SIGFRAME_NREGS)
				continue; /* not all readable: not a frame */
			for (size_t r = 0; r < SIGFRAME_NREGS; r++) {
				mark(rq, g[r], 0, 0, (struct pin_src){ INJECT_PIN_SIGFRAME, (uint16_t)r,
					thread, sp0, sp + 8 * w });
				inject_defer_mark(d, g[r]);
			}
			uint64_t rsp = g[SIGFRAME_SP], rip = g[SIGFRAME_PC];
			uint64_t here = sp + 8 * w;
			if (rsp > here && rsp < sp + 8 * words) {
				/* Interrupted further up this stack: whether it was
				 * unwinding decides for the words above it. */
				size_t k = (size_t)((rsp - sp) / 8);
				unw |= rq->watch_throw_sites && unwinding(rq, rip, ss->scratch + k, words - k);
			} else if (rsp > here && words == INJECT_STACK_WORDS) {
				unw = 1; /* up this stack, past this piece: assumed so */
			} else if (other && *nother < MAX_OTHER_STACKS) {
				other[(*nother)++] = (struct other_stack){ rip, rsp };
			} else {
				/* Too many, or nested on another stack: the worst. */
				mark_all(rq, d, thread, sp0);
			}
		}
		if (last)
			break;
	}
	return 0;
}

/*
 * Where the frames of a thread's own stack end: at its thread pointer when
 * that lies above `sp` in the same mapping (glibc puts the thread's
 * descriptor — and on AArch64 the static TLS past it — at the top of the
 * block it allocates for the stack; x86-64's fs base is the descriptor,
 * AArch64's tpidr_el0 its end), else 0 (to the end of the mapping: the
 * process's stack, or a stack the thread pointer is not on). The mapping
 * alone is no bound: /proc/PID/maps shows adjacent anonymous mappings with
 * the same protections as one line (qemu-user does, and a kernel merges
 * them unless MAP_STACK keeps them apart), and under qemu-user, whose mmap
 * places guest mappings bottom-up and whose brk cannot grow past the
 * library's reservation, glibc's main arena grows by 1 MiB mmaps right
 * above a thread's stack: the heap, with the library's own lists of a
 * version's return sites in it, scanned as that thread's stack pinned
 * every version (it_continuous under qemu-aarch64). What lies past the
 * thread pointer (static TLS, or another mapping) is left to the memory
 * scan (scan.c), which reads every writable mapping.
 */
static uint64_t own_stack_limit(const struct inject_stack_snapshot *ss, uint64_t sp, uint64_t tp)
{
	if (!tp || tp <= sp)
		return 0;
	for (size_t i = 0; i < ss->maps.n; i++) {
		const struct procmaps_entry *e = &ss->maps.v[i];
		if (sp >= e->start && sp < e->end)
			return tp < e->end ? tp : 0;
	}
	return 0;
}

/* Which watched ranges a stopped thread could still be in or return to:
 * its PC, registers, and stack words (conservatively: any word that looks
 * like such an address counts), and what the signal frames on its stack
 * resume (x86-64). An unreadable stack counts as all. */
static void watch_threads(const struct inject_switch_request *rq, const struct proc_thread_state *ts,
			  size_t nts, struct inject_stack_snapshot *ss, struct inject_defer *d)
{
	memset(rq->watch_busy, 0, rq->nwatch);
	if (rq->watch_pins)
		memset(rq->watch_pins, 0, rq->nwatch * sizeof(*rq->watch_pins));
	if (rq->nthreads)
		*rq->nthreads = 0;
	for (size_t t = 0; t < nts; t++) {
		if (rq->threads && rq->nthreads && *rq->nthreads < rq->threads_cap)
			rq->threads[(*rq->nthreads)++] = (struct proc_live_thread){ ts[t].sp, ts[t].tp,
										   ts[t].tid };
		mark(rq, ts[t].pc, 0, 0, (struct pin_src){ INJECT_PIN_PC, 0, ts[t].tid, ts[t].sp, 0 });
		inject_defer_mark(d, ts[t].pc);
		for (uint32_t r = 0; r < ts[t].nregs; r++) {
			mark(rq, ts[t].regs[r], 0, 0,
			     (struct pin_src){ INJECT_PIN_REG, (uint16_t)r, ts[t].tid, ts[t].sp, 0 });
			inject_defer_mark(d, ts[t].regs[r]);
		}
		struct other_stack other[MAX_OTHER_STACKS];
		size_t nother = 0;
		if (watch_stack(rq, ss, d, ts[t].tid, ts[t].pc, ts[t].sp,
				own_stack_limit(ss, ts[t].sp, ts[t].tp), other, &nother)) {
			mark_all(rq, d, ts[t].tid, ts[t].sp);
			return;
		}
		/* A handler on sigaltstack: the stack it interrupted, from
		 * where it was (one level: a frame there is looked at, its
		 * own other stack is not followed). */
		for (size_t k = 0; k < nother; k++) {
			/* Unreadable: no stack, so no frame either (a stale
			 * word that looked like the trampoline). */
			mark(rq, other[k].pc, 0, 0, (struct pin_src){ INJECT_PIN_SIGFRAME,
				SIGFRAME_PC, ts[t].tid, other[k].sp, 0 });
			inject_defer_mark(d, other[k].pc);
			watch_stack(rq, ss, d, ts[t].tid, other[k].pc, other[k].sp, 0, NULL, NULL);
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

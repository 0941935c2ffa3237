/*
 * Writing a patch plan while the world is stopped.
 *
 * Who may execute the bytes: no one. Every other thread is parked in the
 * stop handler (proc/stop_self.c) or, for another process, stopped by
 * ptrace; a stopped thread's PC is at an instruction boundary, so it can
 * never resume in the middle of an instruction we change — it executes
 * either the old or the new instruction, whole. The writing thread does not
 * run C0 code that is patched here (it is in libocolos's round).
 *
 * How the bytes get there is the target's (proc_target_ops.poke: through
 * /proc/PID/mem, or in place by mprotect on AArch64 in-process, see
 * proc/target_self.c), and so is making code writes visible to instruction
 * fetch. After the writes, membarrier(SYNC_CORE) makes every core of this
 * process execute a core-serializing instruction before it runs user code
 * again (the x86 cross-modifying-code rule; arch_sync_core); parked
 * threads also return through rt_sigreturn, itself serializing.
 *
 * Each patch is checked against the bytes the plan expects there (C0 as on
 * disk going forward, the C1 redirection going back, for a revert):
 * if memory differs — another tool patched it, or the file is not what is
 * running — that patch is skipped and counted, never forced.
 *
 * Runs: one access through /proc/PID/mem costs microseconds (more for
 * another process), and a plan holds thousands of patches that sit close
 * together — the call sites of one function, the slots of one table —
 * so a switch reads and writes runs, not patches: 1,536 call sites of a
 * small program became 3,072 accesses inside the pause before. Code and
 * read-only data merge across gaps of up to RUN_GAP bytes (rewritten with
 * the bytes read in the same stop: nothing else writes them); writable
 * data only where patches touch, so no byte the program owns is written.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "arch/cpu.h"
#include "core/util.h"
#include "inject/inject.h"

/* Instructions (made visible to instruction fetch after the write), as
 * opposed to data: pointer slots, and an AArch64 stub's literal. */
static int patch_is_code(const struct inject_patch *p)
{
	return p->kind == INJECT_CALL_SITE || p->kind == INJECT_ENTRY ||
	       (p->kind == INJECT_STUB && p->len == 4);
}

static int poke(struct proc_target *t, const struct inject_patch *p, const uint8_t *bytes)
{
	return t->ops->poke(t, p->addr, bytes, p->len, patch_is_code(p));
}

enum { RUN_GAP = 64, RUN_MAX = 1 << 16 };

/* 0 code, 1 read-only data, 2 writable data: what may merge. */
static int patch_class(const struct inject_patch *p)
{
	return patch_is_code(p) ? 0 : p->kind == INJECT_DATA_SLOT ? 2 : 1;
}

struct by_addr {
	uint64_t addr;
	uint32_t i;
};

static int by_addr(const void *a, const void *b)
{
	uint64_t x = ((const struct by_addr *)a)->addr, y = ((const struct by_addr *)b)->addr;
	return x < y ? -1 : x > y;
}

int inject_runs_build(const struct inject_plan *plan, struct inject_runs *runs,
		      struct core_err *err)
{
	memset(runs, 0, sizeof(*runs));
	if (!plan->n)
		return 0;
	struct by_addr *order = malloc(plan->n * sizeof(*order));
	runs->run_of = malloc(plan->n * sizeof(*runs->run_of));
	runs->v = malloc(plan->n * sizeof(*runs->v));
	if (!order || !runs->run_of || !runs->v) {
		free(order);
		inject_runs_free(runs);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < plan->n; i++)
		order[i] = (struct by_addr){ plan->v[i].addr, (uint32_t)i };
	qsort(order, plan->n, sizeof(*order), by_addr);
	uint32_t bytes = 0;
	struct inject_run *r = NULL;
	int rclass = -1;
	for (size_t k = 0; k < plan->n; k++) {
		const struct inject_patch *p = &plan->v[order[k].i];
		int c = patch_class(p);
		uint64_t end = r ? r->addr + r->len : 0;
		if (r && p->addr < end) { /* overlapping patches: never planned, but one run */
			if (p->addr + p->len > end)
				r->len = (uint32_t)(p->addr + p->len - r->addr);
		} else if (r && c == rclass && p->addr - end <= (c == 2 ? 0u : (unsigned)RUN_GAP) &&
			   p->addr + p->len - r->addr <= RUN_MAX) {
			r->len = (uint32_t)(p->addr + p->len - r->addr);
		} else {
			if (r)
				bytes += r->len;
			r = &runs->v[runs->n++];
			*r = (struct inject_run){ .addr = p->addr, .len = p->len, .code = c == 0 };
			rclass = c;
		}
		runs->run_of[order[k].i] = (uint32_t)(r - runs->v);
	}
	bytes += r->len;
	free(order);
	uint32_t off = 0;
	for (size_t i = 0; i < runs->n; i++) {
		runs->v[i].off = off;
		off += runs->v[i].len;
	}
	runs->cur = malloc(bytes);
	runs->orig = malloc(bytes);
	runs->remote = malloc(runs->n * sizeof(*runs->remote));
	runs->local = malloc(runs->n * sizeof(*runs->local));
	runs->ok = malloc(runs->n);
	if (!runs->cur || !runs->orig || !runs->remote || !runs->local || !runs->ok) {
		inject_runs_free(runs);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	return 0;
}

void inject_runs_free(struct inject_runs *runs)
{
	free(runs->v);
	free(runs->run_of);
	free(runs->cur);
	free(runs->orig);
	free(runs->remote);
	free(runs->local);
	free(runs->ok);
	memset(runs, 0, sizeof(*runs));
}

/* The bytes of patch i in its run's buffer, or NULL if the run could not
 * be read. */
static uint8_t *run_bytes(const struct inject_plan *plan, size_t i)
{
	struct inject_runs *rs = plan->runs;
	struct inject_run *r = &rs->v[rs->run_of[i]];
	return r->readable ? rs->cur + r->off + (plan->v[i].addr - r->addr) : NULL;
}

/* Read every run, in the stop: in one batch where the target can. */
static void runs_read(struct proc_target *t, struct inject_runs *rs)
{
	if (t->ops->peek_many) {
		for (size_t i = 0; i < rs->n; i++) {
			rs->remote[i] = (struct iovec){ (void *)(uintptr_t)rs->v[i].addr, rs->v[i].len };
			rs->local[i] = (struct iovec){ rs->cur + rs->v[i].off, rs->v[i].len };
		}
		t->ops->peek_many(t, rs->remote, rs->local, rs->n, rs->ok);
	}
	for (size_t i = 0; i < rs->n; i++) {
		struct inject_run *r = &rs->v[i];
		r->dirty = r->written = 0;
		r->readable = t->ops->peek_many ? rs->ok[i]
						: !t->ops->peek(t, r->addr, rs->cur + r->off, r->len);
		if (r->readable)
			memcpy(rs->orig + r->off, rs->cur + r->off, r->len);
	}
}

/* Write every changed run; if one fails, put back the ones written. */
static int runs_write(struct proc_target *t, struct inject_runs *rs, uint64_t *failed_at)
{
	size_t dirty = 0, written = 0;
	for (size_t i = 0; i < rs->n; i++)
		dirty += rs->v[i].dirty;
	size_t half = dirty / 2 ? dirty / 2 : 1;
	for (size_t i = 0; i < rs->n; i++) {
		struct inject_run *r = &rs->v[i];
		if (!r->dirty)
			continue;
		if (t->ops->poke(t, r->addr, rs->cur + r->off, r->len, r->code)) {
			for (size_t k = 0; k < i; k++)
				if (rs->v[k].written)
					t->ops->poke(t, rs->v[k].addr, rs->orig + rs->v[k].off,
						     rs->v[k].len, rs->v[k].code);
			*failed_at = r->addr;
			return -1;
		}
		r->written = 1;
		if (++written == half)
			core_test_kill_at("switch-half"); /* the world stopped, half written */
	}
	return 0;
}

/* Patch i's current bytes: from its run when runs are in use. */
static int read_patch(struct proc_target *t, const struct inject_plan *plan, size_t i, uint8_t *cur)
{
	const struct inject_patch *p = &plan->v[i];
	if (!plan->runs)
		return t->ops->peek(t, p->addr, cur, p->len);
	const uint8_t *b = run_bytes(plan, i);
	if (!b)
		return -1;
	memcpy(cur, b, p->len);
	return 0;
}

/* Undo what this call wrote so far (patches [0, upto) it changed). */
static void roll_back(struct proc_target *t, struct inject_plan *plan, size_t upto, int forward,
		      const uint8_t *changed)
{
	for (size_t k = 0; k < upto; k++) {
		struct inject_patch *q = &plan->v[k];
		if (changed[k] && !poke(t, q, forward ? q->old : q->new_))
			q->applied = !forward;
	}
}

/* x86-64: the target of the jmp rel32 whose rel32 is `rel` at `at` (the
 * byte after the opcode). */
static uint64_t rel32_target(uint64_t at, const uint8_t *rel)
{
	int32_t d;
	memcpy(&d, rel, 4);
	return at + 4 + (uint64_t)(int64_t)d;
}

/* Patch index of the entry at `addr`, or plan->n. Entries are one run
 * sorted by address in the plans switches write (record.c); a plan put
 * together otherwise is searched in full. */
static size_t find_entry(const struct inject_plan *plan, size_t lo, size_t hi, int sorted,
			 uint64_t addr)
{
	if (!sorted) {
		for (size_t i = 0; i < plan->n; i++)
			if (plan->v[i].kind == INJECT_ENTRY && plan->v[i].addr == addr)
				return i;
		return plan->n;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (plan->v[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < plan->n && plan->v[lo].kind == INJECT_ENTRY && plan->v[lo].addr == addr
	       ? lo : plan->n;
}

/* Put patch i back to the bytes it held before this call. */
static void undo_patch(struct proc_target *t, struct inject_plan *plan, size_t i, int forward,
		       uint8_t *changed, struct inject_apply_result *res)
{
	struct inject_patch *p = &plan->v[i];
	const uint8_t *from = forward ? p->old : p->new_;
	if (plan->runs)
		memcpy(run_bytes(plan, i), from, p->len);
	else if (poke(t, p, from))
		return;
	changed[i] = 0;
	p->applied = (uint8_t)!forward;
	if (p->kind == INJECT_ENTRY)
		res->entries -= res->entries > 0;
	else if (p->kind == INJECT_STUB)
		res->stubs -= res->stubs > 0;
}

/*
 * No jump loops between a C0 entry and its stub. An x86-64 entry jumps to
 * its function's stub (plan.c), and a stub not in use jumps to the C0
 * entry. Both change in the same stop — but an entry can be left as it is
 * (a thread inside, entry.c; bytes not as expected) while its stub goes
 * back to C0: the function would then jump between the two for ever. So
 * after the patches are decided and before anything is written, every stub
 * that would lead to an entry that would lead back to it keeps (or gets
 * back) the bytes it had, or else the entry does: the function stays on
 * the version it ran, and a later stop finishes the change.
 */
static void break_stub_loops(struct proc_target *t, struct inject_plan *plan, int forward,
			     uint8_t *changed, struct inject_apply_result *res)
{
	size_t lo = plan->n, hi = 0;
	int sorted = 1;
	for (size_t i = 0; i < plan->n; i++) {
		if (plan->v[i].kind != INJECT_ENTRY)
			continue;
		if (lo == plan->n)
			lo = i;
		else if (i != hi || plan->v[i].addr < plan->v[i - 1].addr)
			sorted = 0;
		hi = i + 1;
	}
	if (lo == plan->n)
		return;
	for (size_t i = 0; i < plan->n; i++) {
		const struct inject_patch *s = &plan->v[i];
		uint8_t sb[8], eb[8];
		if (s->kind != INJECT_STUB || s->len != 4 || read_patch(t, plan, i, sb))
			continue;
		size_t e = find_entry(plan, lo, hi, sorted, rel32_target(s->addr, sb));
		if (e == plan->n || read_patch(t, plan, e, eb) || eb[0] != 0xe9 ||
		    rel32_target(plan->v[e].addr + 1, eb + 1) != s->addr - 1)
			continue;
		if (changed[i])
			undo_patch(t, plan, i, forward, changed, res);
		else if (changed[e])
			undo_patch(t, plan, e, forward, changed, res);
	}
}

int inject_apply(struct proc_target *t, struct inject_plan *plan, int forward,
		 struct inject_apply_result *res, struct core_err *err)
{
	memset(res, 0, sizeof(*res));
	/* Which patches this call changed, for an all-or-nothing roll back;
	 * allocated with the plan: nothing may allocate while the world is
	 * stopped (a parked thread may hold the allocator's lock). */
	uint8_t small[64], *changed = plan->changed;
	if (!changed && plan->n <= sizeof(small))
		changed = small; /* a plan assembled by hand (tests) */
	if (!changed)
		return core_errf(err, OCOLOS_EINVAL, "patch plan without scratch (build it with "
				 "inject_plan_build)");
	memset(changed, 0, plan->n);
	if (plan->runs)
		runs_read(t, plan->runs);
	int rc = 0;
	size_t checked_to = 0; /* forward: patches [.., checked_to) of a group were compared */
	for (size_t i = 0; i < plan->n; i++) {
		struct inject_patch *p = &plan->v[i];
		/* Back: only what a forward switch wrote. Forward: not what a
		 * thread could be inside of (entries, see entry.c). */
		if (!forward && !p->applied)
			continue;
		if (forward && p->blocked) {
			if (p->blocked == 2)
				res->deferred++;
			else
				res->blocked++;
			continue;
		}
		const uint8_t *from = forward ? p->old : p->new_, *to = forward ? p->new_ : p->old;
		uint8_t cur[8];
		if (forward && p->group && i >= checked_to) {
			/* The slots of one function go all or none (plan.c): if the
			 * program changed one, the others keep C0 too. */
			size_t end = i, bad = 0;
			for (; end < plan->n && plan->v[end].group == p->group; end++)
				if (read_patch(t, plan, end, cur) ||
				    memcmp(cur, plan->v[end].old, plan->v[end].len))
					bad++;
			if (bad) {
				res->mismatched += (uint32_t)bad;
				res->slots_held += (uint32_t)(end - i - bad);
				i = end - 1;
				continue;
			}
			checked_to = end;
		} else if (!(forward && p->group) &&
			   (read_patch(t, plan, i, cur) || memcmp(cur, from, p->len))) {
			res->mismatched++;
			continue;
		}
		if (plan->runs) { /* written with its run, below */
			memcpy(run_bytes(plan, i), to, p->len);
			plan->runs->v[plan->runs->run_of[i]].dirty = 1;
		} else if (poke(t, p, to)) {
			roll_back(t, plan, i, forward, changed);
			rc = core_errf(err, OCOLOS_EPATCH, "writing %u bytes at 0x%llx failed; "
				       "earlier patches were undone, the program runs the code it ran before",
				       p->len, (unsigned long long)p->addr);
			break;
		}
		changed[i] = 1;
		p->applied = (uint8_t)forward;
		if (p->kind == INJECT_CALL_SITE)
			res->call_sites++;
		else if (p->kind == INJECT_ENTRY)
			res->entries++;
		else if (p->kind == INJECT_STUB)
			res->stubs++;
		else
			res->ptr_slots++;
	}
	if (!rc)
		break_stub_loops(t, plan, forward, changed, res);
	uint64_t failed_at = 0;
	if (!rc && plan->runs && runs_write(t, plan->runs, &failed_at)) {
		for (size_t i = 0; i < plan->n; i++)
			if (changed[i])
				plan->v[i].applied = (uint8_t)!forward;
		memset(res, 0, sizeof(*res));
		rc = core_errf(err, OCOLOS_EPATCH, "writing at 0x%llx failed; earlier writes were "
			       "undone, the program runs the code it ran before",
			       (unsigned long long)failed_at);
	}
	arch_sync_core();
	return rc;
}

int inject_plan_spans(const struct inject_plan *plan, struct proc_span **spans, size_t *n,
		      struct core_err *err)
{
	*n = 0;
	*spans = malloc((plan->n + 1) * sizeof(**spans));
	if (!*spans)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	for (size_t i = 0; i < plan->n; i++) {
		const struct inject_patch *p = &plan->v[i];
		(*spans)[(*n)++] = (struct proc_span){ p->addr, p->len, patch_is_code(p) ? PROC_SPAN_CODE
			: p->kind == INJECT_DATA_SLOT ? PROC_SPAN_DATA : PROC_SPAN_RODATA };
	}
	return 0;
}

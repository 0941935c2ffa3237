/*
 * The stop-time half of entry patching (the static half is elf_func.entry_ok):
 * an entry patch overwrites a moved function's first 5 bytes with a jmp to
 * its C1 copy. Safe only if no thread can ever resume at an address inside
 * those bytes (past the first) — it would execute half an instruction.
 *
 * A stopped thread resumes at its PC, and later at PCs saved on its stack:
 * return addresses (impossible inside an entry: entry_ok excludes calls
 * there) and the interrupted PC of each signal frame (a thread that was
 * inside a signal handler when stopped returns to it via sigreturn). So a
 * patch is blocked for this switch when a thread's PC lies in its span past
 * the first byte, or when any 8-byte word of a thread's stack, from its SP to
 * the end of the stack's mapping, does — conservatively: a word that merely
 * looks like such an address costs one entry, never correctness. An entry
 * whose span holds a thread's PC at its first byte is fine: the thread then
 * executes the whole jmp.
 *
 * Runs while the world is stopped: no allocation, the caller passes scratch.
 *
 * AArch64 entry patches replace one aligned instruction word (plan.c says
 * why that is safe). Nothing can be inside a word: PCs, return addresses
 * and saved PCs are word-aligned, and one that equals the word's address
 * is the first-byte case above. So such patches have nothing to check, and
 * the stop does not read any stack for them (inject_entries_need_check):
 * a pause spent reading 512 KiB per thread to prove nothing is avoided.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"
#include "core/util.h"
#include "inject/inject.h"

/* Blocks the entry patch containing `a` past its first byte, if any.
 * Entries are few compared with stack words; they sit in address order in
 * the plan (functions are planned in address order), so a binary search
 * over the plan's entry run finds it. */
static void block_containing(struct inject_patch *e, size_t n, uint64_t a)
{
	size_t lo = 0, hi = n;
	while (lo < hi) { /* first entry with addr >= a */
		size_t mid = lo + (hi - lo) / 2;
		if (e[mid].addr < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0 && a > e[lo - 1].addr && a < e[lo - 1].addr + e[lo - 1].len)
		e[lo - 1].blocked = 1;
}

int inject_entries_need_check(const struct inject_plan *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		const struct inject_patch *p = &plan->v[i];
		if (p->kind == INJECT_ENTRY && !(p->len == 4 && (p->addr & 3) == 0))
			return 1;
	}
	return 0;
}

void inject_entries_check(struct inject_plan *plan, const struct proc_thread_state *ts,
			  size_t nts, inject_stack_reader read, void *ctx, uint64_t *scratch)
{
	/* The entries are one contiguous run of the plan (plan.c adds them
	 * together, in function order). */
	size_t first = plan->n, n = 0;
	for (size_t i = 0; i < plan->n; i++)
		if (plan->v[i].kind == INJECT_ENTRY) {
			if (first == plan->n)
				first = i;
			n++;
		}
	if (!n)
		return;
	struct inject_patch *e = plan->v + first;
	for (size_t i = 0; i < n; i++)
		e[i].blocked = 0;
	for (size_t t = 0; t < nts; t++) {
		block_containing(e, n, ts[t].pc);
		size_t words = read(ctx, ts[t].sp, scratch, INJECT_STACK_WORDS);
		if (!words && ts[t].sp) {
			for (size_t i = 0; i < n; i++) /* an unreadable stack: patch nothing */
				e[i].blocked = 1;
			return;
		}
		for (size_t w = 0; w < words; w++)
			block_containing(e, n, scratch[w]);
	}
}

int inject_stack_snapshot_take(struct proc_target *t, struct inject_stack_snapshot *ss,
			       struct core_err *err)
{
	memset(ss, 0, sizeof(*ss));
	ss->t = t;
	ss->scratch = malloc(INJECT_STACK_WORDS * sizeof(*ss->scratch));
	if (!ss->scratch)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	struct core_err why = { 0 };
	int rc = core_procmaps_read(t->pid, &ss->maps, &why);
	if (rc) {
		inject_stack_snapshot_free(ss);
		if (kill(t->pid, 0) != 0 && errno == ESRCH)
			return core_errf(err, OCOLOS_ENOPROC, "process %d exited during the round", (int)t->pid);
		return core_errf(err, rc, "%s", why.msg);
	}
	return 0;
}

void inject_stack_snapshot_free(struct inject_stack_snapshot *ss)
{
	core_procmaps_free(&ss->maps);
	core_free_clear(ss->scratch, ss->scratch ? INJECT_STACK_WORDS * sizeof(*ss->scratch) : 0);
	ss->scratch = NULL;
}

size_t inject_stack_words(void *ctx, uint64_t sp, uint64_t *words, size_t max)
{
	const struct inject_stack_snapshot *ss = ctx;
	sp &= ~7ull;
	for (size_t i = 0; i < ss->maps.n; i++) {
		const struct procmaps_entry *e = &ss->maps.v[i];
		if (sp < e->start || sp >= e->end)
			continue;
		if (e->perms[0] != 'r')
			return 0;
		size_t n = (size_t)((e->end - sp) / 8);
		if (n > max)
			n = max;
		return ss->t->ops->peek(ss->t, sp, words, n * 8) ? 0 : n;
	}
	return 0; /* a stack we do not know (a mapping made after the snapshot) */
}

/* ---- entries of older versions no thread needs now (inject.h) ---- */

int inject_defer_init(struct inject_defer *d, const struct inject_version_entries *const *v,
		      size_t n, struct core_err *err)
{
	memset(d, 0, sizeof(*d));
	for (size_t i = 0; i < n; i++)
		if (v[i]->nfuncs > d->stride)
			d->stride = v[i]->nfuncs;
	if (!n || !d->stride)
		return 0;
	d->live = calloc(n, d->stride);
	d->need = calloc(n, d->stride);
	if (!d->live || !d->need) {
		inject_defer_free(d);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	d->v = v;
	d->n = n;
	return 0;
}

void inject_defer_free(struct inject_defer *d)
{
	free(d->live);
	free(d->need);
	memset(d, 0, sizeof(*d));
}

/* The function whose fragment of version `ve` holds `a`, or -1. */
static long frag_func(const struct inject_version_entries *ve, uint64_t a)
{
	if (!ve->nfrags || a < ve->frags[0].lo || a >= ve->frags[ve->nfrags - 1].hi)
		return -1;
	size_t lo = 0, hi = ve->nfrags; /* first fragment starting after a */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ve->frags[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && a < ve->frags[lo - 1].hi ? (long)ve->frags[lo - 1].func : -1;
}

void inject_defer_mark(struct inject_defer *d, uint64_t w)
{
	for (size_t i = 0; i < d->n; i++) {
		long f = d->v[i]->callee_off ? frag_func(d->v[i], w) : -1;
		if (f >= 0)
			d->live[i * d->stride + (size_t)f] = 1;
	}
}

void inject_defer_apply(struct inject_defer *d, struct inject_plan *plan)
{
	if (!d->n || d->all)
		return;
	for (size_t i = 0; i < d->n; i++) {
		const struct inject_version_entries *ve = d->v[i];
		uint8_t *live = d->live + i * d->stride, *need = d->need + i * d->stride;
		if (!ve->callee_off)
			continue;
		memset(need, 0, ve->nfuncs);
		for (size_t f = 0; f < ve->nfuncs; f++) {
			if (!live[f])
				continue;
			need[f] = 1;
			for (uint32_t k = ve->callee_off[f]; k < ve->callee_off[f + 1]; k++)
				need[ve->callees[k]] = 1;
		}
	}
	for (size_t k = 0; k < plan->n; k++) {
		struct inject_patch *p = &plan->v[k];
		if (p->kind != INJECT_ENTRY || !p->owner_gen || p->blocked)
			continue;
		for (size_t i = 0; i < d->n; i++) {
			const struct inject_version_entries *ve = d->v[i];
			if (ve->gen != p->owner_gen || !ve->callee_off)
				continue;
			long f = frag_func(ve, p->addr);
			/* Only an entry still as the version was made: one that
			 * jumps to a newer version already would keep that one
			 * mapped (a thread stuck in this version would then pin
			 * two). */
			if (f >= 0 && !d->need[i * d->stride + (size_t)f] && p->len <= sizeof(ve->orig[f]) &&
			    !memcmp(p->old, ve->orig[f], p->len))
				p->blocked = 2;
			break;
		}
	}
}

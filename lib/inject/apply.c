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
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "arch/cpu.h"
#include "inject/inject.h"

static int patch_is_code(const struct inject_patch *p)
{
	return p->kind == INJECT_CALL_SITE || p->kind == INJECT_ENTRY;
}

static int poke(struct proc_target *t, const struct inject_patch *p, const uint8_t *bytes)
{
	return t->ops->poke(t, p->addr, bytes, p->len, patch_is_code(p));
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
	int rc = 0;
	size_t checked_to = 0; /* forward: patches [.., checked_to) of a group were compared */
	for (size_t i = 0; i < plan->n; i++) {
		struct inject_patch *p = &plan->v[i];
		/* Back: only what a forward switch wrote. Forward: not what a
		 * thread could be inside of (entries, see entry.c). */
		if (!forward && !p->applied)
			continue;
		if (forward && p->blocked) {
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
				if (t->ops->peek(t, plan->v[end].addr, cur, plan->v[end].len) ||
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
			   (t->ops->peek(t, p->addr, cur, p->len) || memcmp(cur, from, p->len))) {
			res->mismatched++;
			continue;
		}
		if (poke(t, p, to)) {
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
		else
			res->ptr_slots++;
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

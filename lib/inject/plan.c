/*
 * Patch plan: which bytes of C0 change, from what to what. Built before
 * the stop from the binary model and BOLT's output alone.
 *
 * Redirected:  direct call/jmp rel32 sites whose target moved (in all of C0,
 *              including inside moved functions' C0 copies, which threads
 *              already in them keep running);
 *              pointer slots in read-only-after-startup data (v-tables,
 *              const tables: .data.rel.ro, .rodata).
 * Left alone:  slots in writable data: the program may have stored its own
 *              value there or compare it with `&func` (which still yields
 *              C0), so they keep pointing at C0, which stays valid;
 *              address-taking instructions (lea/mov of &func) for the same
 *              reason — BOLT rewrites those in its output, we do not.
 */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "inject/inject.h"
#include "reloc/reloc.h"

static int push(struct inject_plan *p, const struct inject_patch *x)
{
	if (core_grow((void **)&p->v, &p->cap, p->n, sizeof(*p->v)))
		return OCOLOS_ENOMEM;
	p->v[p->n++] = *x;
	return 0;
}

int inject_plan_build(const struct elf_binary *b, const struct bolt_output *o,
		      uint64_t bias, struct inject_plan *plan, struct core_err *err)
{
	memset(plan, 0, sizeof(*plan));
	for (size_t i = 0; i < b->nsites; i++) {
		const struct elf_branch_site *s = &b->sites[i];
		uint64_t c1 = o->c1_addr[s->func];
		if (!c1)
			continue;
		struct inject_patch p = { .addr = bias + s->site + 1, .len = 4, .kind = INJECT_CALL_SITE };
		if (reloc_x86_encode_rel32(bias + s->site, bias + b->funcs[s->func].addr, p.old) ||
		    reloc_x86_encode_rel32(bias + s->site, bias + c1, p.new_))
			return core_errf(err, OCOLOS_ERESERVE,
					 "call site 0x%llx cannot reach C1 at 0x%llx with a rel32",
					 (unsigned long long)s->site, (unsigned long long)c1);
		if (push(plan, &p))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->call_sites++;
	}
	for (size_t i = 0; i < b->nslots; i++) {
		const struct elf_ptr_slot *s = &b->slots[i];
		uint64_t c1 = o->c1_addr[s->func];
		if (!c1)
			continue;
		if (s->writable) {
			plan->skipped_writable++;
			continue;
		}
		struct inject_patch p = { .addr = bias + s->addr, .len = 8, .kind = INJECT_PTR_SLOT };
		uint64_t oldv = bias + b->funcs[s->func].addr, newv = bias + c1;
		memcpy(p.old, &oldv, 8);
		memcpy(p.new_, &newv, 8);
		if (push(plan, &p))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->ptr_slots++;
	}
	return 0;
}

void inject_plan_free(struct inject_plan *plan)
{
	free(plan->v);
	memset(plan, 0, sizeof(*plan));
}

/*
 * Patch plan: which bytes of C0 change, from what to what. Built before
 * the stop from the binary model and BOLT's output alone.
 *
 * Redirected:  direct call/jump sites whose target moved (in all of C0,
 *              including inside moved functions' C0 copies, which threads
 *              already in them keep running): x86-64 the rel32 of
 *              call/jmp, AArch64 the whole BL/B word;
 *              function entries (x86-64): the first 5 bytes of a moved
 *              function become `jmp <its C1 copy>`, so whatever still
 *              enters C0 — calls through function pointers held anywhere,
 *              slots left alone, sites we could not patch — runs C1. Only
 *              where that is provably safe (elf_func.entry_ok, and checked
 *              against every thread at the stop, see entry.c), and only
 *              for functions whose first bytes hold no call site we patch;
 *              pointer slots (v-tables, tables of handlers, in read-only or
 *              writable data) of functions whose address the program has
 *              no other way to obtain — the pointer rule below.
 * Left alone:  address-taking instructions (lea/mov of &func, adrp/add):
 *              BOLT rewrites those in its output, we do not, so `&func`
 *              keeps yielding C0, which stays valid.
 *
 * The pointer rule. A slot's value is a value the program can compare:
 * `table[i] == &func`, a handler looked up by address. Redirecting the slot
 * changes that value, so it is done only when no other value the program
 * can hold for that function is a C0 address: its address is never
 * materialized by code (no relocation against it but the target of a
 * direct call or jump, no RIP-relative or ADR reference the assembler
 * resolved), no other data refers to it, it is not exported in .dynsym
 * (dlsym), and the program does not import dladdr (elf/binary.c,
 * elf_func.addr_taken). Then every slot holding it is redirected together
 * (one group, all or none at the stop, apply.c), so all the values the
 * program can obtain for it agree. Any other slot keeps C0, whose entry
 * jump still carries the call to C1, at the cost of that jump and its
 * cache line — unless the caller asks for every slot
 * (INJECT_PLAN_UNSAFE_SLOTS, opts.redirect_writable_slots: measured on fe,
 * docs/benchmarks.md). A writable slot the program changed is seen at the
 * stop and its whole group is left on C0.
 *
 * AArch64 veneers: a BL reaches +-128 MiB. A call site that cannot reach
 * its function's C1 copy branches instead to a veneer (ADRP/ADD/BR x16,
 * reloc/aarch64.c) in an island the caller reserved within reach of all of
 * C0's code; one veneer per moved function, shared by all its far sites.
 * The island is written before the stop (nothing branches there yet).
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "inject/inject.h"
#include "arch/arch.h"

static int push(struct inject_plan *p, const struct inject_patch *x)
{
	if (core_grow((void **)&p->v, &p->cap, p->n, sizeof(*p->v)))
		return OCOLOS_ENOMEM;
	p->v[p->n++] = *x;
	return 0;
}

static void put32(uint8_t *p, uint32_t w)
{
	memcpy(p, &w, 4); /* both supported machines are little-endian */
}


int inject_plan_needs_island(const struct elf_binary *b, const struct bolt_output *o)
{
	if (b->machine != EM_AARCH64)
		return 0;
	for (size_t i = 0; i < b->nsites; i++) {
		uint64_t c1 = o->c1_addr[b->sites[i].func];
		if (c1 && !arch_a64_in_reach(b->sites[i].site, b->sites[i].site + 4, c1, c1 + 4))
			return 1;
	}
	return 0;
}

uint64_t inject_plan_island_size(const struct elf_binary *b, const struct bolt_output *o)
{
	(void)b;
	return (uint64_t)o->moved * ARCH_A64_VENEER_LEN;
}

/* AArch64: the veneer for function `f` in the island, created on first
 * use. *addr gets its run-time address. */
static int veneer_for(struct inject_plan *plan, uint64_t *slots, uint32_t f, uint64_t c1_rt,
		      uint64_t *addr)
{
	if (slots[f]) {
		*addr = slots[f];
		return 0;
	}
	size_t off = plan->island_len;
	uint8_t *code = realloc(plan->island_code, off + ARCH_A64_VENEER_LEN);
	if (!code)
		return OCOLOS_ENOMEM;
	plan->island_code = code;
	if (arch_a64_encode_veneer(plan->island + off, c1_rt, code + off))
		return OCOLOS_ERESERVE;
	plan->island_len = off + ARCH_A64_VENEER_LEN;
	plan->veneers++;
	*addr = slots[f] = plan->island + off;
	return 0;
}

/* AArch64 call sites: the whole BL/B word changes. */
static int plan_sites_a64(const struct elf_binary *b, const struct bolt_output *o, uint64_t bias,
			  struct inject_plan *plan, struct core_err *err)
{
	uint64_t *veneers = calloc(b->nfuncs ? b->nfuncs : 1, sizeof(*veneers));
	if (!veneers)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < b->nsites && !rc; i++) {
		const struct elf_branch_site *s = &b->sites[i];
		uint64_t c1 = o->c1_addr[s->func];
		if (!c1)
			continue;
		uint64_t at = bias + s->site, to = bias + c1;
		uint32_t insn = (uint32_t)s->opcode << 24, oldw, neww;
		struct inject_patch p = { .addr = at, .len = 4, .kind = INJECT_CALL_SITE };
		if (arch_a64_encode_branch(at, insn, bias + b->funcs[s->func].addr, &oldw)) {
			rc = core_errf(err, OCOLOS_EELF, "call site 0x%llx does not reach its own target",
				       (unsigned long long)s->site);
			break;
		}
		if (arch_a64_encode_branch(at, insn, to, &neww)) {
			uint64_t v = 0;
			if (!plan->island)
				rc = OCOLOS_ERESERVE;
			else
				rc = veneer_for(plan, veneers, s->func, to, &v);
			if (!rc && arch_a64_encode_branch(at, insn, v, &neww))
				rc = OCOLOS_ERESERVE;
			if (rc == OCOLOS_ERESERVE)
				rc = core_errf(err, OCOLOS_ERESERVE,
					       "call site 0x%llx cannot reach C1 at 0x%llx with a BL, and no "
					       "veneer island within 128 MiB of the code could be used; the "
					       "address space near the program is full",
					       (unsigned long long)s->site, (unsigned long long)c1);
			else if (rc)
				rc = core_errf(err, rc, "out of memory");
			if (rc)
				break;
		}
		put32(p.old, oldw);
		put32(p.new_, neww);
		if (push(plan, &p))
			rc = core_errf(err, OCOLOS_ENOMEM, "out of memory");
		else
			plan->call_sites++;
	}
	free(veneers);
	return rc;
}

/* x86-64 call sites: the rel32 after the e8/e9 changes. */
static int plan_sites_x86(const struct elf_binary *b, const struct bolt_output *o, uint64_t bias,
			  struct inject_plan *plan, struct core_err *err)
{
	for (size_t i = 0; i < b->nsites; i++) {
		const struct elf_branch_site *s = &b->sites[i];
		uint64_t c1 = o->c1_addr[s->func];
		if (!c1)
			continue;
		struct inject_patch p = { .addr = bias + s->site + 1, .len = 4, .kind = INJECT_CALL_SITE };
		if (arch_x86_encode_rel32(bias + s->site, bias + b->funcs[s->func].addr, p.old) ||
		    arch_x86_encode_rel32(bias + s->site, bias + c1, p.new_))
			return core_errf(err, OCOLOS_ERESERVE,
					 "call site 0x%llx cannot reach C1 at 0x%llx with a rel32",
					 (unsigned long long)s->site, (unsigned long long)c1);
		if (push(plan, &p))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->call_sites++;
	}
	return 0;
}

/* Does a call site patch touch [addr, addr + 5)? (sites are sorted) */
static int site_in_entry(const struct elf_binary *b, uint64_t addr)
{
	size_t lo = 0, hi = b->nsites;
	while (lo < hi) { /* first site > addr - 5 */
		size_t mid = lo + (hi - lo) / 2;
		if (b->sites[mid].site + ARCH_X86_BRANCH_LEN <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->nsites && b->sites[lo].site < addr + ARCH_X86_BRANCH_LEN;
}

/* x86-64 entries: `jmp rel32` to C1 over the first 5 bytes. */
static int plan_entries_x86(const struct elf_binary *b, const struct bolt_output *o, uint64_t bias,
			    struct inject_plan *plan, struct core_err *err)
{
	for (size_t i = 0; i < b->nfuncs; i++) {
		const struct elf_func *f = &b->funcs[i];
		uint64_t c1 = o->c1_addr[i];
		if (!c1 || !f->entry_ok || f->size < ARCH_X86_BRANCH_LEN || site_in_entry(b, f->addr))
			continue;
		struct inject_patch p = { .addr = bias + f->addr, .len = ARCH_X86_BRANCH_LEN,
			.kind = INJECT_ENTRY, .new_ = { 0xe9 } };
		struct core_err ignore = { 0 };
		if (elf_read_vaddr(b, f->addr, p.old, ARCH_X86_BRANCH_LEN, &ignore) ||
		    arch_x86_encode_rel32(bias + f->addr, bias + c1, p.new_ + 1))
			continue;
		if (push(plan, &p))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->entries++;
	}
	return 0;
}

static int cmp_slot_by_func(const void *a, const void *b)
{
	const struct elf_ptr_slot *x = a, *y = b;
	if (x->func != y->func)
		return x->func < y->func ? -1 : 1;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Pointer slots, grouped by function (the pointer rule above); with
 * stubs (continuous rounds), each slot takes its function's stub, and the
 * stub the function's copy in this version. */
static int plan_slots(const struct elf_binary *b, const struct bolt_output *o,
		      const struct inject_plan_opts *po, struct inject_plan *plan,
		      struct core_err *err)
{
	uint64_t bias = po->bias;
	struct elf_ptr_slot *take = malloc((b->nslots + 1) * sizeof(*take));
	size_t n = 0;
	if (!take)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	int unsafe_ok = (po->flags & INJECT_PLAN_UNSAFE_SLOTS) != 0;
	for (size_t i = 0; i < b->nslots; i++) {
		const struct elf_ptr_slot *s = &b->slots[i];
		if (!o->c1_addr[s->func])
			continue;
		if (((b->funcs[s->func].addr_taken || b->imports_dladdr) && !unsafe_ok) ||
		    (po->flags & INJECT_PLAN_NO_SLOTS)) {
			plan->slots_kept++;
			continue;
		}
		take[n++] = *s;
	}
	if (n)
		qsort(take, n, sizeof(*take), cmp_slot_by_func);
	int rc = 0;
	for (size_t k = 0; k < n && !rc; k++) {
		const struct elf_ptr_slot *s = &take[k];
		uint64_t c0 = bias + b->funcs[s->func].addr, to = bias + o->c1_addr[s->func];
		if (po->stubs && (rc = inject_stubs_alloc(b, po->stubs, s->func, c0, &to, err)))
			break;
		struct inject_patch p = { .addr = bias + s->addr, .len = 8,
			.kind = s->writable ? INJECT_DATA_SLOT : INJECT_PTR_SLOT, .group = s->func + 1,
			.target_gen = po->stubs ? 0 : po->gen };
		memcpy(p.old, &c0, 8);
		memcpy(p.new_, &to, 8);
		if (push(plan, &p))
			rc = core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->ptr_slots++;
		plan->writable_slots += s->writable;
	}
	free(take);
	/* Every stub (this round's and earlier ones') jumps to its function's
	 * copy in this version; a function not moved this time is left to the
	 * transition, which puts its stub back on C0. */
	for (size_t f = 0; po->stubs && !rc && f < po->stubs->nfuncs; f++) {
		if (!po->stubs->at[f] || !o->c1_addr[f])
			continue;
		struct inject_patch p;
		if (inject_stub_patch(b, po->stubs->at[f], bias + b->funcs[f].addr,
				      bias + o->c1_addr[f], &p)) {
			rc = core_errf(err, OCOLOS_ERESERVE, "the stub of %s cannot reach its copy",
				       b->funcs[f].name);
			break;
		}
		p.target_gen = po->gen;
		if (push(plan, &p))
			rc = core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	return rc;
}

int inject_plan_build(const struct elf_binary *b, const struct bolt_output *o,
		      uint64_t bias, struct inject_plan *plan, struct core_err *err)
{
	return inject_plan_build_island(b, o, bias, 0, 0, plan, err);
}

int inject_plan_build_island(const struct elf_binary *b, const struct bolt_output *o,
			     uint64_t bias, uint64_t island, unsigned flags,
			     struct inject_plan *plan, struct core_err *err)
{
	struct inject_plan_opts po = { .bias = bias, .island = island, .flags = flags, .gen = 1 };
	return inject_plan_build_for(b, o, &po, plan, err);
}

int inject_plan_build_for(const struct elf_binary *b, const struct bolt_output *o,
			  const struct inject_plan_opts *po, struct inject_plan *plan,
			  struct core_err *err)
{
	memset(plan, 0, sizeof(*plan));
	uint64_t bias = po->bias;
	int rc;
	if (b->machine == EM_AARCH64) {
		plan->island = po->island;
		rc = plan_sites_a64(b, o, bias, plan, err);
	} else {
		rc = plan_sites_x86(b, o, bias, plan, err);
		if (!rc)
			rc = plan_entries_x86(b, o, bias, plan, err);
	}
	for (size_t i = 0; !rc && i < plan->n; i++)
		plan->v[i].target_gen = po->gen;
	if (!rc)
		rc = plan_slots(b, o, po, plan, err);
	for (size_t i = 0; !rc && i < po->nolder; i++)
		rc = inject_plan_version_entries(o, po->bias, po->gen, &po->older[i], plan, err);
	if (rc)
		return rc;
	if (!(plan->changed = calloc(plan->n + 1, 1)))
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	return 0;
}

void inject_plan_free(struct inject_plan *plan)
{
	core_free_clear(plan->v, plan->cap * sizeof(*plan->v));
	free(plan->changed);
	core_free_clear(plan->island_code, plan->island_len);
	memset(plan, 0, sizeof(*plan));
}

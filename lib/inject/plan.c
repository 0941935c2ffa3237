/*
 * Patch plan: which bytes of C0 change, from what to what. Built before
 * the stop from the binary model and BOLT's output alone.
 *
 * Redirected:  direct call/jump sites whose target moved, in C0 code that
 *              keeps running C0 (functions not moved): x86-64 the rel32 of
 *              call/jmp, AArch64 the whole BL/B word. A site inside a
 *              moved function's C0 body is left alone when its target's
 *              entry is redirected: after the switch only threads already
 *              in that body run it, and their calls reach C1 through the
 *              entry jump all the same. On fe that is 2,968 of 3,005 sites,
 *              all written in the stop for a jump saved on stale frames
 *              (the pause, docs/benchmarks.md). A site whose target keeps
 *              its C0 entry (not entry_ok, or no room) is redirected
 *              wherever it is: a thread that never leaves a C0 loop would
 *              otherwise call C0 for good. On x86-64 with stubs, a site
 *              aims at its callee's stub, like the entries (below);
 *              function entries: x86-64, the first 5 bytes of a moved
 *              function become `jmp <its stub>` (the stub jumps to its
 *              copy in the newest version, stubs.c), or `jmp <its C1
 *              copy>` when there is no stub area; AArch64, its first
 *              instruction word becomes `B <its C1 copy>` (or a B to a
 *              veneer) — so whatever still enters C0 — calls through
 *              function pointers held anywhere, slots left alone, sites we
 *              could not patch — runs C1. Only where that is provably safe
 *              (elf_func.entry_ok; on x86-64 also checked against every
 *              thread at the stop, see entry.c), and only for functions
 *              whose patched bytes hold no call site we patch;
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
 * Entries and call sites through stubs (x86-64). A continuous round
 * retargets everything that leads into the version it replaces. An entry
 * that jumped straight to C_k would be written again every round — on fe by
 * pid, 1,480 writes of ~5 us each inside the pause; on Redis, ~1,400 C0
 * call sites of hot functions. Going to the function's stub, each is
 * written once, the first time the function moves, and a round rewrites
 * the stubs instead: a few pages, each one write. The price is one more
 * direct jump for what still enters C0 (cold callers, function pointers
 * the program made itself); the hot calls go copy to copy. An entry that
 * goes back to its own bytes and its stub, which then jumps to C0, change
 * in the same stop, or neither does (apply.c: no jump loop).
 *
 * AArch64 veneers: a BL reaches +-128 MiB. A call site that cannot reach
 * its function's C1 copy branches instead to a veneer (ADRP/ADD/BR x16,
 * reloc/aarch64.c) in an island the caller reserved within reach of all of
 * C0's code; one veneer per moved function, shared by all its far sites.
 * The island is written before the stop (nothing branches there yet).
 *
 * AArch64 entries: the rules, adapted from x86-64. Overwriting 5 bytes of
 * variable-length code on x86-64 has one hazard: a thread resuming *inside*
 * them (past the first byte) would run half an instruction. Hence its rules:
 * no call within the bytes (a return address would point inside), no branch
 * to bytes 1-4, no indirect jump in the function (a jump table could target
 * them), and at the stop no PC or stack word inside them. On AArch64 one
 * aligned 4-byte word — one whole instruction — is replaced, while every
 * thread is stopped, so no thread can ever be inside it: a PC, return
 * address, signal frame's PC or jump-table target is either that word or
 * not. So every x86-64 rule about the inside falls away; what remains is
 * what it means to arrive at the word:
 *  - arriving at the entry itself (a call, a tail call, an indirect call, a
 *    branch back to the first instruction from inside the function, a
 *    thread stopped there, a system call restarted there) now executes
 *    `B <copy>`: the copy, from its entry, is the same code as C0's from its
 *    entry (BOLT moves blocks, it does not change what they compute, nor the
 *    stack frame), so with the same registers and stack it does the same;
 *  - a call as the first instruction returns to entry + 4, which is not
 *    rewritten: the thread goes on in C0, which stays intact;
 *  - the word must be code: not a literal pool (`$d` at the entry);
 *  - it must not also be a call site we patch (one owner per word);
 *  - landing pads. In a BTI-guarded page an indirect call or jump must land
 *    on BTI c/j/jc or PACIASP/PACIBSP (an implicit one), else the CPU
 *    faults; replacing it with a B would make every call through a pointer
 *    fault. So when the first word is a landing pad, it stays, and the word
 *    after it becomes `B <copy + 4>`, when the copy starts with the same
 *    landing pad: the program point after it is the same in both (BTI is a
 *    no-op there; PACIASP signed x30 once, in C0, and the copy's epilogue
 *    authenticates it once). A thread at entry + 4 takes the B, one at the
 *    entry runs the landing pad, then the B. Done whatever the binary's
 *    BTI marking: it is right either way.
 * No stop-time check is needed (entry.c skips these patches). The write is
 * one aligned word, made visible to instruction fetch by the target's
 * maintenance before any thread runs (proc/); the stopped threads resume
 * through an exception return, a context synchronization event.
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
	for (size_t f = 0; f < b->nfuncs; f++) { /* entries */
		uint64_t c1 = o->c1_addr[f], at = b->funcs[f].addr;
		if (c1 && b->funcs[f].entry_ok && !arch_a64_in_reach(at, at + 8, c1, c1 + 8))
			return 1;
	}
	return 0;
}

uint64_t inject_plan_island_size(const struct elf_binary *b, const struct bolt_output *o)
{
	(void)b;
	/* One veneer per moved function for its call sites, one for its
	 * entry when that is redirected past a landing pad (copy + 4). */
	return 2 * (uint64_t)o->moved * ARCH_A64_VENEER_LEN;
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

/* AArch64: the branch word at `at` (its own kind kept, `insn`) aimed at
 * `to`, directly or through the veneer `cache` holds for function `f`
 * (made on first use). 0, OCOLOS_ERESERVE (out of reach, no island) or
 * OCOLOS_ENOMEM. */
static int a64_branch_to(struct inject_plan *plan, uint64_t *cache, uint32_t f, uint64_t at,
			 uint32_t insn, uint64_t to, uint32_t *out)
{
	if (!arch_a64_encode_branch(at, insn, to, out))
		return 0;
	uint64_t v = 0;
	if (!plan->island)
		return OCOLOS_ERESERVE;
	int rc = veneer_for(plan, cache, f, to, &v);
	if (!rc && arch_a64_encode_branch(at, insn, v, out))
		rc = OCOLOS_ERESERVE;
	return rc;
}

/* Is the call site `s` one to leave alone: inside a function this round
 * moves, calling one whose entry the plan redirects (the rule above)? */
static int site_in_moved_body(const struct elf_binary *b, const struct bolt_output *o,
			      const uint8_t *entry_planned, const struct elf_branch_site *s)
{
	if (!entry_planned || !entry_planned[s->func])
		return 0;
	long in = elf_func_containing(b, s->site);
	return in >= 0 && o->c1_addr[in];
}

/* AArch64 call sites: the whole BL/B word changes. */
static int plan_sites_a64(const struct elf_binary *b, const struct bolt_output *o, uint64_t bias,
			  const uint8_t *entry_planned, struct inject_plan *plan, struct core_err *err)
{
	uint64_t *veneers = calloc(b->nfuncs ? b->nfuncs : 1, sizeof(*veneers));
	if (!veneers)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < b->nsites && !rc; i++) {
		const struct elf_branch_site *s = &b->sites[i];
		uint64_t c1 = o->c1_addr[s->func];
		if (!c1 || site_in_moved_body(b, o, entry_planned, s))
			continue;
		uint64_t at = bias + s->site, to = bias + c1;
		uint32_t insn = (uint32_t)s->opcode << 24, oldw, neww;
		struct inject_patch p = { .addr = at, .len = 4, .kind = INJECT_CALL_SITE };
		if (arch_a64_encode_branch(at, insn, bias + b->funcs[s->func].addr, &oldw)) {
			rc = core_errf(err, OCOLOS_EELF, "call site 0x%llx does not reach its own target",
				       (unsigned long long)s->site);
			break;
		}
		if ((rc = a64_branch_to(plan, veneers, s->func, at, insn, to, &neww))) {
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

/* x86-64 call sites: the rel32 after the e8/e9 changes — to the callee's
 * stub when there are stubs, like the entries (see the top of this file):
 * written when the callee first moves, it stays while the callee keeps
 * moving, and later rounds retarget only the stub. On Redis by pid, ~1,400
 * C0 call sites of hot functions were rewritten in every round's stop. */
static int plan_sites_x86(const struct elf_binary *b, const struct bolt_output *o,
			  const struct inject_plan_opts *po, const uint8_t *entry_planned,
			  struct inject_plan *plan, struct core_err *err)
{
	uint64_t bias = po->bias;
	for (size_t i = 0; i < b->nsites; i++) {
		const struct elf_branch_site *s = &b->sites[i];
		uint64_t c1 = o->c1_addr[s->func];
		if (!c1 || site_in_moved_body(b, o, entry_planned, s))
			continue;
		uint64_t c0 = bias + b->funcs[s->func].addr, to = bias + c1, stub = 0;
		struct inject_patch p = { .addr = bias + s->site + 1, .len = 4, .kind = INJECT_CALL_SITE,
			.target_gen = po->gen };
		if (arch_x86_encode_rel32(bias + s->site, c0, p.old))
			return core_errf(err, OCOLOS_EELF, "call site 0x%llx does not reach its own target",
					 (unsigned long long)s->site);
		if (po->stubs) {
			int rc = inject_stubs_alloc(b, po->stubs, s->func, c0, &stub, err);
			if (rc)
				return rc;
			if (!arch_x86_encode_rel32(bias + s->site, stub, p.new_)) {
				to = stub;
				p.target_gen = 0; /* it leads into the stubs, not a version */
			}
		}
		if (to != stub && arch_x86_encode_rel32(bias + s->site, to, p.new_))
			return core_errf(err, OCOLOS_ERESERVE,
					 "call site 0x%llx cannot reach C1 at 0x%llx with a rel32",
					 (unsigned long long)s->site, (unsigned long long)c1);
		if (push(plan, &p))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->call_sites++;
	}
	return 0;
}

/* Does a call site's patch (`site_len` bytes from the site: a whole
 * instruction) touch [addr, addr + len)? (sites are sorted) */
static int site_in_entry(const struct elf_binary *b, uint64_t addr, uint64_t len,
			 uint64_t site_len)
{
	size_t lo = 0, hi = b->nsites;
	while (lo < hi) { /* first site ending after addr */
		size_t mid = lo + (hi - lo) / 2;
		if (b->sites[mid].site + site_len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->nsites && b->sites[lo].site < addr + len;
}

/* AArch64 entries: the word at entry_off becomes `B <copy + entry_off>`
 * (the rules are at the top of this file). */
static int plan_entries_a64(const struct elf_binary *b, const struct bolt_output *o,
			    uint64_t bias, uint8_t *entry_planned, struct inject_plan *plan,
			    struct core_err *err)
{
	uint64_t *veneers = calloc(b->nfuncs ? b->nfuncs : 1, sizeof(*veneers));
	if (!veneers)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < b->nfuncs && !rc; i++) {
		const struct elf_func *f = &b->funcs[i];
		uint64_t c1 = o->c1_addr[i], off = f->entry_off;
		uint32_t oldw, first0, first1, neww;
		struct core_err ignore = { 0 };
		if (!c1 || !f->entry_ok || site_in_entry(b, f->addr + off, 4, 4) ||
		    elf_read_vaddr(b, f->addr + off, &oldw, 4, &ignore))
			continue;
		/* Past a landing pad: only into a copy that starts with it. */
		if (off && (elf_read_vaddr(b, f->addr, &first0, 4, &ignore) ||
			    elf_bolt_output_read(o, c1, &first1, 4) || first0 != first1))
			continue;
		uint64_t at = bias + f->addr + off;
		rc = a64_branch_to(plan, veneers, (uint32_t)i, at, 0x14000000u, bias + c1 + off, &neww);
		if (rc == OCOLOS_ERESERVE) {
			rc = 0; /* out of reach and no island: C0's entry stays */
			continue;
		}
		if (rc)
			break;
		struct inject_patch p = { .addr = at, .len = 4, .kind = INJECT_ENTRY };
		put32(p.old, oldw);
		put32(p.new_, neww);
		if (push(plan, &p))
			rc = OCOLOS_ENOMEM;
		else
			plan->entries++, entry_planned[i] = 1;
	}
	free(veneers);
	return rc ? core_errf(err, rc, "out of memory") : 0;
}

/* x86-64 entries: `jmp rel32` over the first 5 bytes, to the function's
 * stub when there are stubs (continuous rounds: the entry is written once,
 * and later rounds retarget only the stub, see the top of this file), else
 * to C1. */
static int plan_entries_x86(const struct elf_binary *b, const struct bolt_output *o,
			    const struct inject_plan_opts *po, uint8_t *entry_planned,
			    struct inject_plan *plan, struct core_err *err)
{
	uint64_t bias = po->bias;
	for (size_t i = 0; i < b->nfuncs; i++) {
		const struct elf_func *f = &b->funcs[i];
		uint64_t c1 = o->c1_addr[i];
		if (!c1 || !f->entry_ok || f->size < ARCH_X86_BRANCH_LEN ||
		    site_in_entry(b, f->addr, ARCH_X86_BRANCH_LEN, ARCH_X86_BRANCH_LEN))
			continue;
		struct inject_patch p = { .addr = bias + f->addr, .len = ARCH_X86_BRANCH_LEN,
			.kind = INJECT_ENTRY, .new_ = { 0xe9 }, .target_gen = po->gen };
		struct core_err ignore = { 0 };
		if (elf_read_vaddr(b, f->addr, p.old, ARCH_X86_BRANCH_LEN, &ignore))
			continue;
		uint64_t to = bias + c1, stub = 0;
		if (po->stubs) {
			int rc = inject_stubs_alloc(b, po->stubs, (uint32_t)i, bias + f->addr, &stub, err);
			if (rc)
				return rc;
			if (!arch_x86_encode_rel32(p.addr, stub, p.new_ + 1)) {
				to = stub;
				p.target_gen = 0; /* it leads into the stubs, not a version */
			}
		}
		if (to != stub && arch_x86_encode_rel32(p.addr, to, p.new_ + 1))
			continue;
		if (push(plan, &p))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->entries++;
		entry_planned[i] = 1;
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
	/* Entries first: which ones the plan redirects decides which call
	 * sites it needs (the rule above). */
	uint8_t *entry_planned = calloc(b->nfuncs + 1, 1);
	if (!entry_planned)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	if (b->machine == EM_AARCH64) {
		plan->island = po->island;
		rc = plan_entries_a64(b, o, bias, entry_planned, plan, err);
		if (!rc)
			rc = plan_sites_a64(b, o, bias, entry_planned, plan, err);
	} else {
		rc = plan_entries_x86(b, o, po, entry_planned, plan, err);
		if (!rc)
			rc = plan_sites_x86(b, o, po, entry_planned, plan, err);
	}
	free(entry_planned);
	if (!rc && b->machine == EM_AARCH64)
		for (size_t i = 0; i < plan->n; i++)
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

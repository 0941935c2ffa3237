/*
 * The entries of a code version's function copies.
 *
 * When round k+1 maps C_{k+1}, threads may still run in C_k: a frame
 * returns there, and code in C_k calls C_k's own copies directly. Patching
 * the first bytes of each C_k copy into a jump to its C_{k+1} copy (or to
 * C0, for a function C_{k+1} did not move) sends every such call to the new
 * code, so threads leave C_k as their frames return and C_k can be retired.
 * The rules are C0's (elf_func.entry_ok, inject/entry.c): the first 5 bytes
 * decode, hold no call (no return address points into them), no branch in
 * the version targets them past the first byte, and the function has no
 * indirect jump; at the stop, no thread may be inside them. Read from
 * BOLT's output with the fixups the version was mapped with (keep_c0.c), so
 * `orig` is exactly what the version holds.
 *
 * AArch64: C0's rules too (inject/plan.c): the copy's first instruction
 * word becomes `B <newer copy>` (or `B <C0 entry>`), or, when it is a
 * landing pad (BTI, PACIASP), the word after it becomes a B to the word
 * after the same landing pad in the newer copy (or in C0). One whole word:
 * no thread can be inside it, nothing is checked at the stop. A B that
 * cannot reach (two versions more than 128 MiB apart) is left out: that
 * copy keeps its code until its frames return.
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/arch.h"
#include "core/util.h"
#include "inject/inject.h"

/* A direct call or jump of function `from`'s copy to link-time `to`. */
struct edge {
	uint64_t to;
	uint32_t from;
};

struct targets {
	uint64_t *v;
	size_t n, cap;
	int rc;
	struct inject_version_entries *ve; /* return sites go here */
	const struct elf_binary *b;
	size_t ret_cap, throw_cap;
	uint64_t bias;
	struct edge *e;
	size_t ne, ecap;
	long func; /* of the fragment being decoded */
};

/* A call of the version to link-time `target` (0: unknown, an indirect
 * call) whose return address is link-time `ret`. Nothing returns after a
 * call to abort, exit & co. (elf/plt.c): the word it pushed, left behind,
 * must not keep the version mapped. A call to __cxa_throw & co. is a throw
 * site: it counts only while its thread unwinds (inject/switch.c). */
static void note_call(struct targets *t, uint64_t target, uint64_t ret)
{
	int kind = target ? elf_noreturn_target(t->b, target) : 0;
	struct inject_version_entries *ve = t->ve;
	if (kind == ELF_NORETURN_ENDS)
		return;
	if (kind == ELF_NORETURN_UNWINDS) {
		if (core_grow((void **)&ve->throw_sites, &t->throw_cap, ve->nthrow_sites,
			      sizeof(*ve->throw_sites)))
			t->rc = OCOLOS_ENOMEM;
		else
			ve->throw_sites[ve->nthrow_sites++] = t->bias + ret;
		return;
	}
	if (core_grow((void **)&ve->ret_sites, &t->ret_cap, ve->nret_sites, sizeof(*ve->ret_sites)))
		t->rc = OCOLOS_ENOMEM;
	else
		ve->ret_sites[ve->nret_sites++] = t->bias + ret;
}

static int on_insn(const struct arch_insn *in, void *user)
{
	struct targets *t = user;
	if (!t->rc && t->func >= 0 && in->target &&
	    (in->flow == ARCH_FLOW_CALL || in->flow == ARCH_FLOW_JUMP || in->flow == ARCH_FLOW_COND)) {
		if (core_grow((void **)&t->e, &t->ecap, t->ne, sizeof(*t->e)))
			t->rc = OCOLOS_ENOMEM;
		else
			t->e[t->ne++] = (struct edge){ in->target, (uint32_t)t->func };
	}
	if (t->rc || (in->flow != ARCH_FLOW_CALL && in->flow != ARCH_FLOW_ICALL))
		return 0;
	note_call(t, in->flow == ARCH_FLOW_CALL ? in->target : 0, in->addr + in->len);
	return 0;
}

static void on_target(uint64_t target, void *user)
{
	struct targets *t = user;
	if (t->rc || core_grow((void **)&t->v, &t->cap, t->n, sizeof(*t->v)))
		t->rc = OCOLOS_ENOMEM;
	else
		t->v[t->n++] = target;
}

static int cmp_frag_range(const void *a, const void *b)
{
	const struct inject_frag_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Copy `f`'s entry at link-time `to`, by binary search over the copies'
 * entries `by` (sorted pairs: address, function); -1 if none. */
static long copy_at(const uint64_t (*by)[2], size_t n, uint64_t to)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (by[mid][0] < to)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && by[lo][0] == to ? (long)by[lo][1] : -1;
}

static int cmp_pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* The fragments as sorted ranges, and each copy's callees among the
 * copies (the fields' comment in inject.h). */
static int build_callees(const struct elf_binary *b, const struct bolt_output *o,
			 const struct elf_bat *bat, uint64_t bias, const struct edge *e, size_t ne,
			 struct inject_version_entries *ve)
{
	uint64_t (*by)[2] = malloc((b->nfuncs + 1) * sizeof(*by));
	ve->frags = malloc((bat->nfrags + 1) * sizeof(*ve->frags));
	ve->callee_off = calloc(b->nfuncs + 2, sizeof(*ve->callee_off));
	ve->callees = malloc((ne + 1) * sizeof(*ve->callees));
	if (!by || !ve->frags || !ve->callee_off || !ve->callees) {
		free(by);
		return OCOLOS_ENOMEM;
	}
	memset(by, 0, (b->nfuncs + 1) * sizeof(*by));
	for (size_t i = 0; i < bat->nfrags; i++) {
		const struct elf_bat_frag *fr = &bat->frags[i];
		if (fr->in_func >= 0 && (size_t)fr->in_func < b->nfuncs && fr->size)
			ve->frags[ve->nfrags++] = (struct inject_frag_range){ bias + fr->addr,
				bias + fr->addr + fr->size, (uint32_t)fr->in_func };
	}
	if (ve->nfrags)
		qsort(ve->frags, ve->nfrags, sizeof(*ve->frags), cmp_frag_range);
	size_t nby = 0;
	for (size_t f = 0; f < b->nfuncs; f++)
		if (o->c1_addr[f]) {
			by[nby][0] = o->c1_addr[f];
			by[nby++][1] = f;
		}
	if (nby)
		qsort(by, nby, sizeof(*by), cmp_pair);
	/* Counting sort of the edges that reach a copy's entry, by caller. */
	for (size_t i = 0; i < ne; i++)
		if (copy_at((const uint64_t (*)[2])by, nby, e[i].to) >= 0)
			ve->callee_off[e[i].from + 1]++;
	for (size_t f = 0; f < b->nfuncs; f++)
		ve->callee_off[f + 1] += ve->callee_off[f];
	uint32_t *fill = calloc(b->nfuncs + 1, sizeof(*fill));
	if (!fill) {
		core_free_clear(by, (b->nfuncs + 1) * sizeof(*by));
		return OCOLOS_ENOMEM;
	}
	for (size_t i = 0; i < ne; i++) {
		long g = copy_at((const uint64_t (*)[2])by, nby, e[i].to);
		if (g >= 0)
			ve->callees[ve->callee_off[e[i].from] + fill[e[i].from]++] = (uint32_t)g;
	}
	free(fill);
	core_free_clear(by, (b->nfuncs + 1) * sizeof(*by)); /* addresses: core/util.c says why */
	return 0;
}

/* Bytes of BOLT's output at link-time [addr, addr + len), fixups applied. */
static uint8_t *read_code(const struct bolt_output *o, const struct inject_fixups *fx,
			  uint64_t addr, uint64_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf || elf_bolt_output_read(o, addr, buf, len)) {
		free(buf);
		return NULL;
	}
	inject_fixups_apply(fx, addr, buf, len);
	return buf;
}

/* AArch64: each copy's patched word (version.c's opening comment). */
static int build_a64(const struct elf_binary *b, const struct bolt_output *o,
		     const struct inject_fixups *fx, struct inject_version_entries *ve,
		     struct core_err *err)
{
	ve->off = calloc(b->nfuncs + 1, 1);
	ve->pad = calloc(b->nfuncs + 1, sizeof(*ve->pad));
	if (!ve->off || !ve->pad) {
		inject_version_entries_free(ve);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t f = 0; f < b->nfuncs; f++) {
		uint32_t c0first;
		struct core_err ignore = { 0 };
		/* A copy starting with a landing pad goes on past it: its 8
		 * bytes are the same function's (a landing pad never ends one). */
		uint8_t *code = o->c1_addr[f] && b->funcs[f].entry_ok ? read_code(o, fx, o->c1_addr[f], 8)
								     : NULL;
		if (!code)
			continue;
		int off = arch_a64_entry_word(code, 8);
		memcpy(&ve->pad[f], code, 4);
		/* Past a landing pad, C0 (a revert's target) must start with the
		 * same one. */
		if (off == 0 || (off == 4 && !elf_read_vaddr(b, b->funcs[f].addr, &c0first, 4, &ignore) &&
				 c0first == ve->pad[f])) {
			ve->ok[f] = 1;
			ve->off[f] = (uint8_t)off;
			memcpy(ve->orig[f], code + off, 4);
		}
		free(code);
	}
	return 0;
}

/* AArch64: the calls of one fragment of the version, [addr, addr + len)
 * at link time: BL, and BLR with its pointer-authenticating forms; the
 * return address is the next word. A data word (a literal pool) that
 * reads as a call only adds a site, which can only keep the version
 * longer. Whether the version may form one of its copies' addresses (a
 * function pointer into it, which is no return site) is keep_c0.c's
 * count of references it left (sites_finish). */
static void a64_calls(const uint8_t *code, uint64_t len, uint64_t addr, struct targets *t)
{
	for (uint64_t k = 0; k + 4 <= len && !t->rc; k += 4) {
		uint32_t w;
		memcpy(&w, code + k, 4);
		uint64_t pc = addr + k;
		if (arch_a64_branch_kind(w) == 0x94)
			note_call(t, arch_a64_branch_target(pc, w), pc + 4);
		else if (arch_a64_call_reg(w))
			note_call(t, 0, pc + 4);
	}
}

/* The return sites are the only addresses in the version retirement
 * looks for, which is right only if they are all of them: not when a
 * fragment could not be read (its calls unknown), nor when code of the
 * version still takes the address of one of its own copies (keep_c0.c's
 * unfixed references: a function pointer into the version, which is no
 * return site). Then no list: every address in the version counts. */
static void sites_finish(struct inject_version_entries *ve, int unread,
			 const struct inject_fixups *fx)
{
	if (unread || (fx && fx->unfixed)) {
		core_free_clear(ve->ret_sites, ve->nret_sites * sizeof(*ve->ret_sites));
		core_free_clear(ve->throw_sites, ve->nthrow_sites * sizeof(*ve->throw_sites));
		ve->ret_sites = ve->throw_sites = NULL;
		ve->nret_sites = ve->nthrow_sites = 0;
	}
	if (ve->nret_sites)
		qsort(ve->ret_sites, ve->nret_sites, sizeof(*ve->ret_sites), core_cmp_u64);
	if (ve->nthrow_sites)
		qsort(ve->throw_sites, ve->nthrow_sites, sizeof(*ve->throw_sites), core_cmp_u64);
}

int inject_version_entries_build(const struct elf_binary *b, const struct bolt_output *o,
				 const struct elf_bat *bat, const struct inject_fixups *fx,
				 uint64_t bias, uint32_t gen, struct inject_version_entries *ve,
				 struct core_err *err)
{
	memset(ve, 0, sizeof(*ve));
	ve->gen = gen;
	ve->len = b->machine == EM_AARCH64 ? 4 : ARCH_X86_BRANCH_LEN;
	ve->nfuncs = b->nfuncs;
	ve->at = calloc(b->nfuncs + 1, sizeof(*ve->at));
	ve->c0 = calloc(b->nfuncs + 1, sizeof(*ve->c0));
	ve->orig = calloc(b->nfuncs + 1, sizeof(*ve->orig));
	ve->ok = calloc(b->nfuncs + 1, 1);
	if (!ve->at || !ve->c0 || !ve->orig || !ve->ok) {
		inject_version_entries_free(ve);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t f = 0; f < b->nfuncs; f++) {
		ve->at[f] = o->c1_addr[f] ? bias + o->c1_addr[f] : 0;
		ve->c0[f] = bias + b->funcs[f].addr;
	}
	struct targets tg = { .ve = ve, .bias = bias, .b = b };
	int unread = 0;
	if (b->machine == EM_AARCH64) {
		int rc = build_a64(b, o, fx, ve, err);
		if (rc || !bat)
			return rc;
		for (size_t i = 0; i < bat->nfrags && !tg.rc; i++) {
			const struct elf_bat_frag *fr = &bat->frags[i];
			uint8_t *code = read_code(o, fx, fr->addr, fr->size);
			if (!code) {
				unread++;
				continue;
			}
			a64_calls(code, fr->size, fr->addr, &tg);
			free(code);
		}
		if (tg.rc) {
			inject_version_entries_free(ve);
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		}
		sites_finish(ve, unread, fx);
		return 0;
	}
	if (b->machine != EM_X86_64 || !bat)
		return 0;
	/* Every fragment decoded once: each hot copy's own entry facts, and
	 * the targets of every direct branch of the version. */
	for (size_t i = 0; i < bat->nfrags && !tg.rc; i++) {
		const struct elf_bat_frag *fr = &bat->frags[i];
		uint8_t *code = read_code(o, fx, fr->addr, fr->size);
		if (!code) {
			unread++;
			continue;
		}
		tg.func = fr->in_func >= 0 && (size_t)fr->in_func < b->nfuncs ? fr->in_func : -1;
		struct arch_entry_info info = { .on_target = on_target };
		size_t done = arch_x86_scan_function(code, fr->size, fr->addr, NULL, &info, &tg);
		arch_x86_decode(code, fr->size, fr->addr, on_insn, &tg);
		long f = fr->in_func;
		if (i < bat->nhot && f >= 0 && (size_t)f < b->nfuncs && o->c1_addr[f] == fr->addr &&
		    fr->size >= ARCH_X86_BRANCH_LEN) {
			ve->ok[f] = done == fr->size && info.decoded_entry && !info.call_in_entry &&
				    !info.indirect_jump;
			memcpy(ve->orig[f], code, ARCH_X86_BRANCH_LEN);
		}
		free(code);
	}
	if (!tg.rc)
		tg.rc = build_callees(b, o, bat, bias, tg.e, tg.ne, ve);
	core_free_clear(tg.e, tg.ecap * sizeof(*tg.e));
	if (tg.rc) {
		free(tg.v);
		inject_version_entries_free(ve);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	if (tg.n)
		qsort(tg.v, tg.n, sizeof(*tg.v), core_cmp_u64);
	sites_finish(ve, unread, fx);
	for (size_t f = 0; f < b->nfuncs; f++) {
		if (!ve->ok[f])
			continue;
		uint64_t a = o->c1_addr[f];
		size_t lo = 0, hi = tg.n; /* first target > a */
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (tg.v[mid] <= a)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < tg.n && tg.v[lo] < a + ARCH_X86_BRANCH_LEN)
			ve->ok[f] = 0;
	}
	free(tg.v);
	return 0;
}

/* AArch64: version `ve`'s patched words aimed at `o`'s copies, or C0. */
static int plan_a64(const struct bolt_output *o, uint64_t bias, uint32_t gen,
		    const struct inject_version_entries *ve, struct inject_plan *plan,
		    struct core_err *err)
{
	for (size_t f = 0; f < ve->nfuncs; f++) {
		if (!ve->ok[f] || !ve->at[f])
			continue;
		int moved = o && o->c1_addr[f];
		uint32_t off = ve->off[f], first, w;
		/* Past a landing pad: only into a copy that starts with it. */
		if (moved && off && (elf_bolt_output_read(o, o->c1_addr[f], &first, 4) ||
				     first != ve->pad[f]))
			continue;
		uint64_t to = (moved ? bias + o->c1_addr[f] : ve->c0[f]) + off;
		struct inject_patch p = { .addr = ve->at[f] + off, .len = 4, .kind = INJECT_ENTRY,
			.owner_gen = ve->gen, .target_gen = moved ? gen : 0 };
		memcpy(p.old, ve->orig[f], 4);
		if (arch_a64_encode_b(p.addr, to, &w))
			continue; /* out of reach: the version keeps this copy as it is */
		memcpy(p.new_, &w, 4);
		if (core_grow((void **)&plan->v, &plan->cap, plan->n, sizeof(*plan->v)))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->v[plan->n++] = p;
		plan->entries++;
	}
	return 0;
}

int inject_plan_version_entries(const struct bolt_output *o, uint64_t bias, uint32_t gen,
				const struct inject_version_entries *ve, struct inject_plan *plan,
				struct core_err *err)
{
	if (ve->len == 4)
		return plan_a64(o, bias, gen, ve, plan, err);
	for (size_t f = 0; f < ve->nfuncs; f++) {
		if (!ve->ok[f] || !ve->at[f])
			continue;
		int moved = o && o->c1_addr[f];
		uint64_t to = moved ? bias + o->c1_addr[f] : ve->c0[f];
		struct inject_patch p = { .addr = ve->at[f], .len = ARCH_X86_BRANCH_LEN,
			.kind = INJECT_ENTRY, .new_ = { 0xe9 }, .owner_gen = ve->gen,
			.target_gen = moved ? gen : 0 };
		memcpy(p.old, ve->orig[f], ARCH_X86_BRANCH_LEN);
		if (arch_x86_encode_rel32(p.addr, to, p.new_ + 1))
			continue; /* out of reach: the version keeps this copy as it is */
		if (core_grow((void **)&plan->v, &plan->cap, plan->n, sizeof(*plan->v)))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		plan->v[plan->n++] = p;
		plan->entries++;
	}
	return 0;
}

void inject_version_entries_free(struct inject_version_entries *ve)
{
	free(ve->at);
	free(ve->c0);
	free(ve->orig);
	free(ve->ok);
	free(ve->off);
	free(ve->pad);
	core_free_clear(ve->ret_sites, ve->nret_sites * sizeof(*ve->ret_sites));
	core_free_clear(ve->throw_sites, ve->nthrow_sites * sizeof(*ve->throw_sites));
	core_free_clear(ve->frags, ve->nfrags * sizeof(*ve->frags));
	free(ve->callee_off);
	free(ve->callees);
	memset(ve, 0, sizeof(*ve));
}

/*
 * Function addresses taken by optimized code stay C0 addresses.
 *
 * BOLT, in relocation mode, points every reference to a moved function at
 * its new copy — address-taking instructions included. So a moved function
 * that computes `&f` (lea f(%rip); mov $f in a non-PIE) would yield C_k's
 * copy of f, while the code that was not moved, the data slots the pointer
 * rule leaves alone, dlsym and every earlier copy yield C0's: `p == &f`
 * would change its answer depending on which copy of the comparing code
 * runs (seen: a hot `slot == &target` flipped from always true to always
 * false after a round). And a C_k address handed out (a callback
 * registered with atexit, a thread start routine) would tie the program to
 * code a later round retires.
 *
 * So before C_k is mapped, every address-taking instruction in it that
 * names a moved function's copy is pointed back at the function in C0
 * (whose entry jumps to the current version, or which is the original
 * code). Calls and jumps are left alone: they are the layout BOLT chose.
 *
 * x86-64: a RIP-relative operand whose address is the start of a moved
 * function's copy can only take that function's address (BOLT emits no
 * other reference to a function start), so its disp32 is re-aimed at C0. An
 * absolute immediate (4 or 8 bytes) equal to such a start could be a
 * coincidental constant; it is changed only when the instruction BOLT moved
 * it from (found through BAT) has the same length and encodes C0's address
 * of the same function.
 *
 * AArch64: a function's address is formed by an ADRP (its 4 KiB page,
 * PC-relative) and an ADD of the low 12 bits. Only the plainest form is
 * re-aimed: `ADRP Xn, page` immediately followed by `ADD Xn, Xn, #lo12`
 * naming the start of a moved function's copy, the ADD inside the ADRP's
 * block (not a BAT row of its own: no other path reaches it), the two
 * input instructions they came from (found through BAT) the same pair,
 * adjacent, forming C0's address of that function. Then no other
 * instruction can read the ADRP's page (the ADD overwrites it at once),
 * and the pair is pointed at C0. Every other form (an ADRP kept in a
 * register for several ADDs, perhaps in another fragment; an ADR; a
 * literal) is left and counted as unfixed: rewriting an ADRP some of
 * whose readers were not proven would break them. version.c then keeps
 * no list of return sites for the version.
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/arch.h"
#include "core/util.h"
#include "inject/inject.h"

struct c1_func {
	uint64_t c1;	/* link-time address of the copy */
	uint32_t func;	/* index in the binary's functions */
};

static int cmp_c1(const void *a, const void *b)
{
	const struct c1_func *x = a, *y = b;
	return x->c1 < y->c1 ? -1 : x->c1 > y->c1;
}

struct keep {
	const struct elf_binary *b;
	const struct bolt_output *o;
	const struct elf_bat *bat;
	struct c1_func *by_c1;
	size_t n;
	struct inject_fixups *fx;
	const uint8_t *code;	/* the fragment being decoded */
	uint64_t code_addr;
	int rc;
};

/* Index in by_c1 of the first copy starting at or after `a`. */
static size_t first_copy_from(const struct keep *k, uint64_t a)
{
	size_t lo = 0, hi = k->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (k->by_c1[mid].c1 < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The moved function whose copy starts exactly at `a`, or -1. */
static long moved_at(const struct keep *k, uint64_t a)
{
	size_t i = first_copy_from(k, a);
	return i < k->n && k->by_c1[i].c1 == a ? (long)k->by_c1[i].func : -1;
}

/* Does the 4 KiB page at `page` hold the start of a moved function's copy? */
static int moved_in_page(const struct keep *k, uint64_t page)
{
	size_t i = first_copy_from(k, page);
	return i < k->n && k->by_c1[i].c1 < page + 4096;
}

static int push_fixup(struct inject_fixups *fx, uint64_t addr, const void *bytes, uint8_t len)
{
	if (core_grow((void **)&fx->v, &fx->cap, fx->n, sizeof(*fx->v)))
		return OCOLOS_ENOMEM;
	struct inject_fixup *f = &fx->v[fx->n++];
	memset(f, 0, sizeof(*f));
	f->addr = addr;
	f->len = len;
	memcpy(f->bytes, bytes, len);
	return 0;
}

struct first_insn {
	struct arch_insn in;
	int seen;
};

static int take_first(const struct arch_insn *in, void *p)
{
	struct first_insn *f = p;
	f->in = *in;
	f->seen = 1;
	return 1;
}

/* Does the input instruction this output instruction came from encode C0's
 * address of function `f` in an immediate of the same shape? */
static int input_takes(const struct keep *k, const struct arch_insn *out, long f)
{
	uint64_t in_addr;
	if (!k->bat || elf_bat_translate(k->bat, out->addr, &in_addr) != ELF_BAT_TRANSLATED)
		return 0;
	uint8_t bytes[16];
	struct core_err ignore = { 0 };
	if (out->len > sizeof(bytes) || elf_read_vaddr(k->b, in_addr, bytes, out->len, &ignore))
		return 0;
	struct first_insn fi = { 0 };
	arch_x86_decode(bytes, out->len, in_addr, take_first, &fi);
	return fi.seen && fi.in.len == out->len && fi.in.imm_size == out->imm_size &&
	       fi.in.imm == k->b->funcs[f].addr;
}

static int on_insn(const struct arch_insn *in, void *p)
{
	struct keep *k = p;
	long f;
	if (in->rip_ref && (f = moved_at(k, in->rip_ref)) >= 0) {
		int64_t d = (int64_t)(k->b->funcs[f].addr - (in->addr + in->len));
		if (d < INT32_MIN || d > INT32_MAX) {
			k->fx->unfixed++;
			return 0;
		}
		int32_t disp = (int32_t)d;
		if ((k->rc = push_fixup(k->fx, in->addr + in->disp_off, &disp, 4)))
			return 1;
		k->fx->rip_refs++;
	}
	if (in->imm_size && (f = moved_at(k, in->imm)) >= 0) {
		if (!input_takes(k, in, f)) {
			k->fx->unfixed++;
			return 0;
		}
		uint64_t v = k->b->funcs[f].addr;
		if ((k->rc = push_fixup(k->fx, in->addr + in->imm_off, &v, in->imm_size)))
			return 1;
		k->fx->immediates++;
	}
	return 0;
}

/* The input word the output instruction at `out` came from, or -1. */
static int a64_input_word(const struct keep *k, uint64_t out, uint64_t *in, uint32_t *w)
{
	struct core_err ignore = { 0 };
	return !k->bat || elf_bat_translate(k->bat, out, in) != ELF_BAT_TRANSLATED ||
			       elf_read_vaddr(k->b, *in, w, 4, &ignore)
		       ? -1
		       : 0;
}

/* The pair ADRP at `adrp` (word `wp`), ADD at `add` (word `wa`) forms the
 * start of function f's copy: re-aim it at C0's f when proven (above). */
static void a64_pair(struct keep *k, uint64_t adrp, uint32_t wp, uint64_t add, uint32_t wa, long f)
{
	uint64_t c0 = k->b->funcs[f].addr, in_p, in_a, row;
	uint32_t ip, ia;
	uint64_t in_page;
	if (a64_input_word(k, adrp, &in_p, &ip) || a64_input_word(k, add, &in_a, &ia) ||
	    in_a != in_p + 4 || elf_bat_translate_src(k->bat, add, &row) != ELF_BAT_TRANSLATED ||
	    row == in_a || !arch_a64_adrp_page(in_p, ip, &in_page) || (ip & 31u) != (wp & 31u) ||
	    in_page != (c0 & ~0xfffull) || !arch_a64_is_add_lo12(ia) ||
	    (ia & 0x3ffu) != (wa & 0x3ffu) || ((ia >> 10) & 0xfffu) != (c0 & 0xfffu)) {
		k->fx->unfixed++;
		return;
	}
	int64_t pages = (int64_t)((c0 & ~0xfffull) - (adrp & ~0xfffull)) / 4096;
	if (pages < -(1ll << 20) || pages >= (1ll << 20)) {
		k->fx->unfixed++;
		return;
	}
	uint32_t imm = (uint32_t)pages & 0x1fffffu;
	uint32_t np = (wp & 0x9f00001fu) | (imm & 3u) << 29 | (imm >> 2) << 5;
	uint32_t na = (wa & ~(0xfffu << 10)) | (uint32_t)(c0 & 0xfffu) << 10;
	if ((k->rc = push_fixup(k->fx, adrp, &np, 4)) || (k->rc = push_fixup(k->fx, add, &na, 4)))
		return;
	k->fx->rip_refs++;
}

/* One fragment of AArch64 output (above). */
static void a64_fragment(struct keep *k, const uint8_t *code, uint64_t len, uint64_t addr)
{
	for (uint64_t i = 0; i + 4 <= len && !k->rc; i += 4) {
		uint32_t w, wa;
		memcpy(&w, code + i, 4);
		uint64_t pc = addr + i, t, page, lit;
		long f;
		if (arch_a64_adrp_page(pc, w, &page)) {
			if (i + 8 <= len) {
				memcpy(&wa, code + i + 4, 4);
				uint32_t rd = w & 31u;
				if (arch_a64_is_add_lo12(wa) && (wa & 31u) == rd && ((wa >> 5) & 31u) == rd &&
				    (f = moved_at(k, page + ((wa >> 10) & 0xfffu))) >= 0) {
					a64_pair(k, pc, w, pc + 4, wa, f);
					i += 4;
					continue;
				}
			}
			/* Another use of a page holding a copy's start. */
			if (k->n && moved_in_page(k, page))
				k->fx->unfixed++;
		} else if (arch_a64_adr_target(pc, w, &t) && moved_at(k, t) >= 0) {
			k->fx->unfixed++;
		} else if (arch_a64_ldr_literal(pc, w, &lit)) {
			uint64_t v = 0;
			if (lit >= addr && lit + 8 <= addr + len)
				memcpy(&v, code + (lit - addr), 8);
			else if (elf_bolt_output_read(k->o, lit, &v, 8))
				v = 0;
			if (v && moved_at(k, v) >= 0)
				k->fx->unfixed++;
		}
	}
}

/* The output bytes at link-time [addr, addr + len), from BOLT's file. */
static uint8_t *read_output(const struct bolt_output *o, uint64_t addr, uint64_t len)
{
	for (size_t i = 0; i < o->nsegs; i++) {
		const struct elf_segment *s = &o->segs[i];
		if (addr < s->vaddr || addr + len > s->vaddr + s->filesz)
			continue;
		uint8_t *buf = malloc(len ? len : 1);
		if (buf && pread(o->fd, buf, len, (off_t)(s->offset + addr - s->vaddr)) == (ssize_t)len)
			return buf;
		free(buf);
		return NULL;
	}
	return NULL;
}

int inject_fixups_build(const struct elf_binary *b, const struct bolt_output *o,
			const struct elf_bat *bat, struct inject_fixups *fx, struct core_err *err)
{
	memset(fx, 0, sizeof(*fx));
	if ((b->machine != EM_X86_64 && b->machine != EM_AARCH64) || !bat)
		return 0;
	struct keep k = { .b = b, .o = o, .bat = bat, .fx = fx };
	k.by_c1 = malloc((o->moved + 1) * sizeof(*k.by_c1));
	if (!k.by_c1)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	for (size_t i = 0; i < b->nfuncs; i++)
		if (o->c1_addr[i])
			k.by_c1[k.n++] = (struct c1_func){ o->c1_addr[i], (uint32_t)i };
	if (k.n)
		qsort(k.by_c1, k.n, sizeof(*k.by_c1), cmp_c1);
	for (size_t i = 0; i < bat->nfrags && !k.rc; i++) {
		const struct elf_bat_frag *fr = &bat->frags[i];
		uint8_t *code = read_output(o, fr->addr, fr->size);
		if (!code)
			continue; /* not in a new segment: not code we map */
		if (b->machine == EM_AARCH64)
			a64_fragment(&k, code, fr->size, fr->addr);
		else
			arch_x86_decode(code, fr->size, fr->addr, on_insn, &k);
		free(code);
	}
	free(k.by_c1);
	if (k.rc) {
		inject_fixups_free(fx);
		return core_errf(err, k.rc, "out of memory");
	}
	return 0;
}

void inject_fixups_apply(const struct inject_fixups *fx, uint64_t lo, uint8_t *buf, size_t len)
{
	for (size_t i = 0; fx && i < fx->n; i++) {
		const struct inject_fixup *f = &fx->v[i];
		if (f->addr >= lo && f->addr + f->len <= lo + len)
			memcpy(buf + (f->addr - lo), f->bytes, f->len);
	}
}

void inject_fixups_free(struct inject_fixups *fx)
{
	core_free_clear(fx->v, fx->cap * sizeof(*fx->v));
	memset(fx, 0, sizeof(*fx));
}

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
 * PC-relative) and an ADD of the low 12 bits, or by one ADR. GCC keeps an
 * ADRP's page in a register for several ADDs, not next to it, some in
 * other blocks, which BOLT may split into another fragment; following
 * registers across all that is not needed: the linker's relocations
 * (binary.h, struct elf_a64_ref) name, for every such input instruction,
 * the function it forms, and the compiler pairs an `ADRP f` only with
 * `:lo12:f` uses. So each output word is translated to its input word
 * (BAT); one with such a relocation against a moved function f, of the
 * same form and aimed at f's copy, is changed to form C0's f; and all of
 * f's changes are made, or none: f is left alone when one of its
 * instructions is not that form, a load or store reads f's page, or an
 * output ADRP, ADD or load/store that no relocation explains may read or
 * feed one (an ADRP of a page holding a copy's start; an ADD or load/store
 * BOLT did not copy unchanged whose offset is a copy's low 12 bits: a
 * translation thrown off by BOLT's edits within a block). An ADRP
 * followed by an ADD of the same register stands alone (the ADD
 * overwrites what the ADRP wrote): BOLT's relaxed ADR (GNU as resolves an
 * ADR to a function of the same section itself, without a relocation) is
 * changed whatever explains it, a BOLT stub (the pair, then a branch
 * through the register) left. What still forms a copy's address (f's
 * references when f is left alone, an ADR out of reach of C0, a literal
 * holding a copy's start) is listed in `left`: the round has BOLT leave
 * those functions in place (api/round.c). version.c keeps no list of
 * return sites for a version with unfixed references.
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

struct a64_change {
	uint64_t addr;	/* link-time address of the output word */
	uint32_t word;	/* its new encoding */
	uint32_t func;	/* the function it names */
	uint8_t forms;	/* 1: completes an address (ADD, ADR); 0: an ADRP */
};

static int cmp_lo12(const void *a, const void *b)
{
	const struct c1_func *x = a, *y = b;
	return (int)(x->c1 & 0xfff) - (int)(y->c1 & 0xfff);
}

struct keep {
	const struct elf_binary *b;
	const struct bolt_output *o;
	const struct elf_bat *bat;
	struct c1_func *by_c1;
	size_t n;
	struct inject_fixups *fx;
	int rc;
	/* AArch64 (a64_*): the changes found, applied at the end to the
	 * functions not marked `bad` (one flag per function of the binary);
	 * by_c1 again, sorted by the copies' low 12 bits. */
	struct a64_change *ch;
	size_t nch, ch_cap;
	uint8_t *bad;
	struct c1_func *by_lo12;
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

/* Function f's copy's address is left formed by C1 (inject.h, `left`). */
static int left_formed(struct keep *k, uint32_t f)
{
	struct inject_fixups *fx = k->fx;
	for (size_t i = 0; i < fx->nleft; i++)
		if (fx->left[i] == f)
			return 0;
	if (core_grow((void **)&fx->left, &fx->left_cap, fx->nleft, sizeof(*fx->left)))
		return k->rc = OCOLOS_ENOMEM;
	fx->left[fx->nleft++] = f;
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
			return left_formed(k, (uint32_t)f);
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

static void a64_bad(struct keep *k, uint32_t f)
{
	k->bad[f] = 1;
}

/* Every moved function whose copy starts in the 4 KiB page at `page`. */
static void a64_bad_page(struct keep *k, uint64_t page)
{
	for (size_t i = first_copy_from(k, page); i < k->n && k->by_c1[i].c1 < page + 4096; i++)
		a64_bad(k, k->by_c1[i].func);
}

/* Every moved function whose copy's start has low 12 bits `lo12`. */
static void a64_bad_lo12(struct keep *k, uint32_t lo12)
{
	size_t lo = 0, hi = k->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((k->by_lo12[mid].c1 & 0xfff) < lo12)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < k->n && (k->by_lo12[lo].c1 & 0xfff) == lo12; lo++)
		a64_bad(k, k->by_lo12[lo].func);
}

static int a64_change(struct keep *k, uint64_t addr, uint32_t word, uint32_t f, int forms)
{
	if (core_grow((void **)&k->ch, &k->ch_cap, k->nch, sizeof(*k->ch)))
		return k->rc = OCOLOS_ENOMEM;
	k->ch[k->nch++] = (struct a64_change){ addr, word, f, (uint8_t)forms };
	return 0;
}

/* The words of an `ADRP Xd, page; ADD Xd, Xd, #lo12` pair, aimed at C0's
 * f (at `pc`): 0, or -1 out of ADRP's reach. */
static int a64_pair_words(uint64_t pc, uint64_t c0, uint32_t wp, uint32_t wa, uint32_t out[2])
{
	if (arch_a64_set_pcrel21(wp, (int64_t)((c0 & ~0xfffull) - (pc & ~0xfffull)) / 4096, &out[0]))
		return -1;
	out[1] = (wa & ~(0xfffu << 10)) | (uint32_t)(c0 & 0xfffu) << 10;
	return 0;
}

/* Is `w2` (at pc+4) `ADD Xd, Xd, #lo12` completing the ADRP `w` (of Xd,
 * page `page`) to f's copy start `c1`? */
static int a64_completes(uint32_t w, uint64_t page, uint32_t w2, uint64_t c1)
{
	uint32_t rd = w & 31u;
	return arch_a64_is_add_lo12(w2) && (w2 & 31u) == rd && ((w2 >> 5) & 31u) == rd &&
	       page + ((w2 >> 10) & 0xfffu) == c1;
}

/* The output word `w` at `pc` (`next`: the word after it, `has_next`)
 * came from input word `wi` at `in`, which relocation `r` says forms
 * (part of) moved function f's address. Queue its change back to C0's f,
 * or mark f when the output is not that form aimed at f's copy. Returns
 * the words taken (1, or 2 for an ADR BOLT turned into an ADRP+ADD
 * pair), or 0 when `w` is another kind of instruction: the translation is
 * off (a branch BOLT added to a block reads as the start of the input
 * block it leads to), and the caller looks at it as it is. */
static int a64_ref(struct keep *k, const struct elf_a64_ref *r, uint64_t pc, uint32_t w,
		   uint32_t next, int has_next, uint64_t in, uint32_t wi)
{
	uint32_t f = r->func, pair[2];
	uint64_t c0 = k->b->funcs[f].addr, c1 = k->o->c1_addr[f], pg, in_pg, t, in_t;
	switch (r->kind) {
	case ELF_A64_REF_PAGE:
		if (!arch_a64_adrp_page(pc, w, &pg))
			return 0;
		if (!arch_a64_adrp_page(in, wi, &in_pg) || pg != (c1 & ~0xfffull) ||
		    in_pg != (c0 & ~0xfffull) || (w & 31u) != (wi & 31u) ||
		    a64_pair_words(pc, c0, w, 0, pair))
			break;
		a64_change(k, pc, pair[0], f, 0);
		return 1;
	case ELF_A64_REF_ADD:
		if (!arch_a64_is_add_lo12(w))
			return 0;
		if (!arch_a64_is_add_lo12(wi) ||
		    (w & 0x3ffu) != (wi & 0x3ffu) || ((w >> 10) & 0xfffu) != (c1 & 0xfffu) ||
		    ((wi >> 10) & 0xfffu) != (c0 & 0xfffu))
			break;
		a64_change(k, pc, (w & ~(0xfffu << 10)) | (uint32_t)(c0 & 0xfffu) << 10, f, 1);
		return 1;
	case ELF_A64_REF_ADR:
		if (!arch_a64_adr_target(in, wi, &in_t) || in_t != c0)
			break;
		if (arch_a64_adr_target(pc, w, &t)) {
			if (t != c1 || (w & 31u) != (wi & 31u))
				break;
			uint32_t adr;
			if (arch_a64_set_pcrel21(w, (int64_t)(c0 - pc), &adr)) {
				/* Out of ADR's reach: it stands alone. */
				k->fx->unfixed++;
				left_formed(k, f);
				return 1;
			}
			a64_change(k, pc, adr, f, 1);
			return 1;
		}
		/* BOLT relaxes an ADR whose target may move out of reach into
		 * ADRP+ADD of one register: the ADD overwrites what the ADRP
		 * wrote, so no other instruction reads it. */
		if (arch_a64_adrp_page(pc, w, &pg) && (w & 31u) == (wi & 31u) && has_next &&
		    a64_completes(w, pg, next, c1)) {
			if (a64_pair_words(pc, c0, w, next, pair)) {
				k->fx->unfixed++;
				left_formed(k, f);
				return 2;
			}
			a64_change(k, pc, pair[0], f, 0);
			a64_change(k, pc + 4, pair[1], f, 1);
			return 2;
		}
		return 0;
	default: /* a load or store reading f's page: not rewritten */
		a64_bad(k, f);
		return 1;
	}
	/* Not the form its input was: BOLT added or removed a word earlier
	 * in the block (the translation drifts until the next BAT row), so
	 * the word may be another instruction altogether; the caller looks
	 * at it as it is too. */
	a64_bad(k, f);
	return 0;
}

/* A load or store with an unsigned 12-bit offset (scaled by its size) from
 * a register other than SP: the byte offset, or -1. */
static long a64_ldst_lo12(uint32_t w)
{
	if ((w & 0x3b000000u) != 0x39000000u || ((w >> 5) & 31u) == 31u)
		return -1;
	unsigned scale = w >> 30;
	if ((w >> 26) & 1u && !scale && ((w >> 22) & 2u))
		scale = 4; /* a 128-bit vector register */
	return (long)(((w >> 10) & 0xfffu) << scale);
}

/* Is `w` a branch through register Xd (BR, BLR, or their authenticating
 * forms)? */
static int a64_branches_through(uint32_t w, uint32_t rd)
{
	return (w & 0xfe9ff000u) == 0xd61f0000u && ((w >> 5) & 31u) == rd;
}

/* The address the ADD `w` at fragment offset `i` forms from the page
 * that the last ADRP before it in the fragment (within 256 words) wrote
 * into its source register, or -1 (none, or the register perhaps written
 * otherwise since). Not a proof (another path may reach the ADD): only
 * used to list more. */
static long a64_formed_after(const uint8_t *code, uint64_t i, uint64_t addr, uint32_t w)
{
	uint32_t rn = (w >> 5) & 31u;
	for (int n = 0; i >= 4 && n < 256; n++) {
		i -= 4;
		uint32_t p;
		uint64_t page;
		memcpy(&p, code + i, 4);
		if ((p & 31u) != rn)
			continue;
		if (arch_a64_adrp_page(addr + i, p, &page))
			return (long)(page + ((w >> 10) & 0xfffu));
		/* A store names rn without writing it; anything else may. */
		int store = ((p >> 27) & 1u) && !((p >> 25) & 1u) && !((p >> 22) & 1u);
		if (!store)
			return -1;
	}
	return -1;
}

/* One fragment of AArch64 output (above). */
static void a64_fragment(struct keep *k, const uint8_t *code, uint64_t len, uint64_t addr)
{
	for (uint64_t i = 0; i + 4 <= len && !k->rc; i += 4) {
		uint32_t w, wi, next = 0, after = 0, pair[2];
		memcpy(&w, code + i, 4);
		int has_next = i + 8 <= len;
		if (has_next)
			memcpy(&next, code + i + 4, 4);
		if (i + 12 <= len)
			memcpy(&after, code + i + 8, 4);
		uint64_t pc = addr + i, in, t, page, lit;
		long f, off;
		int translated = !a64_input_word(k, pc, &in, &wi), took;
		const struct elf_a64_ref *r = translated ? elf_a64_ref_at(k->b, in) : NULL;
		if (r && k->o->c1_addr[r->func] &&
		    (took = a64_ref(k, r, pc, w, next, has_next, in, wi))) {
			i += 4 * (uint64_t)(took - 1);
			continue;
		}
		/* Not explained by a relocation of the input. */
		if (arch_a64_adrp_page(pc, w, &page)) {
			if (!k->n || !moved_in_page(k, page))
				continue;
			/* ADRP+ADD of one register forming a copy's start: no
			 * other instruction reads the page. A branch through it
			 * (a BOLT stub) is left; any other use is pointed at C0. */
			if (has_next && arch_a64_is_add_lo12(next) && (next & 31u) == (w & 31u) &&
			    ((next >> 5) & 31u) == (w & 31u)) {
				if ((f = moved_at(k, page + ((next >> 10) & 0xfffu))) >= 0 &&
				    !a64_branches_through(after, w & 31u)) {
					if (a64_pair_words(pc, k->b->funcs[f].addr, w, next, pair)) {
						k->fx->unfixed++;
						left_formed(k, (uint32_t)f);
					} else {
						a64_change(k, pc, pair[0], (uint32_t)f, 0);
						a64_change(k, pc + 4, pair[1], (uint32_t)f, 1);
					}
				}
				i += 4;
				continue;
			}
			/* Any other ADRP of a page holding a copy's start (a
			 * translation BOLT's edits within a block threw off):
			 * its readers may be among the changes. */
			k->fx->unfixed++;
			a64_bad_page(k, page);
		} else if (arch_a64_is_add_lo12(w) && ((w >> 5) & 31u) != 31u &&
			   !(translated && wi == w)) {
			/* An ADD BOLT did not copy as it was: it may read a
			 * changed ADRP. (ADDs of constants are copied as is.)
			 * And when the ADRP last writing its register earlier
			 * in the fragment, with it, forms a copy's start, that
			 * copy's address is formed here. */
			a64_bad_lo12(k, (w >> 10) & 0xfffu);
			long a = a64_formed_after(code, i, addr, w);
			if (a >= 0 && (f = moved_at(k, (uint64_t)a)) >= 0) {
				k->fx->unfixed++;
				left_formed(k, (uint32_t)f);
			}
		} else if ((off = a64_ldst_lo12(w)) >= 0 && !(translated && wi == w)) {
			/* Likewise a load or store. */
			if (off < 4096)
				a64_bad_lo12(k, (uint32_t)off);
		} else if (arch_a64_adr_target(pc, w, &t) && (f = moved_at(k, t)) >= 0) {
			k->fx->unfixed++;
			left_formed(k, (uint32_t)f);
		} else if (arch_a64_ldr_literal(pc, w, &lit)) {
			uint64_t v = 0;
			if (lit >= addr && lit + 8 <= addr + len)
				memcpy(&v, code + (lit - addr), 8);
			else if (elf_bolt_output_read(k->o, lit, &v, 8))
				v = 0;
			/* Only BOLT knows where the copies are: a literal
			 * holding one's start is BOLT's pointer to it. */
			if (v && (f = moved_at(k, v)) >= 0) {
				k->fx->unfixed++;
				left_formed(k, (uint32_t)f);
			}
		}
	}
}

/* Every function named by the relocations of the input function of
 * fragment `fr`, which is not read. */
static void a64_bad_unread(struct keep *k, const struct elf_bat_frag *fr)
{
	if (fr->in_func < 0) {
		for (size_t i = 0; i < k->n; i++) /* which function is unknown */
			a64_bad(k, k->by_c1[i].func);
		return;
	}
	const struct elf_func *fn = &k->b->funcs[fr->in_func];
	for (size_t i = elf_a64_ref_from(k->b, fn->addr);
	     i < k->b->na64_refs && k->b->a64_refs[i].at < fn->addr + fn->size; i++)
		a64_bad(k, k->b->a64_refs[i].func);
}

/* The queued changes of every function nothing marked (above). */
static void a64_finish(struct keep *k)
{
	for (size_t i = 0; i < k->nch && !k->rc; i++) {
		const struct a64_change *c = &k->ch[i];
		if (k->bad[c->func]) {
			/* An ADRP alone forms a copy's page, which its reader
			 * completes (it was not proven, or f would be whole). */
			k->fx->unfixed += c->forms;
			if (left_formed(k, c->func))
				return;
			continue;
		}
		if ((k->rc = push_fixup(k->fx, c->addr, &c->word, 4)))
			return;
		k->fx->rip_refs += c->forms;
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
	if (b->machine == EM_AARCH64) {
		k.bad = calloc(b->nfuncs + 1, 1);
		k.by_lo12 = malloc((k.n + 1) * sizeof(*k.by_lo12));
		if (!k.bad || !k.by_lo12)
			k.rc = OCOLOS_ENOMEM;
		else if (k.n) {
			memcpy(k.by_lo12, k.by_c1, k.n * sizeof(*k.by_lo12));
			qsort(k.by_lo12, k.n, sizeof(*k.by_lo12), cmp_lo12);
		}
	}
	for (size_t i = 0; i < bat->nfrags && !k.rc; i++) {
		const struct elf_bat_frag *fr = &bat->frags[i];
		uint8_t *code = read_output(o, fr->addr, fr->size);
		if (!code) {
			/* Not in a new segment: not code we map. Should its
			 * function have other fragments we do map, their ADRPs'
			 * readers may be here. */
			if (b->machine == EM_AARCH64)
				a64_bad_unread(&k, fr);
			continue;
		}
		if (b->machine == EM_AARCH64)
			a64_fragment(&k, code, fr->size, fr->addr);
		else
			arch_x86_decode(code, fr->size, fr->addr, on_insn, &k);
		free(code);
	}
	if (b->machine == EM_AARCH64 && !k.rc)
		a64_finish(&k);
	free(k.by_c1);
	free(k.by_lo12);
	free(k.bad);
	free(k.ch);
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
	free(fx->left);
	memset(fx, 0, sizeof(*fx));
}

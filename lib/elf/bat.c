/*
 * BOLT Address Translation reader (see bat.h): parses `.note.bolt_bat`,
 * sizes and binds its fragments from the output's symbols, and answers
 * "which original address did this output address come from".
 *
 * It is not responsible for deciding what an untranslatable sample means,
 * nor for run-time addresses (infer/bat_translate.c does both).
 *
 * THE FORMAT. Written by BoltAddressTranslation::write, read back by
 * BoltAddressTranslation::parse (bolt/lib/Profile/BoltAddressTranslation.cpp;
 * bolt/docs/BAT.md describes it, with two omissions noted below). This
 * reader was checked against the notes of Debian's BOLT 19.1.7 and 22.1.8
 * (x86-64 inputs with both, AArch64 with 19, split functions and a
 * secondary entry point included): both wrote the same bytes for the same
 * input and layout, so there is one format here, not one per version.
 *
 *   note header   namesz, descsz, type: u32 little-endian each; type 1
 *                 (NT_BOLT_BAT), name "BOLT\0" padded to 4 bytes
 *   descriptor    the hot table, then the cold table, each:
 *     NumFuncs           ULEB128
 *     per fragment:
 *       Address          ULEB128, delta from the previous output address
 *       HotIndex         cold: ULEB128, delta from the previous cold
 *                        fragment's, index of its hot fragment in the hot table
 *       Skew             cold: ULEB128, input offset of its first row
 *       FuncHash         hot: 8 bytes, little-endian
 *       NumBlocks        hot: ULEB128, blocks of the input function
 *       NumSecEntryPoints hot: ULEB128
 *       NumEntries       ULEB128
 *       EqualElems       ULEB128: its first EqualElems rows have input
 *                        offset == output offset + Skew (0 for hot) and
 *                        store no input offset
 *       BranchEntries    (EqualElems + 7) / 8 bytes: bit j (little-endian)
 *                        is the BRANCHENTRY bit of row j
 *       NumEntries rows, each:
 *         OutputDelta    ULEB128, delta from the previous output address
 *         InputDelta     SLEB128, rows past EqualElems only: delta of the
 *                        value (input offset << 1 | BRANCHENTRY) from the
 *                        previous row's
 *         BBHash, BBIdx  rows without BRANCHENTRY only: 8 bytes
 *                        little-endian, then ULEB128 delta of the block
 *                        index from the previous block row's (mod 2^64:
 *                        a smaller index is a 10-byte ULEB)
 *       secondary entry points: hot, NumSecEntryPoints ULEB128 deltas of
 *                        input offsets, from 0
 *   "Previous output address" is one running value over the whole
 *   descriptor, starting at 0: fragment addresses and rows alike, through
 *   both tables. BOLT's arithmetic is modulo 2^64 throughout.
 *
 * What the BAT.md read leaves out and the code (and both binaries) does:
 * cold fragments carry the Skew, and EqualElems/BranchEntries are written
 * for cold fragments too (BAT.md marks them hot-only). Input offsets are
 * relative to the whole input function, also in cold tables. Hot tables
 * end with one row per input block BOLT deleted, all at the fragment's
 * size (so rows may share an output offset; BOLT keeps them in a multimap
 * in table order, and translate() takes the last). Earlier revisions in
 * BOLT's history wrote no hashes and no skew, and earlier still stored
 * every input offset; such a note fails here on its length.
 *
 * CHECKS. The note is untrusted input (it will be fuzzed): every read is
 * bounds-checked, counts are checked against the bytes left before
 * anything is allocated, and values BOLT would silently truncate or use as
 * an index (offsets past 32 bits, a HotIndex past the hot table, rows out
 * of order) are refused with OCOLOS_EELF naming the file and the field.
 * The descriptor must be consumed exactly: a note of another layout is
 * refused rather than half-read.
 */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf/bat.h"
#include "elf/bolt_output.h"
#include "elf/table.h"

#define NT_BOLT_BAT 1u

/* A bounds-checked reader over the descriptor. `base` is the start of the
 * whole note, for byte positions in messages. */
struct cur {
	const uint8_t *p, *end, *base;
	const char *what;
	struct core_err *err;
};

static int bad(struct cur *c, const char *field, const char *fault)
{
	return core_errf(c->err, OCOLOS_EELF,
			 "BOLT address translation (.note.bolt_bat) of '%s': %s at byte %zu %s; "
			 "the file is damaged or from a BOLT whose BAT format this reader does not "
			 "know (checked against BOLT 19 and 22)",
			 c->what, field, (size_t)(c->p - c->base), fault);
}

static int rd_uleb(struct cur *c, uint64_t *v, const char *field)
{
	uint64_t r = 0;
	for (unsigned shift = 0;; shift += 7) {
		if (c->p >= c->end)
			return bad(c, field, "runs past the end of the note");
		uint8_t b = *c->p;
		/* The 10th byte may only hold bit 63. */
		if (shift == 63 && (b & 0x7e))
			return bad(c, field, "is a ULEB128 wider than 64 bits");
		c->p++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		if (shift == 63)
			return bad(c, field, "is a ULEB128 wider than 64 bits");
	}
	*v = r;
	return 0;
}

static int rd_sleb(struct cur *c, int64_t *v, const char *field)
{
	uint64_t r = 0;
	unsigned shift = 0;
	uint8_t b;
	for (;; shift += 7) {
		if (c->p >= c->end)
			return bad(c, field, "runs past the end of the note");
		b = *c->p;
		/* The 10th byte holds bit 63 and sign-extension copies of it. */
		if (shift == 63 && b != 0 && b != 0x7f)
			return bad(c, field, "is an SLEB128 wider than 64 bits");
		c->p++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
	}
	if (shift + 7 < 64 && (b & 0x40))
		r |= ~0ull << (shift + 7);
	*v = (int64_t)r;
	return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *field)
{
	if ((size_t)(c->end - c->p) < 8)
		return bad(c, field, "runs past the end of the note");
	uint64_t r = 0;
	for (int i = 7; i >= 0; i--)
		r = r << 8 | c->p[i];
	c->p += 8;
	*v = r;
	return 0;
}

/* A ULEB128 count of items each at least `min_bytes` long: refused when
 * the bytes left cannot hold them, so nothing is allocated for a count
 * the note cannot back. */
static int rd_count(struct cur *c, uint64_t *v, size_t min_bytes, const char *field)
{
	int rc = rd_uleb(c, v, field);
	if (!rc && *v > (uint64_t)(c->end - c->p) / min_bytes)
		rc = bad(c, field, "counts more items than the bytes left can hold");
	return rc;
}

/* Room for `need` elements of `elem` bytes in *v (holding *cap): 0, or -1
 * with *v unchanged. `need` is bounded by the note's length (rd_count). */
static int grow(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t cap2 = *cap ? *cap : 16;
	while (cap2 < need)
		cap2 *= 2;
	void *v2 = realloc(*v, cap2 * elem);
	if (!v2)
		return -1;
	*v = v2;
	*cap = cap2;
	return 0;
}

/* Parse state shared by the two tables. */
struct parse {
	struct cur c;
	struct elf_bat *bat;
	size_t cap_frags, cap_entries, cap_eps;
	uint64_t prev;	/* the running output address */
};

/* One fragment's rows: NumEntries, EqualElems, BranchEntries and the rows. */
static int parse_rows(struct parse *ps, struct elf_bat_frag *f)
{
	struct cur *c = &ps->c;
	struct elf_bat *bat = ps->bat;
	uint64_t n, equal;
	int rc;
	if ((rc = rd_count(c, &n, 1, "NumEntries")) || (rc = rd_uleb(c, &equal, "EqualElems")))
		return rc;
	if (equal > n)
		return bad(c, "EqualElems", "exceeds NumEntries");
	const uint8_t *mask = c->p;
	if ((uint64_t)(c->end - c->p) < (equal + 7) / 8)
		return bad(c, "BranchEntries", "runs past the end of the note");
	c->p += (equal + 7) / 8;
	if (bat->nentries + n > UINT32_MAX)
		return bad(c, "NumEntries", "brings the rows past 2^32");
	if (grow((void **)&bat->entries, &ps->cap_entries, bat->nentries + n, sizeof(*bat->entries)))
		return core_errf(c->err, OCOLOS_ENOMEM, "out of memory");
	f->first = (uint32_t)bat->nentries;
	f->n = (uint32_t)n;
	uint64_t value = 0, bb = 0, last_out = 0; /* value: in << 1 | BRANCHENTRY */
	for (uint64_t j = 0; j < n; j++) {
		uint64_t d;
		if ((rc = rd_uleb(c, &d, "OutputDelta")))
			return rc;
		ps->prev += d;
		uint64_t out = ps->prev - f->addr;
		if (out >> 32)
			return bad(c, "OutputDelta", "puts a row 4 GiB or more away from its fragment");
		if (j && out < last_out)
			return bad(c, "OutputDelta", "puts a row before the previous one");
		last_out = out;
		if (j < equal) {
			value = (out + f->skew) << 1 | ((mask[j / 8] >> (j % 8)) & 1);
		} else {
			int64_t din = 0;
			if ((rc = rd_sleb(c, &din, "InputDelta")))
				return rc;
			value += (uint64_t)din;
		}
		if (value >> 33)
			return bad(c, "InputDelta", "gives an input offset of 4 GiB or more");
		struct elf_bat_entry *e = &bat->entries[bat->nentries++];
		*e = (struct elf_bat_entry){ .out = (uint32_t)out, .in = (uint32_t)(value >> 1),
			.branch = value & 1 };
		if (!e->branch) {
			uint64_t dbb = 0;
			if ((rc = rd_u64(c, &e->bb_hash, "BBHash")) || (rc = rd_uleb(c, &dbb, "BBIdx")))
				return rc;
			bb += dbb; /* modulo 2^64, as written */
			e->bb_index = (uint32_t)bb;
		}
	}
	return 0;
}

/* One table (hot or cold) of fragments. */
static int parse_table(struct parse *ps, int cold)
{
	struct cur *c = &ps->c;
	struct elf_bat *bat = ps->bat;
	uint64_t nfuncs, hot_index = 0;
	int rc;
	/* A fragment takes at least 3 bytes (Address, NumEntries, EqualElems). */
	if ((rc = rd_count(c, &nfuncs, 3, cold ? "cold NumFuncs" : "hot NumFuncs")))
		return rc;
	if (grow((void **)&bat->frags, &ps->cap_frags, bat->nfrags + nfuncs, sizeof(*bat->frags)))
		return core_errf(c->err, OCOLOS_ENOMEM, "out of memory");
	for (uint64_t i = 0; i < nfuncs; i++) {
		struct elf_bat_frag *f = &bat->frags[bat->nfrags];
		*f = (struct elf_bat_frag){ .in_func = -1, .hot = (uint32_t)bat->nfrags };
		uint64_t d;
		if ((rc = rd_uleb(c, &d, "Address")))
			return rc;
		ps->prev += d;
		f->addr = ps->prev;
		if (cold) {
			uint64_t skew;
			if ((rc = rd_uleb(c, &d, "HotIndex")))
				return rc;
			hot_index += d;
			if (hot_index >= bat->nhot)
				return bad(c, "HotIndex", "names no fragment of the hot table");
			f->hot = (uint32_t)hot_index;
			if ((rc = rd_uleb(c, &skew, "Skew")))
				return rc;
			if (skew >> 32)
				return bad(c, "Skew", "is 4 GiB or more");
			f->skew = (uint32_t)skew;
		} else {
			uint64_t nb, nep;
			if ((rc = rd_u64(c, &f->hash, "FuncHash")) || (rc = rd_uleb(c, &nb, "NumBlocks")) ||
			    (rc = rd_count(c, &nep, 1, "NumSecEntryPoints")))
				return rc;
			if (nb >> 32)
				return bad(c, "NumBlocks", "is 2^32 or more");
			f->nblocks = (uint32_t)nb;
			f->nep = (uint32_t)nep;
		}
		if ((rc = parse_rows(ps, f)))
			return rc;
		if (!cold && f->nep) {
			if (grow((void **)&bat->eps, &ps->cap_eps, bat->neps + f->nep, sizeof(*bat->eps)))
				return core_errf(c->err, OCOLOS_ENOMEM, "out of memory");
			f->first_ep = (uint32_t)bat->neps;
			uint64_t off = 0;
			for (uint32_t k = 0; k < f->nep; k++) {
				if ((rc = rd_uleb(c, &d, "SecEntryPoint")))
					return rc;
				off += d;
				if (d >> 32 || off >> 32)
					return bad(c, "SecEntryPoint", "is 4 GiB or more into its function");
				bat->eps[bat->neps++] = (uint32_t)off;
			}
		}
		bat->nfrags++;
		if (!cold)
			bat->nhot++;
	}
	return 0;
}

struct by_addr { uint64_t addr; uint32_t frag; };

static int cmp_by_addr(const void *a, const void *b)
{
	const struct by_addr *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return (x->frag > y->frag) - (x->frag < y->frag);
}

/* How many entries of `order` start at or below `a`. */
static size_t order_upper(const struct elf_bat *bat, uint64_t a)
{
	size_t lo = 0, hi = bat->norder;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bat->frags[bat->order[mid]].addr <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The fragment starting exactly at `a` (the one `order` keeps), or -1. */
static long frag_at(const struct elf_bat *bat, uint64_t a)
{
	size_t k = order_upper(bat, a);
	return k && bat->frags[bat->order[k - 1]].addr == a ? (long)bat->order[k - 1] : -1;
}

/* Build `order` (one fragment per address, the first in table order) and
 * give every fragment without a size one: up to the next fragment, the
 * last one up to `last_end` (or just past its highest row when 0). Sizes
 * that would overlap the next fragment, or pass `last_end`, are cut there,
 * so that lookups by address find at most one fragment and never one
 * beyond the code. */
static int index_fragments(struct elf_bat *bat, uint64_t last_end, struct core_err *err)
{
	free(bat->order);
	bat->norder = 0;
	size_t n = bat->nfrags ? bat->nfrags : 1;
	struct by_addr *v = malloc(n * sizeof(*v));
	bat->order = malloc(n * sizeof(*bat->order));
	if (!v || !bat->order) {
		free(v);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < bat->nfrags; i++)
		v[i] = (struct by_addr){ bat->frags[i].addr, (uint32_t)i };
	qsort(v, bat->nfrags, sizeof(*v), cmp_by_addr);
	for (size_t i = 0; i < bat->nfrags; i++)
		if (!i || v[i].addr != v[i - 1].addr)
			bat->order[bat->norder++] = v[i].frag;
	free(v);
	for (size_t k = 0; k < bat->norder; k++) {
		struct elf_bat_frag *f = &bat->frags[bat->order[k]];
		uint64_t next = k + 1 < bat->norder ? bat->frags[bat->order[k + 1]].addr : 0;
		if (!f->size) {
			if (next)
				f->size = next - f->addr;
			else if (last_end > f->addr)
				f->size = last_end - f->addr;
			else
				f->size = f->n ? (uint64_t)bat->entries[f->first + f->n - 1].out + 1 : 1;
		}
		if (next && f->size > next - f->addr)
			f->size = next - f->addr;
		if (!next && last_end > f->addr && f->size > last_end - f->addr)
			f->size = last_end - f->addr;
	}
	return 0;
}

int elf_bat_parse(const void *note, size_t len, const char *what,
		  struct elf_bat **out, struct core_err *err)
{
	*out = NULL;
	struct parse ps = { .c = { .p = note, .base = note, .end = (const uint8_t *)note + len,
				   .what = what ? what : "?", .err = err } };
	struct cur *c = &ps.c;
	if (len < 12)
		return bad(c, "the note header", "is cut short");
	uint32_t hdr[3];
	for (int i = 0; i < 3; i++)
		hdr[i] = (uint32_t)c->p[4 * i] | (uint32_t)c->p[4 * i + 1] << 8 |
			 (uint32_t)c->p[4 * i + 2] << 16 | (uint32_t)c->p[4 * i + 3] << 24;
	uint64_t name_end = 12 + ((uint64_t)hdr[0] + 3) / 4 * 4;
	if (hdr[2] != NT_BOLT_BAT)
		return bad(c, "the note type", "is not NT_BOLT_BAT (1)");
	if (hdr[0] < 4 || name_end > len || memcmp(c->p + 12, "BOLT", 4))
		return bad(c, "the note name", "is not \"BOLT\"");
	if (hdr[1] > len - name_end)
		return bad(c, "the descriptor size", "exceeds the section");
	c->p += name_end;
	c->end = c->p + hdr[1];
	struct elf_bat *bat = calloc(1, sizeof(*bat));
	if (!bat || !(bat->path = strdup(c->what))) {
		free(bat);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	ps.bat = bat;
	int rc = parse_table(&ps, 0);
	if (!rc)
		rc = parse_table(&ps, 1);
	if (!rc && c->p != c->end)
		rc = bad(c, "the descriptor", "has bytes left after both tables");
	if (!rc)
		rc = index_fragments(bat, 0, err);
	if (rc) {
		elf_bat_free(bat);
		return rc;
	}
	*out = bat;
	return 0;
}

/* The bytes of the `.note.bolt_bat` section (*size of them), or NULL. */
static Elf_Data *find_note(Elf *e, size_t *size)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx))
		return NULL;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		const char *name = elf_strptr(e, shstrndx, sh.sh_name);
		if (!name || strcmp(name, ".note.bolt_bat") || sh.sh_type != SHT_NOTE)
			continue;
		/* Raw bytes: libelf would byte-swap note headers for us, and
		 * the tables must be read as BOLT wrote them. */
		Elf_Data *d = elf_rawdata(scn, NULL);
		*size = d ? d->d_size : 0;
		return d;
	}
	return NULL;
}

/* Fragment sizes from the output's function symbols at their addresses
 * (the largest one when several: "f.cold.0" and a secondary entry point
 * "g" can share an address, the entry point with size 0). */
static void size_from_symbols(Elf *e, struct elf_bat *bat)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn)))
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
			break;
	Elf_Data *d = scn ? elf_getdata(scn, NULL) : NULL;
	size_t nsyms = scn ? elf_table_len(&sh, d) : 0;
	for (size_t i = 1; i < nsyms; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s) || GELF_ST_TYPE(s.st_info) != STT_FUNC)
			continue;
		long f = frag_at(bat, s.st_value);
		if (f >= 0 && s.st_size > bat->frags[f].size)
			bat->frags[f].size = s.st_size;
	}
}

/* End of the executable section holding the highest fragment, or 0. */
static uint64_t exec_end(Elf *e, const struct elf_bat *bat)
{
	if (!bat->norder)
		return 0;
	uint64_t a = bat->frags[bat->order[bat->norder - 1]].addr;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn)))
		if (gelf_getshdr(scn, &sh) && (sh.sh_flags & SHF_EXECINSTR) &&
		    a >= sh.sh_addr && a - sh.sh_addr < sh.sh_size)
			return sh.sh_addr + sh.sh_size;
	return 0;
}

/* Bind each hot fragment to the input function whose name its output
 * symbol carries (elf_bolt_match_functions, over the output's executable
 * segments). An address two input functions claim stays unbound. */
static int bind(Elf *e, const struct elf_binary *in, struct elf_bat *bat, struct core_err *err)
{
	size_t phnum;
	if (elf_getphdrnum(e, &phnum))
		return core_errf(err, OCOLOS_EELF, "BOLT output '%s' has no program headers", bat->path);
	struct elf_segment *segs = calloc(phnum ? phnum : 1, sizeof(*segs));
	uint64_t *out_addr = calloc(in->nfuncs ? in->nfuncs : 1, sizeof(*out_addr));
	size_t nsegs = 0;
	uint32_t matched;
	int rc = 0;
	if (!segs || !out_addr) {
		rc = core_errf(err, OCOLOS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
			segs[nsegs++] = (struct elf_segment){ ph.p_vaddr, ph.p_memsz, ph.p_offset,
				ph.p_filesz, ph.p_flags };
	}
	if ((rc = elf_bolt_match_functions(e, in, segs, nsegs, out_addr, &matched, err)))
		goto done;
	for (size_t i = 0; i < in->nfuncs; i++) {
		long f = out_addr[i] ? frag_at(bat, out_addr[i]) : -1;
		if (f < 0 || (size_t)f >= bat->nhot)
			continue;
		struct elf_bat_frag *h = &bat->frags[f];
		if (h->in_func < 0) {
			h->in_func = (long)i;
			h->in_addr = in->funcs[i].addr;
		} else if (h->in_addr != in->funcs[i].addr) {
			h->in_func = -2; /* claimed twice: unbound below */
		}
	}
	bat->bound = 0;
	for (size_t k = 0; k < bat->nfrags; k++) {
		struct elf_bat_frag *f = &bat->frags[k];
		const struct elf_bat_frag *h = &bat->frags[f->hot];
		if (h->in_func < 0) { /* -2 (claimed twice) becomes -1 here too */
			f->in_func = -1;
			f->in_addr = 0;
			continue;
		}
		f->in_func = h->in_func;
		f->in_addr = h->in_addr;
		bat->bound += k < bat->nhot;
	}
done:
	free(segs);
	free(out_addr);
	return rc;
}

int elf_bat_read(Elf *e, const char *path, const struct elf_binary *in,
		 struct elf_bat **out, struct core_err *err)
{
	*out = NULL;
	size_t size = 0;
	Elf_Data *d = find_note(e, &size);
	if (!d)
		return core_errf(err, OCOLOS_EELF,
				 "BOLT output '%s' has no address translation (.note.bolt_bat): "
				 "BOLT ran without --enable-bat, so samples in its code cannot be "
				 "mapped back to the original binary", path);
	struct elf_bat *bat;
	int rc = elf_bat_parse(d->d_buf ? d->d_buf : (const void *)"", d->d_buf ? size : 0, path,
			       &bat, err);
	if (rc)
		return rc;
	/* Sizes: symbols first, then the gaps (index_fragments again). */
	for (size_t i = 0; i < bat->nfrags; i++)
		bat->frags[i].size = 0;
	size_from_symbols(e, bat);
	if (!(rc = index_fragments(bat, exec_end(e, bat), err)) && in)
		rc = bind(e, in, bat, err);
	if (rc) {
		elf_bat_free(bat);
		return rc;
	}
	*out = bat;
	return 0;
}

int elf_bat_open(const char *path, const struct elf_binary *in,
		 struct elf_bat **out, struct core_err *err)
{
	*out = NULL;
	elf_version(EV_CURRENT);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return core_errf(err, OCOLOS_EIO, "cannot open BOLT output '%s'", path);
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	int rc;
	if (!e || elf_kind(e) != ELF_K_ELF)
		rc = core_errf(err, OCOLOS_EELF, "BOLT output '%s' is not an ELF file", path);
	else
		rc = elf_bat_read(e, path, in, out, err);
	if (e)
		elf_end(e);
	close(fd);
	return rc;
}

void elf_bat_free(struct elf_bat *bat)
{
	if (!bat)
		return;
	free(bat->path);
	free(bat->frags);
	free(bat->entries);
	free(bat->eps);
	free(bat->order);
	free(bat);
}

long elf_bat_frag_containing(const struct elf_bat *bat, uint64_t a)
{
	size_t lo = order_upper(bat, a);
	if (!lo)
		return -1;
	const struct elf_bat_frag *f = &bat->frags[bat->order[lo - 1]];
	return a - f->addr < f->size ? (long)bat->order[lo - 1] : -1;
}

/*
 * BOLT's translate(): the last row whose output offset is at or below
 * `off` (upper_bound, then one back: of rows sharing an offset, the last
 * in table order). No such row: `off` itself, unchanged. A branch source
 * gets the row's input offset; anything else that plus its distance from
 * the row. That distance is an output distance: where BOLT shortened,
 * dropped or added instructions between the row and `off`, the result is
 * off by as much — BOLT takes the same answer.
 */
uint64_t elf_bat_input_offset(const struct elf_bat *bat, size_t frag, uint64_t off,
			      int branch_src)
{
	const struct elf_bat_frag *f = &bat->frags[frag];
	if (!f->n) /* (a table of no rows has no entries array: NULL + 0) */
		return off;
	const struct elf_bat_entry *e = bat->entries + f->first;
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e[mid].out <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return off;
	const struct elf_bat_entry *r = &e[lo - 1];
	return branch_src ? r->in : off - r->out + r->in;
}

static int translate(const struct elf_bat *bat, uint64_t a, uint64_t *in, int branch_src)
{
	long f = elf_bat_frag_containing(bat, a);
	*in = a;
	if (f < 0)
		return ELF_BAT_NOT_MOVED;
	const struct elf_bat_frag *fr = &bat->frags[f];
	if (fr->in_func < 0)
		return ELF_BAT_UNBOUND;
	*in = fr->in_addr + elf_bat_input_offset(bat, (size_t)f, a - fr->addr, branch_src);
	return ELF_BAT_TRANSLATED;
}

int elf_bat_translate(const struct elf_bat *bat, uint64_t out_addr, uint64_t *in_addr)
{
	return translate(bat, out_addr, in_addr, 0);
}

int elf_bat_translate_src(const struct elf_bat *bat, uint64_t out_addr, uint64_t *in_addr)
{
	return translate(bat, out_addr, in_addr, 1);
}

/*
 * elf/bat.c on hand-made notes: the corners of the format and of BOLT's
 * translate() that real output rarely shows on demand (rows sharing an
 * output offset, an address before a fragment's first row, a fragment with
 * no rows, a negative BBIdx delta, cold fragments' skew), and each refusal
 * naming its field. Every expected value below is derived by hand from the
 * bytes written next to it; only LEB128 encoding is done by code.
 */
#include <string.h>

#include "bat_note.h"
#include "elf/bat.h"
#include "check.h"

/*
 * The descriptor, output addresses running through it:
 *
 * hot A at 0x1000 (Address delta 0x1000), FuncHash 0x1122334455667788,
 *   NumBlocks 3, one secondary entry point, 4 rows, EqualElems 2, mask 0b10:
 *     r0 out 0 (delta 0)  in 0    block   [equal]  hash 0xa0, BBIdx +0 -> 0
 *     r1 out 5 (delta 5)  in 5    branch  [equal]
 *     r2 out 8 (delta 3)  in 0x20 block   value 0x40 - 0x0b = +0x35, hash 0xa2, +2 -> 2
 *     r3 out 8 (delta 0)  in 0x10 block   value 0x20 - 0x40 = -0x20, hash 0xa1, -1 -> 1
 *   secondary entry: +0x10
 * hot B at 0x1040 (delta 0x1040 - 0x1008 = 0x38), no rows, EqualElems 0
 * cold C at 0x2000 (delta 0xfc0), HotIndex +0 -> A, Skew 0x30, 3 rows,
 *   EqualElems 1, mask 0:
 *     r0 out 0 (delta 0)  in 0x30 block   [equal: 0 + skew]  hash 0xc0, +4 -> 4
 *     r1 out 6 (delta 6)  in 0x36 branch  value 0x6d - 0x60 = +0x0d
 *     r2 out 9 (delta 3)  in 0x40 block   value 0x80 - 0x6d = +0x13, hash 0xc2, +1 -> 5
 */
static void descriptor(struct buf *d, uint64_t cold_hot_index)
{
	uleb(d, 2);					/* hot NumFuncs */
	uleb(d, 0x1000); u64le(d, 0x1122334455667788ull); uleb(d, 3); uleb(d, 1);
	uleb(d, 4); uleb(d, 2); byte(d, 0x02);
	uleb(d, 0); u64le(d, 0xa0); uleb(d, 0);		/* r0 */
	uleb(d, 5);					/* r1 */
	uleb(d, 3); sleb(d, 0x35); u64le(d, 0xa2); uleb(d, 2); /* r2 */
	uleb(d, 0); sleb(d, -0x20); u64le(d, 0xa1); uleb(d, UINT64_MAX); /* r3 */
	uleb(d, 0x10);					/* secondary entry */
	uleb(d, 0x38); u64le(d, 0xb); uleb(d, 1); uleb(d, 0); uleb(d, 0); uleb(d, 0); /* B */
	uleb(d, 1);					/* cold NumFuncs */
	uleb(d, 0xfc0); uleb(d, cold_hot_index); uleb(d, 0x30);
	uleb(d, 3); uleb(d, 1); byte(d, 0x00);
	uleb(d, 0); u64le(d, 0xc0); uleb(d, 4);		/* r0 */
	uleb(d, 6); sleb(d, 0x0d);			/* r1 */
	uleb(d, 3); sleb(d, 0x13); u64le(d, 0xc2); uleb(d, 1); /* r2 */
}

static void check_good(void)
{
	struct buf d = { .n = 0 }, o;
	descriptor(&d, 0);
	note(&o, &d, 1);
	struct elf_bat *bat = NULL;
	struct core_err err = { 0 };
	expect(elf_bat_parse(o.b, o.n, "hand", &bat, &err) == 0, "%s", err.msg);
	if (!bat)
		return;
	expect(bat->nfrags == 3 && bat->nhot == 2 && bat->nentries == 7 && bat->neps == 1,
	       "%zu fragments, %zu hot, %zu rows, %zu entry points", bat->nfrags, bat->nhot,
	       bat->nentries, bat->neps);
	const struct elf_bat_frag *a = &bat->frags[0], *b = &bat->frags[1], *c = &bat->frags[2];
	expect(a->addr == 0x1000 && a->hash == 0x1122334455667788ull && a->nblocks == 3 && a->n == 4 &&
	       a->nep == 1 && bat->eps[a->first_ep] == 0x10, "A");
	expect(b->addr == 0x1040 && b->n == 0 && b->hot == 1, "B");
	expect(c->addr == 0x2000 && c->hot == 0 && c->skew == 0x30 && c->n == 3, "C");
	/* Sizes without symbols: up to the next fragment; C, the last, just
	 * past its highest row (9 + 1). */
	expect(a->size == 0x40 && b->size == 0xfc0 && c->size == 10, "sizes %llx %llx %llx",
	       (unsigned long long)a->size, (unsigned long long)b->size, (unsigned long long)c->size);
	static const struct { uint32_t out, in; uint8_t branch; uint32_t bb; uint64_t hash; } rows[] = {
		{ 0, 0, 0, 0, 0xa0 }, { 5, 5, 1, 0, 0 }, { 8, 0x20, 0, 2, 0xa2 }, { 8, 0x10, 0, 1, 0xa1 },
		{ 0, 0x30, 0, 4, 0xc0 }, { 6, 0x36, 1, 0, 0 }, { 9, 0x40, 0, 5, 0xc2 },
	};
	for (size_t i = 0; i < 7; i++) {
		const struct elf_bat_entry *e = &bat->entries[i];
		expect(e->out == rows[i].out && e->in == rows[i].in && e->branch == rows[i].branch &&
		       (e->branch || (e->bb_index == rows[i].bb && e->bb_hash == rows[i].hash)),
		       "row %zu: %x -> %x branch %u bb %u hash %llx", i, e->out, e->in, e->branch,
		       e->bb_index, (unsigned long long)e->bb_hash);
	}
	uint64_t y;
	/* Nothing bound yet: inside fragments is "unbound", not original. */
	expect(elf_bat_translate(bat, 0x1003, &y) == ELF_BAT_UNBOUND && y == 0x1003, "unbound");
	bat->frags[0].in_func = 0, bat->frags[0].in_addr = 0x400000;
	bat->frags[1].in_func = 1, bat->frags[1].in_addr = 0x500000;
	bat->frags[2].in_func = 0, bat->frags[2].in_addr = 0x400000;
	static const struct { uint64_t out; int r; uint64_t in, src; } cases[] = {
		{ 0x0fff, ELF_BAT_NOT_MOVED, 0x0fff, 0x0fff },	   /* below every fragment */
		{ 0x1000, ELF_BAT_TRANSLATED, 0x400000, 0x400000 }, /* r0 */
		{ 0x1003, ELF_BAT_TRANSLATED, 0x400003, 0x400000 }, /* r0 + 3 */
		{ 0x1005, ELF_BAT_TRANSLATED, 0x400005, 0x400005 }, /* r1, a branch */
		{ 0x1007, ELF_BAT_TRANSLATED, 0x400007, 0x400005 }, /* r1 + 2 */
		{ 0x1008, ELF_BAT_TRANSLATED, 0x400010, 0x400010 }, /* r2 and r3 share 8: r3 */
		{ 0x100a, ELF_BAT_TRANSLATED, 0x400012, 0x400010 }, /* r3 + 2 */
		{ 0x103f, ELF_BAT_TRANSLATED, 0x400047, 0x400010 }, /* r3 + 0x37, A's last byte */
		{ 0x1050, ELF_BAT_TRANSLATED, 0x500010, 0x500010 }, /* B has no row: offset 0x10 */
		{ 0x2000, ELF_BAT_TRANSLATED, 0x400030, 0x400030 }, /* C r0: skew */
		{ 0x2007, ELF_BAT_TRANSLATED, 0x400037, 0x400036 }, /* C r1 + 1 */
		{ 0x2009, ELF_BAT_TRANSLATED, 0x400040, 0x400040 }, /* C r2 */
		{ 0x200a, ELF_BAT_NOT_MOVED, 0x200a, 0x200a },	   /* past C */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		uint64_t s;
		int r = elf_bat_translate(bat, cases[i].out, &y), rs = elf_bat_translate_src(bat, cases[i].out, &s);
		expect(r == cases[i].r && rs == cases[i].r && y == cases[i].in && s == cases[i].src,
		       "0x%llx: %d 0x%llx, src %d 0x%llx", (unsigned long long)cases[i].out, r,
		       (unsigned long long)y, rs, (unsigned long long)s);
	}
	elf_bat_free(bat);
}

/* A damaged copy of the good note must be refused naming `field`. */
static void refused(const struct buf *o, const char *field, const char *why)
{
	struct elf_bat *bat = NULL;
	struct core_err err = { 0 };
	int rc = elf_bat_parse(o->b, o->n, "bad.bolt", &bat, &err);
	expect(rc == OCOLOS_EELF && !bat && strstr(err.msg, "'bad.bolt'") && strstr(err.msg, field),
	       "%s: rc %d, %s", why, rc, err.msg);
	elf_bat_free(bat);
}

static void check_bad(void)
{
	struct buf d = { .n = 0 }, o;
	descriptor(&d, 0);
	note(&o, &d, 2);
	refused(&o, "note type", "type 2");
	note(&o, &d, 1);
	memcpy(o.b + 12, "BOLU", 4);
	refused(&o, "note name", "name BOLU");
	note(&o, &d, 1);
	o.b[4]++; /* descsz one past the section */
	refused(&o, "descriptor size", "descsz too large");
	note(&o, &d, 1);
	o.b[o.n++] = 0; /* and the byte the descsz now covers */
	o.b[4]++;
	refused(&o, "bytes left", "trailing byte");
	d.n = 0;
	descriptor(&d, 2); /* HotIndex 2: no such hot fragment */
	note(&o, &d, 1);
	refused(&o, "HotIndex", "HotIndex past the hot table");
	d.n = 0;
	uleb(&d, UINT64_MAX);
	note(&o, &d, 1);
	refused(&o, "hot NumFuncs", "huge NumFuncs");
	d.n = 0;
	for (int i = 0; i < 10; i++)
		byte(&d, 0x80);
	byte(&d, 0);
	note(&o, &d, 1);
	refused(&o, "wider than 64 bits", "11-byte ULEB128");
	d.n = 0; /* one hot fragment, EqualElems 2 > NumEntries 1 */
	uleb(&d, 1); uleb(&d, 0x1000); u64le(&d, 0); uleb(&d, 1); uleb(&d, 0); uleb(&d, 1); uleb(&d, 2);
	note(&o, &d, 1);
	refused(&o, "EqualElems", "EqualElems > NumEntries");
	d.n = 0; /* rows at 4, then 4 - 2 (a wrapping delta) */
	uleb(&d, 1); uleb(&d, 0x1000); u64le(&d, 0); uleb(&d, 1); uleb(&d, 0); uleb(&d, 2); uleb(&d, 0);
	uleb(&d, 4); sleb(&d, 0); u64le(&d, 0); uleb(&d, 0);
	uleb(&d, UINT64_MAX - 1); sleb(&d, 2); u64le(&d, 0); uleb(&d, 0);
	uleb(&d, 0);
	note(&o, &d, 1);
	refused(&o, "before the previous one", "rows out of order");
	d.n = 0; /* an input offset of 2^32 */
	uleb(&d, 1); uleb(&d, 0x1000); u64le(&d, 0); uleb(&d, 1); uleb(&d, 0); uleb(&d, 1); uleb(&d, 0);
	uleb(&d, 0); sleb(&d, (int64_t)1 << 33);
	note(&o, &d, 1);
	refused(&o, "InputDelta", "input offset 2^32");
	/* No function at all: valid, translates nothing. */
	d.n = 0;
	uleb(&d, 0);
	uleb(&d, 0);
	note(&o, &d, 1);
	struct elf_bat *bat = NULL;
	struct core_err err = { 0 };
	uint64_t y;
	expect(elf_bat_parse(o.b, o.n, "empty", &bat, &err) == 0 && bat && bat->nfrags == 0 &&
	       elf_bat_translate(bat, 0x1000, &y) == ELF_BAT_NOT_MOVED && y == 0x1000, "empty: %s", err.msg);
	elf_bat_free(bat);
	/* Every cut of the good descriptor is refused. */
	d.n = 0;
	descriptor(&d, 0);
	size_t cuts = 0;
	for (size_t len = 0; len < d.n; len++) {
		struct buf c = d;
		c.n = len;
		note(&o, &c, 1);
		bat = NULL;
		cuts += elf_bat_parse(o.b, o.n, "cut", &bat, &err) == OCOLOS_EELF;
		elf_bat_free(bat);
	}
	expect(cuts == d.n, "%zu of %zu cuts refused", cuts, d.n);
}

int main(void)
{
	check_good();
	check_bad();
	test_done();
}

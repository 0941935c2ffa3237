/*
 * infer/bat_translate.c: a sample set taken in a process running optimized
 * code, rewritten to original addresses. The BAT is a hand-made note
 * (bytes and meaning below), bound by hand; every expected address is
 * derived by hand in the table next to it.
 */
#include <string.h>

#include "bat_note.h"
#include "infer/bat_translate.h"
#include "check.h"

#define B0 0x555555554000ull	      /* C0's load bias (a PIE) */
#define BK B0			      /* C_k: BOLT was given reservation - B0 */
#define BK1 (B0 + 0x100000ull)	      /* an older version, mapped elsewhere */

/*
 * hot H at 0x4001000, 3 rows, EqualElems 1:
 *   r0 out 0    in 0     block  [equal]
 *   r1 out 0x10 in 0x30  block  value 0x60 - 0 = +0x60
 *   r2 out 0x14 in 0x38  branch value 0x71 - 0x60 = +0x11
 * cold C at 0x4002000 (delta 0x4002000 - 0x4001014 = 0xfec), HotIndex 0,
 *   Skew 0x50, 1 row: r0 out 0 in 0x50 block [equal]
 * Both bound to the input function at 0x1200; H sized 0x20, C 0x20.
 */
static struct elf_bat *make_bat(void)
{
	struct buf d = { .n = 0 }, o;
	uleb(&d, 1);
	uleb(&d, 0x4001000); u64le(&d, 0); uleb(&d, 2); uleb(&d, 0);
	uleb(&d, 3); uleb(&d, 1); byte(&d, 0);
	uleb(&d, 0); u64le(&d, 0); uleb(&d, 0);
	uleb(&d, 0x10); sleb(&d, 0x60); u64le(&d, 0); uleb(&d, 1);
	uleb(&d, 4); sleb(&d, 0x11);
	uleb(&d, 1);
	uleb(&d, 0xfec); uleb(&d, 0); uleb(&d, 0x50);
	uleb(&d, 1); uleb(&d, 1); byte(&d, 0);
	uleb(&d, 0); u64le(&d, 0); uleb(&d, 0);
	note(&o, &d, 1);
	struct elf_bat *bat = NULL;
	struct core_err err = { 0 };
	expect(elf_bat_parse(o.b, o.n, "hand", &bat, &err) == 0 && bat && bat->nfrags == 2, "%s", err.msg);
	if (!bat)
		return NULL;
	for (size_t k = 0; k < 2; k++) {
		bat->frags[k].in_func = 0;
		bat->frags[k].in_addr = 0x1200;
		bat->frags[k].size = 0x20;
	}
	return bat;
}

int main(void)
{
	struct elf_bat *bat = make_bat();
	if (!bat)
		test_done();
	const struct infer_range rk[] = { { BK + 0x4001000, BK + 0x4003000 } };
	const struct infer_range rk1[] = { { BK1 + 0x4001000, BK1 + 0x4001020 } };
	const struct infer_bat_code codes[] = { { bat, rk, 1, BK }, { bat, rk1, 1, BK1 } };
	static const struct { uint64_t ip, want; } ips[] = {
		{ BK + 0x4001004, B0 + 0x1204 },     /* H +4: r0 + 4 */
		{ BK + 0x4001012, B0 + 0x1232 },     /* H +0x12: r1 + 2 */
		{ BK + 0x4002003, B0 + 0x1253 },     /* C +3: skew 0x50 + 3 */
		{ BK + 0x4001800, BK + 0x4001800 },  /* in C_k, in no fragment: left */
		{ B0 + 0x1204, B0 + 0x1204 },	     /* C0: left */
		{ 0x7f0000001000ull, 0x7f0000001000ull }, /* a library: left */
		{ BK1 + 0x4001016, B0 + 0x123a },    /* the older version, H +0x16: r2 + 2 */
		{ BK1 + 0x4002000, BK1 + 0x4002000 }, /* past the older version's range: left */
	};
	struct sample_set s = { 0 };
	for (size_t i = 0; i < sizeof(ips) / sizeof(*ips); i++)
		sample_set_push(&s, ips[i].ip);
	/* One branch stack: a source in H past its branch row (a source takes
	 * the row's own input offset, 0x38, not 0x3a), a target in C; a C0
	 * source into H's entry. */
	struct sample_branch br[] = { { BK + 0x4001016, BK + 0x4002000 }, { B0 + 0x1300, BK + 0x4001000 } };
	size_t start = 0;
	s.branches = br;
	s.nbranches = 2;
	s.stack_start = &start;
	s.nstacks = 1;
	struct infer_bat_stats st;
	struct core_err err = { 0 };
	expect(infer_bat_translate_samples(&s, codes, 2, B0, &st, &err) == 0, "%s", err.msg);
	for (size_t i = 0; i < sizeof(ips) / sizeof(*ips); i++)
		expect(s.ips[i] == ips[i].want, "ip %zu: 0x%llx, want 0x%llx", i,
		       (unsigned long long)s.ips[i], (unsigned long long)ips[i].want);
	expect(br[0].from == B0 + 0x1238 && br[0].to == B0 + 0x1250 && br[1].from == B0 + 0x1300 &&
	       br[1].to == B0 + 0x1200, "branches 0x%llx->0x%llx, 0x%llx->0x%llx",
	       (unsigned long long)br[0].from, (unsigned long long)br[0].to,
	       (unsigned long long)br[1].from, (unsigned long long)br[1].to);
	expect(st.ips_translated == 4 && st.ips_untranslated == 1 && st.ends_translated == 3 &&
	       st.ends_untranslated == 0, "stats %llu %llu %llu %llu",
	       (unsigned long long)st.ips_translated, (unsigned long long)st.ips_untranslated,
	       (unsigned long long)st.ends_translated, (unsigned long long)st.ends_untranslated);
	s.branches = NULL; /* not ours to free */
	s.stack_start = NULL;
	s.nbranches = s.nstacks = 0;

	/* Link-time output (c0_bias 0), and an unbound function: its samples
	 * are left and counted. */
	struct sample_set t = { 0 };
	sample_set_push(&t, BK + 0x4001004);
	expect(infer_bat_translate_samples(&t, codes, 1, 0, &st, &err) == 0 && t.ips[0] == 0x1204,
	       "link-time: 0x%llx", (unsigned long long)t.ips[0]);
	bat->frags[0].in_func = bat->frags[1].in_func = -1;
	t.ips[0] = BK + 0x4001004;
	expect(infer_bat_translate_samples(&t, codes, 1, B0, &st, &err) == 0 &&
	       t.ips[0] == BK + 0x4001004 && st.ips_untranslated == 1 && st.ips_translated == 0,
	       "unbound: 0x%llx", (unsigned long long)t.ips[0]);

	/* Bad arguments. */
	const struct infer_range empty[] = { { 5, 5 } };
	const struct infer_bat_code bad[] = { { NULL, rk, 1, BK }, { bat, empty, 1, BK } };
	expect(infer_bat_translate_samples(&t, &bad[0], 1, B0, NULL, &err) == OCOLOS_EINVAL, "no BAT");
	expect(infer_bat_translate_samples(&t, &bad[1], 1, B0, NULL, &err) == OCOLOS_EINVAL, "empty range");
	sample_set_free(&t);
	sample_set_free(&s);
	elf_bat_free(bat);
	test_done();
}

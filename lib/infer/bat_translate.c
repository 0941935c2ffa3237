/*
 * Samples in optimized code back to the original binary (see
 * bat_translate.h). One lookup per address: the ranges of each code
 * version (a handful), then the BAT's own O(log n) search.
 *
 * Why branch sources are translated differently from everything else:
 * BOLT's translate() gives a sample the input offset of the nearest table
 * row at or before it plus the distance from that row, but a branch source
 * the row's input offset itself (the branch instruction when BOLT kept it,
 * else the start of its block), "to avoid accounting for modifications
 * BOLT may have made in the block". A profile written from the result must
 * name the branches perf2bolt would name from the same records, so both
 * follow BOLT.
 */
#include "infer/bat_translate.h"

/* The code whose ranges hold `a`, or NULL. */
static const struct infer_bat_code *code_of(const struct infer_bat_code *codes, size_t ncodes,
					     uint64_t a)
{
	for (size_t i = 0; i < ncodes; i++)
		for (size_t r = 0; r < codes[i].nranges; r++)
			if (a >= codes[i].ranges[r].lo && a < codes[i].ranges[r].hi)
				return &codes[i];
	return NULL;
}

/* Rewrite *a when it lies in optimized code. 1 translated, 0 left (in
 * optimized code), -1 not in optimized code. */
static int rewrite(const struct infer_bat_code *codes, size_t ncodes, uint64_t c0_bias,
		   int branch_src, uint64_t *a)
{
	const struct infer_bat_code *c = code_of(codes, ncodes, *a);
	if (!c)
		return -1;
	uint64_t in;
	int r = branch_src ? elf_bat_translate_src(c->bat, *a - c->bias, &in)
			   : elf_bat_translate(c->bat, *a - c->bias, &in);
	if (r != ELF_BAT_TRANSLATED)
		return 0;
	*a = in + c0_bias;
	return 1;
}

int infer_bat_translate_samples(struct sample_set *s, const struct infer_bat_code *codes,
				size_t ncodes, uint64_t c0_bias, struct infer_bat_stats *st,
				struct core_err *err)
{
	struct infer_bat_stats local;
	if (!st)
		st = &local;
	*st = (struct infer_bat_stats){ 0 };
	for (size_t i = 0; i < ncodes; i++) {
		if (!codes[i].bat)
			return core_errf(err, OCOLOS_EINVAL, "internal: optimized code #%zu has no BAT", i);
		for (size_t r = 0; r < codes[i].nranges; r++)
			if (codes[i].ranges[r].lo >= codes[i].ranges[r].hi)
				return core_errf(err, OCOLOS_EINVAL,
						 "internal: empty range [0x%llx, 0x%llx) of optimized code #%zu",
						 (unsigned long long)codes[i].ranges[r].lo,
						 (unsigned long long)codes[i].ranges[r].hi, i);
	}
	for (size_t i = 0; i < s->n; i++) {
		int r = rewrite(codes, ncodes, c0_bias, 0, &s->ips[i]);
		st->ips_translated += r == 1;
		st->ips_untranslated += r == 0;
	}
	for (size_t i = 0; i < s->nbranches; i++) {
		int r = rewrite(codes, ncodes, c0_bias, 1, &s->branches[i].from);
		int t = rewrite(codes, ncodes, c0_bias, 0, &s->branches[i].to);
		st->ends_translated += (r == 1) + (t == 1);
		st->ends_untranslated += (r == 0) + (t == 0);
	}
	return 0;
}

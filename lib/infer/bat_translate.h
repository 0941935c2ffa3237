/*
 * Samples taken in optimized code, back in terms of the original binary.
 * A process that already runs optimized code (C_k, mapped from BOLT's
 * output) is sampled where it runs; BOLT re-optimizes only the original
 * binary (C0), so before a profile is written every sample in C_k is
 * rewritten, through the BAT of the output C_k came from (elf/bat.h), to
 * the C0 address it was moved from. Samples elsewhere (C0, libraries, the
 * kernel) are left alone, and the profile writers (profile.h, hybrid.h)
 * then work on the original CFG unchanged.
 *
 * This file does not know how a round finds C_k's mappings or keeps its
 * BAT; the caller passes both. Nothing here acts on a process.
 */
#ifndef OCOLOS_INFER_BAT_TRANSLATE_H
#define OCOLOS_INFER_BAT_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "elf/bat.h"
#include "sample/sample.h"

/* A run-time address range [lo, hi). */
struct infer_range {
	uint64_t lo, hi;
};

/* One version of optimized code in the process. */
struct infer_bat_code {
	const struct elf_bat *bat;	   /* of the BOLT output it was mapped
					      from, bound to C0 (elf_bat_open
					      with C0's model); not owned */
	const struct infer_range *ranges;  /* where it is mapped, run-time */
	size_t nranges;
	uint64_t bias;			   /* its run-time minus link-time
					      address (for a round's C_k: the
					      reservation minus the address BOLT
					      was given, i.e. C0's load bias) */
};

struct infer_bat_stats {
	uint64_t ips_translated;	/* IPs in optimized code, rewritten */
	uint64_t ips_untranslated;	/* IPs in optimized code left as they
					   were: in no BAT fragment (e.g. BOLT's
					   stubs) or in a function not bound */
	uint64_t ends_translated;	/* branch sources and targets rewritten */
	uint64_t ends_untranslated;	/* ... in optimized code, left */
};

/*
 * Rewrite, in place, every IP of `s` and every end of its branch stacks
 * that lies in one of codes[0 .. ncodes)'s ranges to the C0 address it
 * came from, as a run-time address: C0 link-time address + `c0_bias` (the
 * bias the profile writer will be given; 0 gives link-time addresses).
 * IPs and branch targets are translated as BOLT's perf2bolt translates
 * samples and targets (elf_bat_translate), branch sources as it
 * translates sources (elf_bat_translate_src). Everything outside the
 * ranges is left unchanged. An address in a range that cannot be
 * translated is left unchanged too and counted: it is not in C0's image
 * (optimized code is mapped outside it), so the writers drop it like any
 * foreign address. `st` may be NULL. 0, or OCOLOS_EINVAL (a code without
 * a BAT, an empty or inverted range).
 */
int infer_bat_translate_samples(struct sample_set *s, const struct infer_bat_code *codes,
				size_t ncodes, uint64_t c0_bias, struct infer_bat_stats *st,
				struct core_err *err);

#endif

/*
 * What both BOLT oracle tests (test_bolt_oracle.c: BOLT 22;
 * test_bolt19_placed.c: BOLT 19) hand BOLT for the unit fixture: synthetic
 * samples on every byte of its hot functions, and the run-time address
 * asked for C1.
 */
#ifndef OCOLOS_TEST_ORACLE_INPUT_H
#define OCOLOS_TEST_ORACLE_INPUT_H

#include <string.h>

#include "elf/binary.h"
#include "sample/sample.h"

/* Every byte of fx_hot, fx_leaf, fx_mid, fx_tail and fx_local 20 times
 * (so BOLT profiles exactly these 5), plus one IP outside the binary,
 * which the profile writer must drop. */
static inline void oracle_samples(const struct elf_binary *b, struct sample_set *s)
{
	static const char *const hot[] = { "fx_hot", "fx_leaf", "fx_mid", "fx_tail", "fx_local",
					   NULL };
	for (size_t i = 0; i < b->nfuncs; i++)
		for (int k = 0; hot[k]; k++)
			if (!strcmp(b->funcs[i].name, hot[k]))
				for (uint64_t off = 0; off < b->funcs[i].size; off++)
					for (int rep = 0; rep < 20; rep++)
						sample_set_push(s, b->funcs[i].addr + off);
	sample_set_push(s, 0x10);
}

/* 64 MiB past the image, rounded down to 2 MiB. */
static inline uint64_t oracle_vma(const struct elf_binary *b)
{
	return (b->img_hi + (64ull << 20)) & ~((2ull << 20) - 1);
}

#endif

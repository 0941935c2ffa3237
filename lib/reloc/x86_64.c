/* x86-64 branch encoding: rel32 of call/jmp, and the ±2 GiB reach rule. */
#include <string.h>

#include "reloc/reloc.h"

uint64_t reloc_x86_branch_target(uint64_t site, const uint8_t insn[5])
{
	int32_t rel;
	memcpy(&rel, insn + 1, 4);
	return site + RELOC_X86_BRANCH_LEN + (uint64_t)(int64_t)rel;
}

int reloc_x86_encode_rel32(uint64_t site, uint64_t target, uint8_t rel32[4])
{
	int64_t d = (int64_t)(target - (site + RELOC_X86_BRANCH_LEN));
	if (d < INT32_MIN || d > INT32_MAX)
		return -1;
	int32_t r = (int32_t)d;
	memcpy(rel32, &r, 4);
	return 0;
}

int reloc_x86_in_reach(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2)
{
	/* The farthest pairs are the outer ends of the two ranges. */
	uint64_t a = lo < lo2 ? lo : lo2;
	uint64_t b = hi > hi2 ? hi : hi2;
	return b - a <= (uint64_t)INT32_MAX;
}

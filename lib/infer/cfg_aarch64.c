/*
 * AArch64 instruction classifier for the CFG builder (cfg.h). Instructions
 * are 4 bytes, little-endian, so a small decoder of the branch encodings is
 * all a CFG needs (Arm ARM, "Branches, Exception Generating and System
 * instructions"): B, BL, B.cond/BC.cond, CBZ/CBNZ, TBZ/TBNZ, BR/BLR/RET and
 * their pointer-authenticating forms, BRK/HLT/UDF. Everything else falls
 * through. Pure byte decoding: builds and runs on any host.
 */
#include <stdlib.h>

#include "infer/cfg.h"

/* Sign-extend the low `bits` bits of `v`, scaled by 4 (branch offsets are
 * in instructions). */
static uint64_t branch_off(uint32_t v, unsigned bits)
{
	int64_t x = (int64_t)((uint64_t)v << (64 - bits)) >> (64 - bits);
	return (uint64_t)(x * 4);
}

/* Branch (register): bits 31..25 = 1101011, opc in bits 24..21. */
static uint8_t classify_reg_branch(uint32_t w)
{
	switch ((w >> 21) & 0xf) {
	case 0x0: case 0x8: return CFG_INSN_IJUMP; /* BR, BRAA(Z)/BRAB(Z) */
	case 0x1: case 0x9: return CFG_INSN_ICALL; /* BLR, BLRAA(Z)/BLRAB(Z) */
	case 0x2: return CFG_INSN_RET;		   /* RET, RETAA/RETAB */
	case 0x4: case 0x5: return CFG_INSN_RET;   /* ERET, DRPS: leave too */
	default: return CFG_INSN_OTHER;
	}
}

static uint8_t classify(uint32_t w, uint64_t pc, uint64_t *target)
{
	*target = 0;
	if ((w & 0x7c000000) == 0x14000000) {		/* B / BL imm26 */
		*target = pc + branch_off(w & 0x3ffffff, 26);
		return (w >> 31) ? CFG_INSN_CALL : CFG_INSN_JUMP;
	}
	if ((w & 0xff000000) == 0x54000000) {		/* B.cond / BC.cond imm19 */
		*target = pc + branch_off((w >> 5) & 0x7ffff, 19);
		/* cond AL (1110) and NV (1111) always branch */
		return (w & 0xe) == 0xe ? CFG_INSN_JUMP : CFG_INSN_COND;
	}
	if ((w & 0x7e000000) == 0x34000000) {		/* CBZ / CBNZ imm19 */
		*target = pc + branch_off((w >> 5) & 0x7ffff, 19);
		return CFG_INSN_COND;
	}
	if ((w & 0x7e000000) == 0x36000000) {		/* TBZ / TBNZ imm14 */
		*target = pc + branch_off((w >> 5) & 0x3fff, 14);
		return CFG_INSN_COND;
	}
	if ((w & 0xfe000000) == 0xd6000000)
		return classify_reg_branch(w);
	if ((w & 0xffe0001f) == 0xd4200000 ||		/* BRK (__builtin_trap) */
	    (w & 0xffe0001f) == 0xd4400000 ||		/* HLT */
	    (w & 0xffff0000) == 0x00000000)		/* UDF */
		return CFG_INSN_TRAP;
	return CFG_INSN_OTHER;
}

int infer_cfg_decode_aarch64(const uint8_t *code, size_t len, uint64_t addr,
		       struct cfg_insn **insns, size_t *n, struct core_err *err)
{
	size_t cnt = len / 4;
	struct cfg_insn *v = malloc((cnt ? cnt : 1) * sizeof(*v));
	if (!v)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory decoding %zu bytes", len);
	for (size_t i = 0; i < cnt; i++) {
		const uint8_t *b = code + 4 * i; /* little-endian, whatever the host */
		uint32_t w = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
		v[i].addr = addr + 4 * i;
		v[i].len = 4;
		v[i].kind = classify(w, v[i].addr, &v[i].target);
	}
	*insns = v;
	*n = cnt;
	return 0;
}

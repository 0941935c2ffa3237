/*
 * AArch64 branches: decoding and re-encoding `BL imm26` / `B imm26` (the
 * instructions behind R_AARCH64_CALL26 / R_AARCH64_JUMP26), their +-128 MiB
 * reach, and the veneer used when a call site cannot reach C1 directly.
 * Encodings from the Arm ARM ("Unconditional branch (immediate)", ADRP,
 * ADD (immediate), BR). Instructions are little-endian words whatever the
 * host, so this builds and is unit-tested on x86-64 too.
 */
#include <string.h>

#include "arch/arch.h"

#define OP_MASK 0xfc000000u
#define OP_B 0x14000000u
#define OP_BL 0x94000000u
#define IMM26 0x03ffffffu

uint8_t arch_a64_branch_kind(uint32_t insn)
{
	uint32_t op = insn & OP_MASK;
	return op == OP_BL ? 0x94 : op == OP_B ? 0x14 : 0;
}

int arch_a64_call_reg(uint32_t insn)
{
	/* Arm ARM, "Unconditional branch (register)": BLR 0xd63f0000 | Rn<<5;
	 * BLRAAZ/BLRABZ 0xd63f081f/0xd63f0c1f | Rn<<5; BLRAA/BLRAB
	 * 0xd73f0800/0xd73f0c00 | Rn<<5 | Rm. */
	return (insn & 0xfffffc1fu) == 0xd63f0000u || (insn & 0xfffff81fu) == 0xd63f081fu ||
	       (insn & 0xfffff800u) == 0xd73f0800u;
}

uint64_t arch_a64_branch_target(uint64_t site, uint32_t insn)
{
	int64_t imm = (int64_t)((uint64_t)(insn & IMM26) << 38) >> 38; /* sign-extend 26 bits */
	return site + (uint64_t)(imm * 4);
}

int arch_a64_encode_branch(uint64_t site, uint32_t insn, uint64_t target, uint32_t *out)
{
	int64_t d = (int64_t)(target - site);
	if ((d & 3) || d < -(int64_t)ARCH_A64_BRANCH_REACH || d >= (int64_t)ARCH_A64_BRANCH_REACH)
		return -1;
	*out = (insn & OP_MASK) | ((uint32_t)(d >> 2) & IMM26);
	return 0;
}

int arch_a64_encode_b(uint64_t site, uint64_t target, uint32_t *out)
{
	return arch_a64_encode_branch(site, OP_B, target, out);
}

int arch_a64_landing_pad(uint32_t insn)
{
	/* BTI {, c, j, jc} = HINT #32/#34/#36/#38; PACIASP = HINT #25,
	 * PACIBSP = HINT #27 (Arm ARM, "Hints"). */
	return (insn & 0xffffff3fu) == 0xd503241fu || insn == 0xd503233fu || insn == 0xd503237fu;
}

int arch_a64_entry_word(const uint8_t *code, uint64_t len)
{
	if (len < 4)
		return -1;
	uint32_t w = code[0] | (uint32_t)code[1] << 8 | (uint32_t)code[2] << 16 |
		     (uint32_t)code[3] << 24;
	if (!arch_a64_landing_pad(w))
		return 0;
	return len >= 8 ? 4 : -1;
}

int arch_a64_in_reach(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2)
{
	/* The farthest pairs are the outer ends of the two ranges. */
	uint64_t a = lo < lo2 ? lo : lo2;
	uint64_t b = hi > hi2 ? hi : hi2;
	return b - a < ARCH_A64_BRANCH_REACH;
}

int arch_a64_adr_target(uint64_t pc, uint32_t insn, uint64_t *target)
{
	if ((insn & 0x9f000000u) != 0x10000000u) /* ADR: op=0, bits 28:24 = 10000 */
		return 0;
	uint64_t imm = ((insn >> 5) & 0x7ffffu) << 2 | ((insn >> 29) & 3u); /* immhi:immlo */
	*target = pc + (uint64_t)((int64_t)(imm << 43) >> 43);	/* sign-extend 21 bits */
	return 1;
}

int arch_a64_adrp_page(uint64_t pc, uint32_t insn, uint64_t *page)
{
	if ((insn & 0x9f000000u) != 0x90000000u) /* ADRP: op=1, bits 28:24 = 10000 */
		return 0;
	uint64_t imm = ((insn >> 5) & 0x7ffffu) << 2 | ((insn >> 29) & 3u); /* immhi:immlo */
	*page = (pc & ~0xfffull) + (uint64_t)(((int64_t)(imm << 43) >> 43) * 4096);
	return 1;
}

int arch_a64_is_add_lo12(uint32_t insn)
{
	return (insn & 0xffc00000u) == 0x91000000u; /* sf=1 op=0 S=0 100010 sh=0 */
}

int arch_a64_ldr_literal(uint64_t pc, uint32_t insn, uint64_t *lit)
{
	if ((insn & 0xff000000u) != 0x58000000u) /* LDR (literal), opc=01: 64-bit */
		return 0;
	*lit = pc + (uint64_t)((int64_t)((uint64_t)((insn >> 5) & 0x7ffffu) << 45) >> 43);
	return 1;
}

size_t arch_a64_scan_function(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, void (*on_address)(uint64_t addr, void *user),
			       void *user)
{
	size_t off = 0;
	for (; off + 4 <= len; off += 4) {
		const uint8_t *b = code + off; /* little-endian, whatever the host */
		uint32_t w = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
		uint8_t op = arch_a64_branch_kind(w);
		uint64_t t;
		if (op && fn && fn(addr + off, op, arch_a64_branch_target(addr + off, w), user))
			return off;
		if (on_address && arch_a64_adr_target(addr + off, w, &t))
			on_address(t, user);
	}
	return off;
}

size_t arch_a64_scan_branches(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, void *user)
{
	return arch_a64_scan_function(code, len, addr, fn, NULL, user);
}

static void put32(uint8_t *p, uint32_t w)
{
	p[0] = (uint8_t)w;
	p[1] = (uint8_t)(w >> 8);
	p[2] = (uint8_t)(w >> 16);
	p[3] = (uint8_t)(w >> 24);
}

int arch_a64_set_pcrel21(uint32_t insn, int64_t imm, uint32_t *out)
{
	if (imm < -(1ll << 20) || imm >= (1ll << 20))
		return -1;
	uint32_t v = (uint32_t)imm & 0x1fffffu; /* immlo (bits 30:29), immhi (23:5) */
	*out = (insn & 0x9f00001fu) | (v & 3u) << 29 | (v >> 2) << 5;
	return 0;
}

int arch_a64_encode_veneer(uint64_t at, uint64_t target, uint8_t out[ARCH_A64_VENEER_LEN])
{
	/* ADRP x16: page of target minus page of the instruction. */
	uint32_t adrp;
	if (arch_a64_set_pcrel21(0x90000000u | 16u,
				 (int64_t)((target & ~0xfffull) - (at & ~0xfffull)) / 4096, &adrp))
		return -1;
	uint32_t add = 0x91000000u | ((uint32_t)(target & 0xfff) << 10) | (16u << 5) | 16u;
	uint32_t br = 0xd61f0000u | (16u << 5);	/* BR x16 */
	uint32_t brk = 0xd4200000u;		/* BRK #0: never reached */
	put32(out, adrp);
	put32(out + 4, add);
	put32(out + 8, br);
	put32(out + 12, brk);
	return 0;
}

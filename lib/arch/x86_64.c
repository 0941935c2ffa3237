/*
 * x86-64 branches: rel32 of call/jmp, the ±2 GiB reach rule, and a linear
 * sweep (Zydis) that finds direct calls and jumps in a function's bytes.
 */
#include <string.h>
#ifdef OCOLOS_HAVE_ZYDIS
#include <Zydis/Zydis.h>
#endif

#include "arch/arch.h"

uint64_t arch_x86_branch_target(uint64_t site, const uint8_t insn[5])
{
	int32_t rel;
	memcpy(&rel, insn + 1, 4);
	return site + ARCH_X86_BRANCH_LEN + (uint64_t)(int64_t)rel;
}

int arch_x86_encode_rel32(uint64_t site, uint64_t target, uint8_t rel32[4])
{
	int64_t d = (int64_t)(target - (site + ARCH_X86_BRANCH_LEN));
	if (d < INT32_MIN || d > INT32_MAX)
		return -1;
	int32_t r = (int32_t)d;
	memcpy(rel32, &r, 4);
	return 0;
}

int arch_x86_in_reach(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2)
{
	/* The farthest pairs are the outer ends of the two ranges. */
	uint64_t a = lo < lo2 ? lo : lo2;
	uint64_t b = hi > hi2 ? hi : hi2;
	return b - a <= (uint64_t)INT32_MAX;
}

#ifndef OCOLOS_HAVE_ZYDIS
/* A build for another host (AArch64) has no x86 decoder: x86-64 binaries
 * are not optimized there, so nothing is decoded. */
size_t arch_x86_decode(const uint8_t *code, size_t len, uint64_t addr, arch_insn_fn fn,
		       void *user)
{
	(void)code; (void)len; (void)addr; (void)fn; (void)user;
	return 0;
}
#else
/* Relative branch target of a decoded instruction, if it has one. */
static uint64_t rel_target(const ZydisDecodedInstruction *in, uint64_t at)
{
	if (!(in->attributes & ZYDIS_ATTRIB_IS_RELATIVE) || !in->raw.imm[0].is_relative)
		return 0;
	return at + in->length + (uint64_t)in->raw.imm[0].value.s;
}

static uint8_t flow_of(const ZydisDecodedInstruction *in, uint64_t target)
{
	switch (in->meta.category) {
	case ZYDIS_CATEGORY_COND_BR:
		return target ? ARCH_FLOW_COND : ARCH_FLOW_IJUMP;
	case ZYDIS_CATEGORY_UNCOND_BR:
		return target ? ARCH_FLOW_JUMP : ARCH_FLOW_IJUMP;
	case ZYDIS_CATEGORY_CALL:
		return target ? ARCH_FLOW_CALL : ARCH_FLOW_ICALL;
	case ZYDIS_CATEGORY_RET:
		return ARCH_FLOW_RET;
	default:
		break;
	}
	/* ud2 (__builtin_trap), hlt and int3 (padding after a jump, SLS
	 * mitigation) never fall through. */
	if (in->mnemonic == ZYDIS_MNEMONIC_UD2 || in->mnemonic == ZYDIS_MNEMONIC_HLT ||
	    in->mnemonic == ZYDIS_MNEMONIC_INT3)
		return ARCH_FLOW_TRAP;
	return ARCH_FLOW_OTHER;
}

size_t arch_x86_decode(const uint8_t *code, size_t len, uint64_t addr, arch_insn_fn fn,
		       void *user)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	size_t off = 0;
	while (off < len) {
		ZydisDecodedInstruction in;
		if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &in)))
			break;
		struct arch_insn x = { .addr = addr + off, .len = in.length };
		x.target = rel_target(&in, x.addr);
		x.flow = flow_of(&in, x.target);
		if (x.flow != ARCH_FLOW_CALL && x.flow != ARCH_FLOW_COND && x.flow != ARCH_FLOW_JUMP)
			x.target = 0;
		if ((in.attributes & ZYDIS_ATTRIB_HAS_MODRM) && in.raw.modrm.mod == 0 &&
		    in.raw.modrm.rm == 5) /* [rip + disp32] */
			x.rip_ref = x.addr + in.length + (uint64_t)(int64_t)in.raw.disp.value;
		/* Plain e8/e9 only: a prefixed form (e.g. bnd jmp, f2 e9) has its
		 * rel32 elsewhere and is not redirected. */
		if (in.length == ARCH_X86_BRANCH_LEN && in.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT &&
		    (in.opcode == 0xe8 || in.opcode == 0xe9) && code[off] == in.opcode)
			x.rel32_opcode = in.opcode;
		if (fn(&x, user))
			return off;
		off += in.length;
	}
	return off;
}
#endif

struct sweep {
	arch_branch_fn fn;
	struct arch_entry_info *info;
	void *user;
	uint64_t start;
};

static int sweep_one(const struct arch_insn *x, void *p)
{
	struct sweep *sw = p;
	struct arch_entry_info *info = sw->info;
	if (info) {
		if ((x->flow == ARCH_FLOW_CALL || x->flow == ARCH_FLOW_ICALL) &&
		    x->addr - sw->start + x->len < ARCH_X86_BRANCH_LEN)
			info->call_in_entry = 1;
		if (x->flow == ARCH_FLOW_IJUMP) /* through a register or memory */
			info->indirect_jump = 1;
		if (info->on_target && x->target)
			info->on_target(x->target, sw->user);
		if (info->on_address && x->rip_ref)
			info->on_address(x->rip_ref, sw->user);
	}
	return x->rel32_opcode && sw->fn && sw->fn(x->addr, x->rel32_opcode, x->target, sw->user);
}

size_t arch_x86_scan_function(const uint8_t *code, size_t len, uint64_t addr,
			      arch_branch_fn fn, struct arch_entry_info *info, void *user)
{
	struct sweep sw = { fn, info, user, addr };
	size_t off = arch_x86_decode(code, len, addr, sweep_one, &sw);
	if (info)
		info->decoded_entry = off >= ARCH_X86_BRANCH_LEN;
	return off;
}

size_t arch_x86_scan_branches(const uint8_t *code, size_t len, uint64_t addr,
			      arch_branch_fn fn, void *user)
{
	return arch_x86_scan_function(code, len, addr, fn, NULL, user);
}

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
size_t arch_x86_scan_function(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, struct arch_entry_info *info, void *user)
{
	(void)code; (void)len; (void)addr; (void)fn; (void)user;
	if (info)
		info->indirect_jump = 1; /* nothing known: never patch an entry */
	return 0;
}
#else
/* Relative branch target of a decoded instruction, if it has one. */
static int rel_target(const ZydisDecodedInstruction *insn, uint64_t at, uint64_t *target)
{
	if (!(insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE) || !insn->raw.imm[0].is_relative)
		return 0;
	*target = at + insn->length + (uint64_t)insn->raw.imm[0].value.s;
	return 1;
}

size_t arch_x86_scan_function(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, struct arch_entry_info *info, void *user)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	size_t off = 0;
	while (off < len) {
		ZydisDecodedInstruction insn;
		if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &insn)))
			break;
		uint64_t at = addr + off, target;
		int is_call = insn.meta.category == ZYDIS_CATEGORY_CALL;
		if (info) {
			if (is_call && off + insn.length < ARCH_X86_BRANCH_LEN)
				info->call_in_entry = 1;
			if (insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR &&
			    !(insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE))
				info->indirect_jump = 1;
			if (info->on_target && rel_target(&insn, at, &target))
				info->on_target(target, user);
			if (info->on_address && (insn.attributes & ZYDIS_ATTRIB_HAS_MODRM) &&
			    insn.raw.modrm.mod == 0 && insn.raw.modrm.rm == 5) /* [rip + disp32] */
				info->on_address(at + insn.length + (uint64_t)(int64_t)insn.raw.disp.value,
						 user);
		}
		/* Plain e8/e9 only: a prefixed form (e.g. bnd jmp, f2 e9) has its
		 * rel32 elsewhere and is not redirected. */
		if (fn && insn.length == ARCH_X86_BRANCH_LEN && insn.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT &&
		    (insn.opcode == 0xe8 || insn.opcode == 0xe9) && code[off] == insn.opcode &&
		    fn(at, insn.opcode, arch_x86_branch_target(at, code + off), user))
			return off;
		off += insn.length;
	}
	if (info)
		info->decoded_entry = off >= ARCH_X86_BRANCH_LEN;
	return off;
}
#endif

size_t arch_x86_scan_branches(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, void *user)
{
	return arch_x86_scan_function(code, len, addr, fn, NULL, user);
}

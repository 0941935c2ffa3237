/*
 * x86-64 instruction classifier for the CFG builder (cfg.h): a linear sweep
 * with Zydis that says, for each instruction, whether and where it
 * transfers control. Block and edge construction is cfg.c's job.
 */
#include <stdlib.h>

#include "infer/cfg.h"

#ifndef OCOLOS_HAVE_ZYDIS
/* Built for another host (AArch64): no x86 decoder, no x86-64 CFGs. */
int infer_cfg_decode_x86(const uint8_t *code, size_t len, uint64_t addr,
		   struct cfg_insn **insns, size_t *n, struct core_err *err)
{
	(void)code; (void)len; (void)addr; (void)insns; (void)n;
	return core_errf(err, OCOLOS_ENOTSUP, "this libocolos was built without the x86-64 "
			 "decoder (Zydis): x86-64 binaries are optimized by an x86-64 build");
}
#else
#include <Zydis/Zydis.h>

/* Absolute target of a relative branch/call, or 0 when it has none. */
static uint64_t rel_target(const ZydisDecodedInstruction *in, uint64_t ip)
{
	if (!in->raw.imm[0].is_relative)
		return 0;
	return ip + in->length + (uint64_t)in->raw.imm[0].value.s;
}

static uint8_t classify(const ZydisDecodedInstruction *in, uint64_t ip, uint64_t *target)
{
	*target = rel_target(in, ip);
	switch (in->meta.category) {
	case ZYDIS_CATEGORY_COND_BR:
		return *target ? CFG_INSN_COND : CFG_INSN_IJUMP;
	case ZYDIS_CATEGORY_UNCOND_BR:
		return *target ? CFG_INSN_JUMP : CFG_INSN_IJUMP;
	case ZYDIS_CATEGORY_CALL:
		return *target ? CFG_INSN_CALL : CFG_INSN_ICALL;
	case ZYDIS_CATEGORY_RET:
		return CFG_INSN_RET;
	default:
		break;
	}
	*target = 0;
	/* ud2 (__builtin_trap), hlt and int3 (padding after a jump, SLS
	 * mitigation) never fall through. */
	if (in->mnemonic == ZYDIS_MNEMONIC_UD2 || in->mnemonic == ZYDIS_MNEMONIC_HLT ||
	    in->mnemonic == ZYDIS_MNEMONIC_INT3)
		return CFG_INSN_TRAP;
	return CFG_INSN_OTHER;
}

int infer_cfg_decode_x86(const uint8_t *code, size_t len, uint64_t addr,
		   struct cfg_insn **insns, size_t *n, struct core_err *err)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	/* Every x86 instruction is at least one byte: len bounds the count. */
	struct cfg_insn *v = malloc((len ? len : 1) * sizeof(*v));
	if (!v)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory decoding %zu bytes", len);
	size_t k = 0, off = 0;
	while (off < len) {
		ZydisDecodedInstruction in;
		if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, code + off, len - off, &in)))
			break;
		struct cfg_insn *c = &v[k++];
		c->addr = addr + off;
		c->len = in.length;
		c->kind = classify(&in, c->addr, &c->target);
		off += in.length;
	}
	*insns = v;
	*n = k;
	return 0;
}
#endif

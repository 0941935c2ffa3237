/*
 * x86-64 instructions for the CFG builder (cfg.h): arch/x86_64.c's decoder
 * says, for each instruction, whether and where it transfers control;
 * block and edge construction is cfg.c's job.
 */
#include <stdlib.h>

#include "arch/arch.h"
#include "infer/cfg.h"

#ifdef OCOLOS_HAVE_ZYDIS
struct collect {
	struct cfg_insn *v;
	size_t n;
};

static int collect_one(const struct arch_insn *x, void *p)
{
	struct collect *c = p;
	c->v[c->n++] = (struct cfg_insn){ x->addr, x->target, x->len, x->flow };
	return 0;
}
#endif

int infer_cfg_decode_x86(const uint8_t *code, size_t len, uint64_t addr,
			 struct cfg_insn **insns, size_t *n, struct core_err *err)
{
#ifndef OCOLOS_HAVE_ZYDIS
	(void)code; (void)len; (void)addr; (void)insns; (void)n;
	return core_errf(err, OCOLOS_ENOTSUP, "this libocolos was built without the x86-64 "
			 "decoder (Zydis): x86-64 binaries are optimized by an x86-64 build");
#else
	/* Every x86 instruction is at least one byte: len bounds the count. */
	struct collect c = { malloc((len ? len : 1) * sizeof(*c.v)), 0 };
	if (!c.v)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory decoding %zu bytes", len);
	arch_x86_decode(code, len, addr, collect_one, &c);
	*insns = c.v;
	*n = c.n;
	return 0;
#endif
}

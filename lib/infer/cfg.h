/*
 * Control-flow graphs of single functions, built from their bytes by a
 * linear sweep: basic blocks, intra-function edges, direct calls and exits.
 * Used by the hybrid edge-weight estimator (hybrid.h) to turn IP samples into
 * branch and fall-through weights that BOLT takes as if they came from LBR.
 *
 * The architecture files only classify instructions (cfg_x86.c with Zydis,
 * cfg_aarch64.c with a small fixed-width decoder of ours); cfg.c turns the
 * classified instructions into blocks and edges the same way for both. This
 * is not a disassembler for rewriting: nothing here changes code.
 *
 * Block rules (the ones BOLT uses for its own CFG, so that our edges name
 * blocks BOLT also has): leaders are the function start, every branch target
 * inside the function, and the instruction after a branch, a return or an
 * indirect jump. Calls do not end blocks. A conditional branch has a taken
 * edge and a fall-through edge; an unconditional direct jump has one taken
 * edge, or none when it leaves the function (a tail call: recorded as an
 * exit); indirect jumps, returns and traps have no intra-function successor.
 */
#ifndef OCOLOS_INFER_CFG_H
#define OCOLOS_INFER_CFG_H

#include <stddef.h>
#include <stdint.h>
#include "arch/arch.h"
#include "core/err.h"

/* What an instruction does to control flow (filled by the arch decoders):
 * the decoder's own classification (arch/arch.h, enum arch_flow). */
enum cfg_insn_kind {
	CFG_INSN_OTHER = ARCH_FLOW_OTHER, /* falls through to the next instruction */
	CFG_INSN_CALL = ARCH_FLOW_CALL,	  /* direct call (target known) */
	CFG_INSN_ICALL = ARCH_FLOW_ICALL, /* indirect call */
	CFG_INSN_COND = ARCH_FLOW_COND,	  /* conditional direct branch (target known) */
	CFG_INSN_JUMP = ARCH_FLOW_JUMP,	  /* unconditional direct jump (target known) */
	CFG_INSN_IJUMP = ARCH_FLOW_IJUMP, /* indirect jump: no known successor */
	CFG_INSN_RET = ARCH_FLOW_RET,	  /* return */
	CFG_INSN_TRAP = ARCH_FLOW_TRAP,	  /* ud2, hlt, brk...: execution stops here */
};

struct cfg_insn {
	uint64_t addr;		/* link-time address */
	uint64_t target;	/* CALL / COND / JUMP: branch target, else 0 */
	uint8_t len;		/* bytes */
	uint8_t kind;		/* enum cfg_insn_kind */
};

enum cfg_edge_kind {
	CFG_EDGE_TAKEN = 0,	/* conditional branch taken */
	CFG_EDGE_JUMP,		/* unconditional direct jump */
	CFG_EDGE_FALLTHROUGH,	/* not taken / no branch: into the next block */
};

struct cfg_edge {
	uint32_t src, dst;	/* block indices */
	uint8_t kind;		/* enum cfg_edge_kind */
	uint64_t branch;	/* TAKEN / JUMP: address of the branch instruction;
				 * FALLTHROUGH: address of src's last instruction */
};

struct cfg_block {
	uint64_t start, end;	/* [start, end), link-time */
	uint64_t last;		/* address of the last instruction */
	uint32_t ninsns;	/* instructions in the block */
	uint32_t first_out, nout; /* out-edges: edges[first_out .. +nout) */
	uint32_t npred;		/* in-edges (see cfg_func.pred_edges) */
	uint32_t first_in;	/* in-edges: pred_edges[first_in .. +npred) */
};

/* A direct call, or a direct jump that leaves the function (tail call). */
struct cfg_call {
	uint64_t site;		/* address of the call / jump instruction */
	uint64_t target;
	uint32_t block;		/* block holding the site */
	uint8_t tail;		/* 1: jump out of the function */
};

/* The CFG of one function. Owned by the caller: infer_cfg_func_free(). */
struct cfg_func {
	uint64_t addr, size;	/* the function as given */
	uint64_t decoded;	/* bytes covered by decoded instructions */
	struct cfg_block *blocks; size_t nblocks;	/* sorted by start */
	struct cfg_edge *edges; size_t nedges;		/* grouped by src */
	uint32_t *pred_edges;	/* edge indices grouped by dst, nedges long */
	struct cfg_call *calls; size_t ncalls;		/* sorted by site */
	uint32_t ninsns;
};

/* Build the CFG of the function whose `len` bytes are `code`, at link-time
 * address `addr`, for ELF machine `machine` (EM_X86_64 or EM_AARCH64).
 * Decoding stops at the first byte that does not decode as code (padding,
 * data): the function ends there. Fails with OCOLOS_ENOTSUP for another
 * machine, OCOLOS_EINVAL when a branch targets the middle of an instruction
 * (data in code, overlapping instructions: no CFG can be trusted) or nothing
 * decodes, OCOLOS_ENOMEM. On failure *out is left empty (safe to free). */
int infer_cfg_build(uint16_t machine, const uint8_t *code, size_t len, uint64_t addr,
	      struct cfg_func *out, struct core_err *err);

/* Release what infer_cfg_build() allocated; `f` may be zeroed or half-built. */
void infer_cfg_func_free(struct cfg_func *f);

/* Index of the block containing `addr`, or -1 (O(log n)). */
long infer_cfg_block_containing(const struct cfg_func *f, uint64_t addr);

/* Architecture decoders: classify every instruction of `code` by a linear
 * sweep from its start. On success *insns (malloc'd, caller frees) holds
 * *n instructions in address order; the sweep stops at the first byte that
 * does not decode. Return 0 or OCOLOS_ENOMEM. */
int infer_cfg_decode_x86(const uint8_t *code, size_t len, uint64_t addr,
		   struct cfg_insn **insns, size_t *n, struct core_err *err);
int infer_cfg_decode_aarch64(const uint8_t *code, size_t len, uint64_t addr,
		       struct cfg_insn **insns, size_t *n, struct core_err *err);

/* Turn decoded instructions (address order, contiguous from `addr`) into a
 * CFG. Takes ownership of nothing; used by infer_cfg_build() and by tests. */
int infer_cfg_from_insns(const struct cfg_insn *insns, size_t n, uint64_t addr,
		   uint64_t size, struct cfg_func *out, struct core_err *err);

#endif

/*
 * Shared checks for the CFG tests: structural invariants every CFG must
 * satisfy, and the exact expected CFGs of cfg_sample.c's asm functions
 * (the same shapes on both architectures).
 */
#ifndef OCOLOS_TEST_CFG_CHECK_H
#define OCOLOS_TEST_CFG_CHECK_H

#include "infer/cfg.h"
#include "check.h"

/* Blocks tile the decoded bytes; edges and predecessor lists agree;
 * fall-throughs go to the next block; taken edges name src's last insn. */
static void check_invariants(const struct cfg_func *f, const char *name)
{
	expect(f->nblocks > 0 && f->blocks[0].start == f->addr, "%s: first block", name);
	uint32_t npred = 0;
	for (size_t b = 0; b < f->nblocks; b++) {
		const struct cfg_block *bb = &f->blocks[b];
		expect(bb->start < bb->end && bb->last >= bb->start && bb->last < bb->end,
		       "%s: block %zu bounds", name, b);
		if (b + 1 < f->nblocks)
			expect(bb->end == f->blocks[b + 1].start, "%s: gap after block %zu", name, b);
		for (uint32_t i = 0; i < bb->nout; i++) {
			const struct cfg_edge *e = &f->edges[bb->first_out + i];
			expect(e->src == b && e->dst < f->nblocks, "%s: edge of block %zu", name, b);
			expect(e->branch == bb->last, "%s: edge branch address", name);
			if (e->kind == CFG_EDGE_FALLTHROUGH)
				expect(e->dst == b + 1, "%s: fall-through of %zu", name, b);
		}
		for (uint32_t i = 0; i < bb->npred; i++)
			expect(f->edges[f->pred_edges[bb->first_in + i]].dst == b, "%s: pred of %zu", name, b);
		npred += bb->npred;
	}
	expect(f->blocks[f->nblocks - 1].end == f->addr + f->decoded, "%s: last block end", name);
	expect(npred == f->nedges, "%s: %u preds vs %zu edges", name, npred, f->nedges);
}

/* Out-edge `i` of block `b` is (kind, dst). */
static int has_edge(const struct cfg_func *f, uint32_t b, uint8_t kind, uint32_t dst)
{
	for (uint32_t i = 0; i < f->blocks[b].nout; i++) {
		const struct cfg_edge *e = &f->edges[f->blocks[b].first_out + i];
		if (e->kind == kind && e->dst == dst)
			return 1;
	}
	return 0;
}

/* cs_asm: 4 blocks; 0->2 taken, 0->1 ft, 1->3 jump, 2->3 ft; one call in 1. */
static void check_cs_asm(const struct cfg_func *f)
{
	check_invariants(f, "cs_asm");
	expect(f->nblocks == 4 && f->nedges == 4, "cs_asm: %zu blocks %zu edges", f->nblocks, f->nedges);
	if (f->nblocks != 4)
		return;
	expect(has_edge(f, 0, CFG_EDGE_TAKEN, 2) && has_edge(f, 0, CFG_EDGE_FALLTHROUGH, 1),
	       "cs_asm: block 0 edges");
	expect(has_edge(f, 1, CFG_EDGE_JUMP, 3) && f->blocks[1].nout == 1, "cs_asm: block 1 edges");
	expect(has_edge(f, 2, CFG_EDGE_FALLTHROUGH, 3), "cs_asm: block 2 edges");
	expect(f->blocks[3].nout == 0 && f->blocks[3].npred == 2, "cs_asm: block 3");
	expect(f->ncalls == 1 && f->calls[0].block == 1 && !f->calls[0].tail, "cs_asm: calls %zu",
	       f->ncalls);
	expect(f->blocks[1].ninsns == 3, "cs_asm: block 1 has %u instructions", f->blocks[1].ninsns);
}

/* cs_asm_loop: 5 blocks; 0->1 ft; 1->1 taken, 1->2 ft; 2->4 taken, 2->3 ft;
 * 3 a tail jump (exit, no edge); 4 a trap. */
static void check_cs_asm_loop(const struct cfg_func *f, uint64_t leaf)
{
	check_invariants(f, "cs_asm_loop");
	expect(f->nblocks == 5 && f->nedges == 5, "cs_asm_loop: %zu blocks %zu edges", f->nblocks,
	       f->nedges);
	if (f->nblocks != 5)
		return;
	expect(has_edge(f, 0, CFG_EDGE_FALLTHROUGH, 1), "cs_asm_loop: 0->1");
	expect(has_edge(f, 1, CFG_EDGE_TAKEN, 1) && has_edge(f, 1, CFG_EDGE_FALLTHROUGH, 2),
	       "cs_asm_loop: loop");
	expect(has_edge(f, 2, CFG_EDGE_TAKEN, 4) && has_edge(f, 2, CFG_EDGE_FALLTHROUGH, 3),
	       "cs_asm_loop: 2");
	expect(f->blocks[3].nout == 0 && f->blocks[4].nout == 0, "cs_asm_loop: exits");
	expect(f->ncalls == 1 && f->calls[0].tail && f->calls[0].block == 3 &&
	       f->calls[0].target == leaf, "cs_asm_loop: tail jump");
}

/* cs_loop_c: some edge goes backwards (the loop). */
static void check_cs_loop_c(const struct cfg_func *f)
{
	check_invariants(f, "cs_loop_c");
	int back = 0;
	for (size_t e = 0; e < f->nedges; e++)
		back |= f->edges[e].dst <= f->edges[e].src;
	expect(back, "cs_loop_c: no back edge in %zu edges", f->nedges);
}

/* cs_switchy: a compare chain: several conditional blocks, no loop. */
static void check_cs_switchy(const struct cfg_func *f)
{
	check_invariants(f, "cs_switchy");
	int cond = 0, back = 0;
	for (size_t e = 0; e < f->nedges; e++) {
		cond += f->edges[e].kind == CFG_EDGE_TAKEN;
		back |= f->edges[e].dst <= f->edges[e].src;
	}
	expect(cond >= 3 && !back, "cs_switchy: %d conditional edges, back %d", cond, back);
}

#endif

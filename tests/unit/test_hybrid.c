/*
 * The hybrid edge-weight estimator (infer/hybrid.h) on hand-built CFGs with
 * answers worked out by hand: the AOBO paper's figure-6 case (an edge whose
 * source has several successors and whose target has several
 * predecessors), zero-count blocks, single in/out edges, and each of the
 * must-have-run rules R1-R4, including the cases where nothing may be
 * inferred.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/hybrid.h"
#include "check.h"

#define MAXB 16

/* A CFG of `nb` one-instruction blocks and edges e[i] = {src, dst}, given
 * grouped by src. */
static struct cfg_func mk(uint32_t nb, const uint32_t (*e)[2], size_t ne)
{
	struct cfg_func f = { 0 };
	f.nblocks = nb;
	f.nedges = ne;
	f.blocks = calloc(nb, sizeof(*f.blocks));
	f.edges = calloc(ne + 1, sizeof(*f.edges));
	f.pred_edges = calloc(ne + 1, sizeof(*f.pred_edges));
	for (uint32_t b = 0; b < nb; b++) {
		f.blocks[b].start = 0x1000 + 16 * b;
		f.blocks[b].end = f.blocks[b].start + 16;
		f.blocks[b].last = f.blocks[b].start + 12;
		f.blocks[b].ninsns = 1;
	}
	for (size_t i = 0; i < ne; i++) {
		f.edges[i] = (struct cfg_edge){ e[i][0], e[i][1], CFG_EDGE_TAKEN, 0 };
		if (!f.blocks[e[i][0]].nout)
			f.blocks[e[i][0]].first_out = (uint32_t)i;
		f.blocks[e[i][0]].nout++;
		f.blocks[e[i][1]].npred++;
	}
	uint32_t at = 0;
	for (uint32_t b = 0; b < nb; b++) {
		f.blocks[b].first_in = at;
		at += f.blocks[b].npred;
		f.blocks[b].npred = 0;
	}
	for (size_t i = 0; i < ne; i++) {
		struct cfg_block *d = &f.blocks[e[i][1]];
		f.pred_edges[d->first_in + d->npred++] = (uint32_t)i;
	}
	return f;
}

static int near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

struct run {
	double freq[MAXB], w[MAXB];
	struct hybrid_stats st;
};

static struct run estimate(const struct cfg_func *f, const uint64_t *samples, unsigned flags)
{
	struct run r;
	memset(&r, 0, sizeof(r));
	struct core_err err = { 0 };
	expect(infer_hybrid_estimate(f, samples, flags, r.freq, r.w, &r.st, &err) == 0, "%s", err.msg);
	return r;
}

/* Figure 6: edge B->A; B also goes to A1, A also comes from B1.
 * Blocks: 0 = B (10), 1 = A (8), 2 = A1 (2), 3 = B1 (6).
 * W_in(B->A)  = a * b / (b + b1) = 8 * 10 / 16 = 5
 * W_out(B->A) = b * a / (a + a1) = 10 * 8 / 10 = 8   -> hybrid 6.5
 * B->A1: W_in = 2 * 10 / 10 = 2, W_out = 10 * 2 / 10 = 2 -> 2
 * B1->A: W_in = 8 * 6 / 16 = 3, W_out = 6 * 8 / 8 = 6   -> 4.5 */
static void test_figure6(void)
{
	const uint32_t e[][2] = { { 0, 1 }, { 0, 2 }, { 3, 1 } };
	struct cfg_func f = mk(4, e, 3);
	const uint64_t s[] = { 10, 8, 2, 6 };
	struct run r = estimate(&f, s, HYBRID_NO_INFER);
	expect(near(r.w[0], 6.5), "B->A %g", r.w[0]);
	expect(near(r.w[1], 2.0), "B->A1 %g", r.w[1]);
	expect(near(r.w[2], 4.5), "B1->A %g", r.w[2]);
	expect(r.st.weighted_edges == 3, "%u", r.st.weighted_edges);
	infer_cfg_func_free(&f);
}

/* Normalization: samples are divided by the block's instruction count. */
static void test_normalization(void)
{
	const uint32_t e[][2] = { { 0, 1 } };
	struct cfg_func f = mk(2, e, 1);
	f.blocks[0].ninsns = 4;
	f.blocks[1].ninsns = 2;
	const uint64_t s[] = { 8, 2 };
	struct run r = estimate(&f, s, HYBRID_NO_INFER);
	expect(near(r.freq[0], 2.0) && near(r.freq[1], 1.0), "%g %g", r.freq[0], r.freq[1]);
	/* single out-edge, single in-edge: W_in = 1 * 2 / 2 = 1, W_out = 2 * 1 / 1 = 2 */
	expect(near(r.w[0], 1.5), "%g", r.w[0]);
	infer_cfg_func_free(&f);
}

/* Zero-count blocks: only the non-zero estimate counts, and BOLT's rule
 * gives an edge that is the only way into (out of) a block that block's
 * count even when the other end has no samples.
 * 0 (0) -> 2 (4), 1 (4) -> 2: 0->2 has W_in = 4 * 0 / 4 = 0, W_out = 0.
 * 3 (0) -> 4 (5), 4's only in-edge: W_in = 5.
 * 5 (7) -> 6 (0), 5's only out-edge: W_out = 7. */
static void test_zero_blocks(void)
{
	const uint32_t e[][2] = { { 0, 2 }, { 1, 2 }, { 3, 4 }, { 5, 6 } };
	struct cfg_func f = mk(7, e, 4);
	const uint64_t s[] = { 0, 4, 4, 0, 5, 7, 0 };
	struct run r = estimate(&f, s, HYBRID_NO_INFER);
	expect(near(r.w[0], 0.0), "0->2 %g", r.w[0]);
	expect(near(r.w[1], 4.0), "1->2 %g", r.w[1]); /* 4*4/4 = 4 both ways */
	expect(near(r.w[2], 5.0), "3->4 %g", r.w[2]);
	expect(near(r.w[3], 7.0), "5->6 %g", r.w[3]);
	infer_cfg_func_free(&f);
}

/* A chain with an unsampled middle: 0 (5) -> 1 (0) -> 2 (0) -> 3 (5).
 * Without inference the middle edge 1->2 gets nothing; with R1/R2 both
 * middle blocks get 5 and every edge 5. */
static void test_chain(void)
{
	const uint32_t e[][2] = { { 0, 1 }, { 1, 2 }, { 2, 3 } };
	struct cfg_func f = mk(4, e, 3);
	const uint64_t s[] = { 5, 0, 0, 5 };
	struct run r = estimate(&f, s, HYBRID_NO_INFER);
	expect(near(r.w[1], 0.0), "no inference: 1->2 %g", r.w[1]);
	r = estimate(&f, s, 0);
	for (int i = 0; i < 3; i++)
		expect(near(r.w[i], 5.0), "edge %d: %g", i, r.w[i]);
	/* 1 from 0 forwards (R1), 2 from 3 backwards (R2) */
	expect(r.st.inferred_blocks == 2 && r.st.by_rule[0] == 1 && r.st.by_rule[1] == 1,
	       "%u %u %u", r.st.inferred_blocks, r.st.by_rule[0], r.st.by_rule[1]);
	infer_cfg_func_free(&f);
}

/* R2 backwards, and R1's sum at a join:
 * 0 (0) -> 1 (0) -> 2 (7), 0 -> 3 (0): 2's single pred 1 gets 7 (R2), then
 * 1's single pred 0 gets 7 (R2; 3 has no samples so adds nothing).
 * 4 (3) -> 6, 5 (9) -> 6 (0): 6 gets 3 + 9 = 12 (R1 over both preds). */
static void test_backward_and_join(void)
{
	const uint32_t e[][2] = { { 0, 1 }, { 0, 3 }, { 1, 2 }, { 4, 6 }, { 5, 6 } };
	struct cfg_func f = mk(7, e, 5);
	const uint64_t s[] = { 0, 0, 7, 0, 3, 9, 0 };
	struct run r = estimate(&f, s, 0);
	expect(near(r.freq[1], 7.0) && near(r.freq[0], 7.0), "%g %g", r.freq[1], r.freq[0]);
	expect(near(r.freq[3], 0.0), "3 must stay unknown: %g", r.freq[3]);
	expect(near(r.freq[6], 12.0), "join %g", r.freq[6]);
	expect(r.st.by_rule[1] == 2, "R2 %u", r.st.by_rule[1]);
	infer_cfg_func_free(&f);
}

/* R4 on an if/else: 0 (10) -> {1 (6), 2 (0)} -> 3 (10); 1 and 2 only come
 * from 0, so f(2) = 10 - 6 = 4 and 0->2 weighs 4.
 * An if-then whose then-block is unsampled is NOT inferred: 4 (10) -> 5 (0)
 * -> 6 (10), 4 -> 6: the then-block may never have run. */
static void test_flow(void)
{
	const uint32_t e[][2] = { { 0, 1 }, { 0, 2 }, { 1, 3 }, { 2, 3 },
				  { 4, 5 }, { 4, 6 }, { 5, 6 } };
	struct cfg_func f = mk(7, e, 7);
	const uint64_t s[] = { 10, 6, 0, 10, 10, 0, 10 };
	struct run r = estimate(&f, s, 0);
	expect(near(r.freq[2], 4.0), "else %g", r.freq[2]);
	expect(near(r.w[1], 4.0), "0->2 %g", r.w[1]);
	expect(r.st.by_rule[3] == 1, "R4 %u", r.st.by_rule[3]);
	expect(near(r.freq[5], 0.0), "then-block must stay unknown: %g", r.freq[5]);
	expect(near(r.w[4], 0.0) && r.w[5] > 0, "4->5 %g 4->6 %g", r.w[4], r.w[5]);
	infer_cfg_func_free(&f);
}

/* R3: a sampled loop body proves the entry ran. Entry 0 (0) -> 1 (0) ->
 * header 2 (0) -> body 3 (8) -> 2, 2 -> exit 4 (0). The header is the body's
 * only successor (R1: 8); then the entry gets the smallest sampled
 * frequency (8, R3) and R1 carries it to 1. The exit stays unknown: R4 at
 * the header gives 8 - 8 = 0, which proves nothing. */
static void test_entry(void)
{
	const uint32_t e[][2] = { { 0, 1 }, { 1, 2 }, { 2, 3 }, { 2, 4 }, { 3, 2 } };
	struct cfg_func f = mk(5, e, 5);
	const uint64_t s[] = { 0, 0, 0, 8, 0 };
	struct run r = estimate(&f, s, 0);
	expect(near(r.freq[2], 8.0), "header %g", r.freq[2]);
	expect(near(r.freq[0], 8.0) && near(r.freq[1], 8.0), "entry %g %g", r.freq[0], r.freq[1]);
	expect(r.st.by_rule[2] == 1, "R3 %u", r.st.by_rule[2]);
	expect(r.w[0] > 0 && r.w[1] > 0, "entry chain edges %g %g", r.w[0], r.w[1]);
	infer_cfg_func_free(&f);
}

/* Nothing sampled: nothing inferred, no weights. */
static void test_empty(void)
{
	const uint32_t e[][2] = { { 0, 1 }, { 1, 2 } };
	struct cfg_func f = mk(3, e, 2);
	const uint64_t s[] = { 0, 0, 0 };
	struct run r = estimate(&f, s, 0);
	expect(r.st.inferred_blocks == 0 && r.st.weighted_edges == 0, "%u %u",
	       r.st.inferred_blocks, r.st.weighted_edges);
	infer_cfg_func_free(&f);
}

int main(void)
{
	test_figure6();
	test_normalization();
	test_zero_blocks();
	test_chain();
	test_backward_and_join();
	test_flow();
	test_entry();
	test_empty();
	test_done();
}

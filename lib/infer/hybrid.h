/*
 * Hybrid edge-weight estimation (AOBO, TACO 2024, section 3.2): from IP
 * sample counts per basic block to a weight per CFG edge, for machines
 * without branch records. Nothing here knows about files or BOLT; the
 * writer (hybrid_writer.c) turns the weights into BOLT's pre-aggregated
 * `B`/`F` records.
 *
 * Three steps, each O(|V| + |E|):
 *
 * 1. Block frequency: samples in a block divided by its instruction count.
 *    With uniform-in-time sampling a block's samples grow with how often it
 *    runs times how long it takes; the instruction count stands in for the
 *    time (the paper's normalization, also BOLT's basic-sample mode).
 *
 * 2. Must-have-run inference (ours; the paper has none). Sparse samples
 *    leave executed blocks at zero, and BOLT then lays them out as cold.
 *    Starting from the sampled blocks, a zero block gets a frequency when
 *    the CFG proves it ran, using only neighbours already known:
 *      R1 chain forward:  u ran and u has exactly one successor v, so every
 *         execution of u continued into v: f(v) = the sum of f(p) over the
 *         predecessors p of v whose only successor is v (u among them; a
 *         lower bound, exact for a join of such blocks).
 *      R2 chain backward: v ran, v is not the entry and has exactly one
 *         predecessor u, so u ran before each execution of v: f(u) = the
 *         sum of f(s) over the successors s of u whose only predecessor is
 *         u (v among them).
 *      R3 entry: some block of a single-entry function ran, so the entry
 *         ran: f(entry) = the smallest sampled frequency of the function
 *         (a count we could have missed; then R1 continues from it).
 *      R4 flow conservation: u ran and every successor of u has u as its
 *         only predecessor, so f(u) = sum of f(successors); if exactly one
 *         successor w is zero, f(w) = f(u) - sum(others) when positive.
 *         Mirrored for a join whose predecessors all have it as their only
 *         successor. Skipped for blocks of more than 8 neighbours to keep
 *         the whole pass linear.
 *    Each block is assigned at most once, so the pass is O(|V| + |E|).
 *
 * 3. Edge weights, for an edge B -> A with block frequencies b and a:
 *      predecessor hotness  W_in  = a * b / sum(f(p), p in preds(A))
 *        (A's count split among its predecessors by their hotness; when b
 *        is 0 and the edge is A's only in-edge, W_in = a — BOLT's rule);
 *      successor hotness    W_out = b * a / sum(f(s), s in succs(B))
 *        (B's count split among its successors by their hotness; when a is
 *        0 and the edge is B's only out-edge, W_out = b);
 *      W = (W_in + W_out) / 2 when both are non-zero, else the non-zero one.
 */
#ifndef OCOLOS_INFER_HYBRID_H
#define OCOLOS_INFER_HYBRID_H

#include <stdint.h>
#include "core/err.h"
#include "elf/binary.h"
#include "infer/cfg.h"
#include "infer/profile.h"
#include "sample/sample.h"

/* Flags for infer_hybrid_estimate() and infer_write_hybrid_flags(). */
#define HYBRID_NO_INFER 0x1u /* skip step 2 (the paper's estimator alone) */

struct hybrid_stats {
	uint32_t sampled_blocks;  /* blocks with at least one sample */
	uint32_t inferred_blocks; /* zero blocks given a frequency by step 2 */
	uint32_t by_rule[4];	  /* of those, by R1..R4 */
	uint32_t weighted_edges;  /* edges with a non-zero weight */
};

/* Step 1: freq[b] = samples[b] / blocks[b].ninsns for every block of f. */
void infer_hybrid_block_freq(const struct cfg_func *f, const uint64_t *samples, double *freq);

/* Step 2 on freq[] (in place). `st` may be NULL. 0 or OCOLOS_ENOMEM. */
int infer_hybrid_infer_must_run(const struct cfg_func *f, double *freq, struct hybrid_stats *st,
			  struct core_err *err);

/* Step 3: w[e] for every edge of f from freq[]. */
void infer_hybrid_edge_weights(const struct cfg_func *f, const double *freq, double *w);

/* Steps 1-3: samples[] per block in, freq[] per block and w[] per edge out
 * (caller-allocated, f->nblocks and f->nedges long). `st` accumulates and
 * may be NULL. 0 or OCOLOS_ENOMEM. */
int infer_hybrid_estimate(const struct cfg_func *f, const uint64_t *samples, unsigned flags,
		    double *freq, double *w, struct hybrid_stats *st, struct core_err *err);

/* What infer_write_hybrid_flags() did, beyond infer_profile_stats. */
struct hybrid_write_stats {
	struct hybrid_stats est;  /* summed over functions */
	uint32_t functions_cfg;	  /* sampled functions with a CFG */
	uint32_t functions_nocfg; /* sampled functions left without profile */
	uint32_t functions_sparse; /* fewer than HYBRID_MIN_FUNCTION_SAMPLES: left
				      without profile (they stay in C0) */
	uint64_t calls_dropped;	  /* calls into functions without profile */
	uint64_t branch_records, fallthrough_records, call_records, entry_records;
};

/* A function with fewer samples than this gets no profile, so BOLT (lite)
 * leaves it in C0 as compiled. With one or two samples the estimate knows
 * one or two blocks, and BOLT would split every other executed block out
 * as cold: worse than the original layout. Measured on fe (in-process A/B,
 * docs/benchmarks.md): with ~1k sigprof samples 0.95x (C1 slower) -> 1.01x,
 * with 10k perf samples 1.04x -> 1.09x, with ~80k no change. */
#define HYBRID_MIN_FUNCTION_SAMPLES 3

/* Counts written are weights (per-instruction sample frequencies) times
 * this, rounded, at least 1 for any non-zero weight. */
#define HYBRID_COUNT_SCALE 1000.0

/* infer_write_hybrid() (profile.h) with flags and hybrid statistics;
 * `hs` may be NULL. */
int infer_write_hybrid_flags(const struct elf_binary *b, uint64_t bias,
			     const struct sample_set *s, const char *path, unsigned flags,
			     struct infer_profile_stats *st, struct hybrid_write_stats *hs,
			     struct core_err *err);

#endif

/*
 * The hybrid edge-weight estimator and the must-have-run inference (see
 * hybrid.h for the rules and why). Pure arithmetic on a built CFG.
 */
#include <stdlib.h>

#include "infer/hybrid.h"

#define R4_MAX_DEGREE 8

void infer_hybrid_block_freq(const struct cfg_func *f, const uint64_t *samples, double *freq)
{
	for (size_t b = 0; b < f->nblocks; b++)
		freq[b] = f->blocks[b].ninsns ? (double)samples[b] / f->blocks[b].ninsns : 0.0;
}

/* Worklist of blocks whose frequency became known (each enters once). */
struct infer_ctx {
	const struct cfg_func *f;
	double *freq;
	uint32_t *queue;
	size_t head, tail;
	struct hybrid_stats *st;
};

static const struct cfg_edge *out_edge(const struct cfg_func *f, uint32_t b, uint32_t i)
{
	return &f->edges[f->blocks[b].first_out + i];
}

static const struct cfg_edge *in_edge(const struct cfg_func *f, uint32_t b, uint32_t i)
{
	return &f->edges[f->pred_edges[f->blocks[b].first_in + i]];
}

/* Give zero block `b` frequency `v` by rule `rule` (1..4) and queue it. */
static void assign(struct infer_ctx *c, uint32_t b, double v, int rule)
{
	if (c->freq[b] > 0 || !(v > 0))
		return;
	c->freq[b] = v;
	c->queue[c->tail++] = b;
	if (c->st) {
		c->st->inferred_blocks++;
		c->st->by_rule[rule - 1]++;
	}
}

/* R4 at split block u: all successors have u as their only predecessor
 * (so their counts add up to u's) and exactly one of them is zero. */
static void flow_split(struct infer_ctx *c, uint32_t u)
{
	const struct cfg_func *f = c->f;
	uint32_t n = f->blocks[u].nout, zero = UINT32_MAX, nzero = 0;
	if (!(c->freq[u] > 0) || n < 2 || n > R4_MAX_DEGREE)
		return;
	double rest = c->freq[u];
	for (uint32_t i = 0; i < n; i++) {
		uint32_t s = out_edge(f, u, i)->dst;
		if (s == u || s == 0 || f->blocks[s].npred != 1)
			return;
		if (c->freq[s] > 0)
			rest -= c->freq[s];
		else
			zero = s, nzero++;
	}
	if (nzero == 1)
		assign(c, zero, rest, 4);
}

/* R4 mirrored at join block v: all predecessors have v as their only
 * successor and exactly one of them is zero. */
static void flow_join(struct infer_ctx *c, uint32_t v)
{
	const struct cfg_func *f = c->f;
	uint32_t n = f->blocks[v].npred, zero = UINT32_MAX, nzero = 0;
	if (!(c->freq[v] > 0) || v == 0 || n < 2 || n > R4_MAX_DEGREE)
		return;
	double rest = c->freq[v];
	for (uint32_t i = 0; i < n; i++) {
		uint32_t p = in_edge(f, v, i)->src;
		if (p == v || f->blocks[p].nout != 1)
			return;
		if (c->freq[p] > 0)
			rest -= c->freq[p];
		else
			zero = p, nzero++;
	}
	if (nzero == 1)
		assign(c, zero, rest, 4);
}

/* R1's value for v: every predecessor whose only successor is v passed all
 * its executions to v, so f(v) >= their sum (u is one of them). */
static double chain_in(const struct infer_ctx *c, uint32_t v, uint32_t u)
{
	const struct cfg_func *f = c->f;
	if (f->blocks[v].npred > R4_MAX_DEGREE)
		return c->freq[u];
	double s = 0;
	for (uint32_t i = 0; i < f->blocks[v].npred; i++) {
		uint32_t p = in_edge(f, v, i)->src;
		if (f->blocks[p].nout == 1 && p != v)
			s += c->freq[p];
	}
	return s;
}

/* R2's value for u: every successor whose only predecessor is u was entered
 * from u each time, so f(u) >= their sum (v is one of them). */
static double chain_out(const struct infer_ctx *c, uint32_t u, uint32_t v)
{
	const struct cfg_func *f = c->f;
	if (f->blocks[u].nout > R4_MAX_DEGREE)
		return c->freq[v];
	double s = 0;
	for (uint32_t i = 0; i < f->blocks[u].nout; i++) {
		uint32_t d = out_edge(f, u, i)->dst;
		if (f->blocks[d].npred == 1 && d != 0 && d != u)
			s += c->freq[d];
	}
	return s;
}

/* Apply every rule that block u, just known, can trigger. The R4 checks
 * also run at u's neighbours, for which u may have been the last unknown
 * sibling. */
static void visit(struct infer_ctx *c, uint32_t u)
{
	const struct cfg_func *f = c->f;
	const struct cfg_block *bu = &f->blocks[u];
	if (bu->nout == 1) {
		uint32_t v = out_edge(f, u, 0)->dst;
		if (!(c->freq[v] > 0))
			assign(c, v, chain_in(c, v, u), 1);
	}
	if (bu->npred == 1 && u != 0) {
		uint32_t p = in_edge(f, u, 0)->src;
		if (!(c->freq[p] > 0))
			assign(c, p, chain_out(c, p, u), 2);
	}
	flow_split(c, u);
	flow_join(c, u);
	if (bu->npred <= R4_MAX_DEGREE)
		for (uint32_t i = 0; i < bu->npred; i++)
			flow_split(c, in_edge(f, u, i)->src);
	if (bu->nout <= R4_MAX_DEGREE)
		for (uint32_t i = 0; i < bu->nout; i++)
			flow_join(c, out_edge(f, u, i)->dst);
}

int infer_hybrid_infer_must_run(const struct cfg_func *f, double *freq, struct hybrid_stats *st,
			  struct core_err *err)
{
	if (!f->nblocks)
		return 0;
	struct infer_ctx c = { .f = f, .freq = freq, .st = st };
	c.queue = malloc(f->nblocks * sizeof(*c.queue));
	if (!c.queue)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory inferring block counts");
	double min_pos = 0;
	for (uint32_t b = 0; b < f->nblocks; b++) {
		if (!(freq[b] > 0))
			continue;
		c.queue[c.tail++] = b;
		if (min_pos == 0 || freq[b] < min_pos)
			min_pos = freq[b];
	}
	while (c.head < c.tail) {
		visit(&c, c.queue[c.head++]);
		/* R3 only once the proven rules are exhausted: R2 chains may
		 * already have reached the entry with a better value. */
		if (c.head == c.tail && min_pos > 0)
			assign(&c, 0, min_pos, 3);
	}
	free(c.queue);
	return 0;
}

/* Sum of the frequencies of b's successors (succ = 1) or predecessors. */
static double neighbour_sum(const struct cfg_func *f, const double *freq, uint32_t b, int succ)
{
	double s = 0;
	uint32_t n = succ ? f->blocks[b].nout : f->blocks[b].npred;
	for (uint32_t i = 0; i < n; i++)
		s += succ ? freq[out_edge(f, b, i)->dst] : freq[in_edge(f, b, i)->src];
	return s;
}

void infer_hybrid_edge_weights(const struct cfg_func *f, const double *freq, double *w)
{
	/* Per-block sums first, so each edge costs O(1): O(|V| + |E|). */
	double *sums = malloc((2 * f->nblocks + 1) * sizeof(*sums));
	for (uint32_t b = 0; sums && b < f->nblocks; b++) {
		sums[2 * b] = neighbour_sum(f, freq, b, 1);
		sums[2 * b + 1] = neighbour_sum(f, freq, b, 0);
	}
	for (size_t e = 0; e < f->nedges; e++) {
		uint32_t u = f->edges[e].src, v = f->edges[e].dst;
		double fu = freq[u], fv = freq[v];
		double succ_sum = sums ? sums[2 * u] : neighbour_sum(f, freq, u, 1);
		double pred_sum = sums ? sums[2 * v + 1] : neighbour_sum(f, freq, v, 0);
		double w_in = pred_sum > 0 ? fv * fu / pred_sum : 0;
		double w_out = succ_sum > 0 ? fu * fv / succ_sum : 0;
		if (fu == 0 && f->blocks[v].npred == 1)
			w_in = fv;
		if (fv == 0 && f->blocks[u].nout == 1)
			w_out = fu;
		w[e] = w_in > 0 && w_out > 0 ? (w_in + w_out) / 2 : w_in + w_out;
	}
	free(sums);
}

int infer_hybrid_estimate(const struct cfg_func *f, const uint64_t *samples, unsigned flags,
		    double *freq, double *w, struct hybrid_stats *st, struct core_err *err)
{
	infer_hybrid_block_freq(f, samples, freq);
	if (st)
		for (size_t b = 0; b < f->nblocks; b++)
			st->sampled_blocks += samples[b] > 0;
	if (!(flags & HYBRID_NO_INFER)) {
		int rc = infer_hybrid_infer_must_run(f, freq, st, err);
		if (rc)
			return rc;
	}
	infer_hybrid_edge_weights(f, freq, w);
	if (st)
		for (size_t e = 0; e < f->nedges; e++)
			st->weighted_edges += w[e] > 0;
	return 0;
}

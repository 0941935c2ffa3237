/*
 * LBR profile writer (see profile.h): branch stacks -> BOLT's pre-aggregated
 * format, aggregated, for `llvm-bolt --pa -p FILE` without `--ba`.
 *
 * It produces what BOLT's own perf.data path (DataAggregator::parseLBRSample)
 * would derive from the same stacks, in the record types BOLT documents for
 * pre-aggregated input (DataAggregator.h, parseAggregatedLBREntry):
 *
 *   B <from> <to> <count> <mispreds>   one per taken branch of every stack.
 *       BOLT itself drops returns (it disassembles <from>) and treats an end
 *       outside its functions as external; we write such an end (a library,
 *       the vDSO, anything outside the binary's image) as "X:0": build-id
 *       "X" = unknown object, the notation BOLT's format defines for it.
 *       Ends inside the image but in no symbol (the PLT) keep their address:
 *       BOLT has pseudo functions there. Mispredictions are not kept by the
 *       sampler (struct sample_branch has no flags), so always 0.
 *   F <start> <end> <count>            the straight-line code run between
 *       two consecutive branches of one stack: from the `to` of the older
 *       one to the `from` of the newer one, when the older branch came from
 *       the same function.
 *   f <start> <end> <count>            the same when the older branch came
 *       from elsewhere (a return from a callee, a call, a library). BOLT
 *       then applies the rule it uses for perf.data traces whose branch is
 *       outside the function: a run starting at a block head right after a
 *       call is a call continuation, so the call's block gets the count too.
 *       With `F` it would not.
 *
 * Like BOLT, entries with a kernel address are dropped from a stack before
 * pairing (IgnoreInterruptLBR), and the newest entry has no fall-through
 * (its end is the sample IP's block, unknown: BOLT's BR_ONLY). Fall-through
 * runs BOLT would reject anyway are not written: an end outside the image,
 * ends in different functions, or start after end — BOLT counts those as
 * "out of range" or "mismatching" traces, which then only mean a
 * stale binary.
 *
 * Addresses are link-time: run-time minus the load bias, which for a PIE is
 * BOLT's "offset from the object base". Not this file's job: BAT
 * translation of samples in optimized code (they fall outside the image
 * and are dropped here).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/profile.h"

#define LBR_EXTERNAL UINT64_MAX		       /* an end outside the binary */
#define LBR_KERNEL_BASE 0xffff800000000000ull /* BOLT's KernelBaseAddr */

struct lbr_rec {
	uint64_t from, to, count;
	char kind; /* 'B', 'F' or 'f' */
};

struct lbr_agg {
	const struct elf_binary *b;
	uint64_t bias;
	struct lbr_rec *v;
	size_t n;
	uint8_t *touched;   /* per function of b: seen in a record */
	uint64_t in_binary; /* branches with an end in the image */
};

/* Link-time address of run-time `a` if it lies in the binary's image. */
static uint64_t link_addr(const struct lbr_agg *g, uint64_t a)
{
	uint64_t l = a - g->bias;
	return l >= g->b->img_lo && l < g->b->img_hi ? l : LBR_EXTERNAL;
}

/* Index of the function containing link-time `link`, or -1. Unlike
 * elf_func_containing(), a symbol of size 0 (crt code such as
 * __do_global_dtors_aux) extends to the next symbol, as BOLT sizes it, so
 * its fall-throughs are not mistaken for cross-function runs. */
static long func_of(const struct lbr_agg *g, uint64_t link)
{
	const struct elf_binary *b = g->b;
	if (link == LBR_EXTERNAL)
		return -1;
	size_t lo = 0, hi = b->nfuncs;
	while (lo < hi) { /* first function starting after `link` */
		size_t mid = lo + (hi - lo) / 2;
		if (b->funcs[mid].addr <= link)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return -1;
	const struct elf_func *f = &b->funcs[lo - 1];
	uint64_t end = f->size ? f->addr + f->size : lo < b->nfuncs ? b->funcs[lo].addr : b->img_hi;
	return link < end ? (long)(lo - 1) : -1;
}

static void touch(struct lbr_agg *g, long f)
{
	if (f >= 0)
		g->touched[f] = 1;
}

/* One taken branch: kept if either end is in the binary's image (BOLT,
 * not us, knows every function there: it also has the PLT's). */
static void add_branch(struct lbr_agg *g, const struct sample_branch *br)
{
	uint64_t from = link_addr(g, br->from), to = link_addr(g, br->to);
	if (from == LBR_EXTERNAL && to == LBR_EXTERNAL)
		return;
	touch(g, func_of(g, from));
	touch(g, func_of(g, to));
	g->v[g->n++] = (struct lbr_rec){ from, to, 1, 'B' };
	g->in_binary++;
}

/* The run from `older->to` to `newer->from`, executed without a taken
 * branch: kept if both ends are in the image and in the same function by
 * our symbols (or both in none: PLT entries, which BOLT validates). */
static void add_fallthrough(struct lbr_agg *g, const struct sample_branch *older,
			    const struct sample_branch *newer)
{
	uint64_t start = link_addr(g, older->to), end = link_addr(g, newer->from);
	uint64_t origin = link_addr(g, older->from);
	if (start == LBR_EXTERNAL || end == LBR_EXTERNAL || start > end)
		return;
	long f = func_of(g, start);
	if (f != func_of(g, end))
		return;
	char kind = f >= 0 && origin != LBR_EXTERNAL && func_of(g, origin) == f ? 'F' : 'f';
	touch(g, f);
	g->v[g->n++] = (struct lbr_rec){ start, end, 1, kind };
}

static int is_kernel(const struct sample_branch *br)
{
	return br->from >= LBR_KERNEL_BASE || br->to >= LBR_KERNEL_BASE;
}

/* Stack `k` of `s`, newest entry first: pair each entry with the next newer
 * one that survives the kernel filter. */
static void add_stack(struct lbr_agg *g, const struct sample_set *s, size_t k)
{
	size_t lo = s->stack_start[k];
	size_t hi = k + 1 < s->nstacks ? s->stack_start[k + 1] : s->nbranches;
	const struct sample_branch *newer = NULL;
	for (size_t i = lo; i < hi; i++) {
		const struct sample_branch *br = &s->branches[i];
		if (is_kernel(br))
			continue;
		add_branch(g, br);
		if (newer)
			add_fallthrough(g, br, newer);
		newer = br;
	}
}

static int cmp_rec(const void *pa, const void *pb)
{
	const struct lbr_rec *a = pa, *b = pb;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->from != b->from)
		return a->from < b->from ? -1 : 1;
	return a->to < b->to ? -1 : a->to > b->to;
}

/* Sort and merge equal records, summing counts. Returns the new count. */
static size_t aggregate(struct lbr_rec *v, size_t n)
{
	if (!n)
		return 0;
	if (n)
		qsort(v, n, sizeof(*v), cmp_rec);
	size_t m = 0;
	for (size_t i = 1; i < n; i++) {
		if (!cmp_rec(&v[m], &v[i]))
			v[m].count += v[i].count;
		else
			v[++m] = v[i];
	}
	return m + 1;
}

static void put_addr(FILE *f, uint64_t a)
{
	if (a == LBR_EXTERNAL)
		fputs(" X:0", f);
	else
		fprintf(f, " %" PRIx64, a);
}

static int write_records(const char *path, const struct lbr_rec *v, size_t n,
			 struct core_err *err)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return core_errf(err, OCOLOS_EIO, "cannot write profile '%s': %s", path, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		fputc(v[i].kind, f);
		put_addr(f, v[i].from);
		put_addr(f, v[i].to);
		fprintf(f, " %" PRIu64 "%s\n", v[i].count, v[i].kind == 'B' ? " 0" : "");
	}
	if (fclose(f) != 0)
		return core_errf(err, OCOLOS_EIO, "cannot write profile '%s': %s", path, strerror(errno));
	return 0;
}

int infer_write_lbr(const struct elf_binary *b, uint64_t bias,
		    const struct sample_set *s, const char *path,
		    struct infer_profile_stats *st, struct core_err *err)
{
	memset(st, 0, sizeof(*st));
	/* at most one branch and one fall-through record per entry */
	struct lbr_agg g = { .b = b, .bias = bias };
	g.v = malloc((2 * s->nbranches + 1) * sizeof(*g.v));
	g.touched = calloc(b->nfuncs + 1, 1);
	if (!g.v || !g.touched) {
		free(g.v);
		free(g.touched);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory aggregating branch stacks");
	}
	for (size_t k = 0; k < s->nstacks; k++)
		add_stack(&g, s, k);
	for (size_t i = 0; i < b->nfuncs; i++)
		st->functions += g.touched[i];
	int rc = 0;
	if (!st->functions && !s->nstacks)
		rc = core_errf(err, OCOLOS_ENOPROFILE,
			       "the window took no sample at all: no thread of the process ran (it "
			       "was idle: blocked, sleeping or stopped); optimize while it does its "
			       "real work, or lengthen opts.profile_ms (the tools' --profile)");
	else if (!st->functions)
		rc = core_errf(err, OCOLOS_ENOPROFILE,
			       "none of the %zu sampled branches (%zu stacks) touched the code of '%s' "
			       "(the program was idle, or busy only in libraries or the kernel); "
			       "optimize while it does its real work, or lengthen opts.profile_ms "
			       "(the tools' --profile)", s->nbranches, s->nstacks, b->path);
	if (!rc) {
		g.n = aggregate(g.v, g.n);
		rc = write_records(path, g.v, g.n, err);
	}
	st->in_binary = g.in_binary;
	st->addresses = rc ? 0 : g.n;
	free(g.v);
	free(g.touched);
	return rc;
}

/*
 * Hybrid profile writer (profile.h, hybrid.h): IP samples -> per-function
 * CFG -> block frequencies -> hybrid edge weights -> BOLT pre-aggregated
 * records that BOLT reads as if they came from branch records (`--pa`
 * without `--ba`).
 *
 * Record semantics, from BOLT's DataAggregator (parseAggregatedLBREntry,
 * processBranchEvents, doBranch, doTrace, getFallthroughsInTrace):
 *   B <from> <to> <count> <mispred>  a taken branch: `from` is the branch
 *       instruction, `to` its target. Same function: a CFG edge count
 *       (recordBranch); different functions or `from` outside any function:
 *       a call/entry count (doInterBranch: the callee's ExecutionCount and
 *       entry block count, the caller's call-site count used by function
 *       ordering).
 *   F <start> <end> <count>  a straight-line run: every fall-through edge
 *       between the block containing `start` and the block containing
 *       `end` gets `count` (the blocks must be consecutive fall-throughs in
 *       BOLT's CFG, else the trace is counted as mismatching).
 *   S records are ignored unless `--ba`, so none are written.
 * We write one B per taken/jump edge (from = its branch instruction), one F
 * per fall-through edge (from = the last instruction of the source block,
 * to = the next block's start, so no block in between can make it
 * mismatch), one B per direct call or tail jump from a block that ran
 * (count = the block's frequency), and `B 0 <function> <n>` for the part of
 * a function's entry count that no written call explains (indirect calls,
 * callers outside the binary), since BOLT only gets entry counts from
 * incoming branches. Addresses are link-time, hex, as BOLT expects.
 *
 * Only functions with a profile of their own (HYBRID_MIN_FUNCTION_SAMPLES
 * samples, a CFG) get records, and so do only the calls into them: a call
 * record alone gives its callee an entry count, which makes BOLT treat the
 * callee as profiled and move it with every block but the entry cold.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "infer/hybrid.h"

static uint64_t to_count(double w)
{
	if (!(w > 0))
		return 0;
	uint64_t c = (uint64_t)(w * HYBRID_COUNT_SCALE + 0.5); /* no libm */
	return c < 1 ? 1 : c;
}

/* A call record, or (from == 0) a function entry. */
struct call_rec {
	uint64_t from, to, count;
};

struct writer {
	const struct elf_binary *b;
	FILE *f;
	unsigned flags;
	struct hybrid_write_stats hs;
	struct call_rec *calls; size_t ncalls, cap_calls;
	struct call_rec *entries; size_t nentries, cap_entries;
	/* Start addresses of the functions given records, ascending (they
	 * are written in address order). */
	uint64_t *profiled; size_t nprofiled, cap_profiled;
	struct core_err *err;
};

static int push_rec(struct writer *w, struct call_rec **v, size_t *n, size_t *cap,
		    struct call_rec r)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 256;
		struct call_rec *p = realloc(*v, nc * sizeof(*p));
		if (!p)
			return core_errf(w->err, OCOLOS_ENOMEM, "out of memory writing a profile");
		*v = p;
		*cap = nc;
	}
	(*v)[(*n)++] = r;
	return 0;
}

static int cmp_call_to(const void *a, const void *b)
{
	const struct call_rec *x = a, *y = b;
	return x->to < y->to ? -1 : x->to > y->to;
}

/* Edge records of one function. */
static void write_edges(struct writer *w, const struct cfg_func *cf, const double *wt)
{
	for (size_t e = 0; e < cf->nedges; e++) {
		const struct cfg_edge *ed = &cf->edges[e];
		uint64_t n = to_count(wt[e]);
		if (!n)
			continue;
		if (ed->kind == CFG_EDGE_FALLTHROUGH) {
			fprintf(w->f, "F %" PRIx64 " %" PRIx64 " %" PRIu64 "\n",
				cf->blocks[ed->src].last, cf->blocks[ed->dst].start, n);
			w->hs.fallthrough_records++;
		} else {
			fprintf(w->f, "B %" PRIx64 " %" PRIx64 " %" PRIu64 " 0\n",
				ed->branch, cf->blocks[ed->dst].start, n);
			w->hs.branch_records++;
		}
	}
}

/* Remember the calls of blocks that ran and the entry count. */
static int collect_calls(struct writer *w, const struct cfg_func *cf, const double *freq)
{
	for (size_t i = 0; i < cf->ncalls; i++) {
		uint64_t n = to_count(freq[cf->calls[i].block]);
		struct call_rec r = { cf->calls[i].site, cf->calls[i].target, n };
		if (n && push_rec(w, &w->calls, &w->ncalls, &w->cap_calls, r))
			return w->err->code;
	}
	struct call_rec e = { 0, cf->addr, to_count(freq[0]) };
	if (e.count && push_rec(w, &w->entries, &w->nentries, &w->cap_entries, e))
		return w->err->code;
	return 0;
}

/* CFG + estimate + records for the function `fi` with `n` samples `v`. */
static int do_function(struct writer *w, long fi, const uint64_t *v, size_t n)
{
	const struct elf_func *fn = &w->b->funcs[fi];
	uint8_t *code = malloc(fn->size ? fn->size : 1);
	struct cfg_func cf = { 0 };
	struct core_err quiet = { 0 };
	if (!code)
		return core_errf(w->err, OCOLOS_ENOMEM, "out of memory reading '%s'", fn->name);
	/* A function we cannot decode keeps no profile; the round goes on. */
	if (!fn->size || elf_read_vaddr(w->b, fn->addr, code, fn->size, &quiet) ||
	    infer_cfg_build(w->b->machine, code, fn->size, fn->addr, &cf, &quiet)) {
		free(code);
		w->hs.functions_nocfg++;
		return quiet.code == OCOLOS_ENOMEM ? core_errf(w->err, OCOLOS_ENOMEM, "%s", quiet.msg) : 0;
	}
	free(code);
	uint64_t *samples = calloc(cf.nblocks, sizeof(*samples));
	double *freq = calloc(cf.nblocks, sizeof(*freq));
	double *wt = calloc(cf.nedges + 1, sizeof(*wt));
	int rc = samples && freq && wt ? 0 : core_errf(w->err, OCOLOS_ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < n; i++) {
		long bb = infer_cfg_block_containing(&cf, v[i]);
		if (bb >= 0)
			samples[bb]++;
	}
	if (!rc)
		rc = infer_hybrid_estimate(&cf, samples, w->flags, freq, wt, &w->hs.est, w->err);
	if (!rc) {
		write_edges(w, &cf, wt);
		rc = collect_calls(w, &cf, freq);
		w->hs.functions_cfg++;
	}
	if (!rc && w->nprofiled == w->cap_profiled) {
		size_t nc = w->cap_profiled ? 2 * w->cap_profiled : 256;
		uint64_t *p = realloc(w->profiled, nc * sizeof(*p));
		if (!p)
			rc = core_errf(w->err, OCOLOS_ENOMEM, "out of memory writing a profile");
		else
			w->profiled = p, w->cap_profiled = nc;
	}
	if (!rc)
		w->profiled[w->nprofiled++] = fn->addr;
	free(samples);
	free(freq);
	free(wt);
	infer_cfg_func_free(&cf);
	return rc;
}

/* Calls, then the entry counts the calls leave unexplained. */
static void write_calls(struct writer *w)
{
	if (w->ncalls) /* qsort(NULL, 0, ...) is undefined */
		qsort(w->calls, w->ncalls, sizeof(*w->calls), cmp_call_to);
	size_t j = 0;
	for (size_t i = 0; i < w->ncalls; i++) {
		if (!bsearch(&w->calls[i].to, w->profiled, w->nprofiled, sizeof(*w->profiled),
			     core_cmp_u64)) {
			w->hs.calls_dropped++;
			continue;
		}
		fprintf(w->f, "B %" PRIx64 " %" PRIx64 " %" PRIu64 " 0\n", w->calls[i].from,
			w->calls[i].to, w->calls[i].count);
		w->hs.call_records++;
	}
	if (w->nentries)
		qsort(w->entries, w->nentries, sizeof(*w->entries), cmp_call_to);
	for (size_t i = 0; i < w->nentries; i++) {
		uint64_t in = 0;
		while (j < w->ncalls && w->calls[j].to < w->entries[i].to)
			j++;
		for (size_t k = j; k < w->ncalls && w->calls[k].to == w->entries[i].to; k++)
			in += w->calls[k].count;
		if (w->entries[i].count <= in)
			continue;
		fprintf(w->f, "B 0 %" PRIx64 " %" PRIu64 " 0\n", w->entries[i].to,
			w->entries[i].count - in);
		w->hs.entry_records++;
	}
}

/* One do_function() per sampled function, in address order. */
static int write_functions(struct writer *w, const uint64_t *v, size_t n,
			   struct infer_profile_stats *st)
{
	for (size_t i = 0; i < n;) {
		long fi = elf_func_containing(w->b, v[i]);
		const struct elf_func *fn = &w->b->funcs[fi];
		size_t j = i;
		while (j < n && v[j] < fn->addr + fn->size)
			j++;
		if (j == i)
			j++; /* size 0: elf_func_containing said inside; move on */
		for (size_t k = i; k < j; k++)
			st->addresses += k == i || v[k] != v[k - 1];
		st->functions++;
		if (j - i < HYBRID_MIN_FUNCTION_SAMPLES) {
			w->hs.functions_sparse++;
			i = j;
			continue;
		}
		int rc = do_function(w, fi, v + i, j - i);
		if (rc)
			return rc;
		i = j;
	}
	return 0;
}

int infer_write_hybrid_flags(const struct elf_binary *b, uint64_t bias,
			     const struct sample_set *s, const char *path, unsigned flags,
			     struct infer_profile_stats *st, struct hybrid_write_stats *hs,
			     struct core_err *err)
{
	memset(st, 0, sizeof(*st));
	uint64_t *v = NULL;
	size_t n = 0;
	int rc = infer_link_samples(b, bias, s, &v, &n, err);
	if (rc) {
		free(v);
		return rc;
	}
	st->in_binary = n;
	struct writer w = { .b = b, .flags = flags, .err = err };
	w.f = fopen(path, "we");
	if (!w.f) {
		free(v);
		return core_errf(err, OCOLOS_EIO, "cannot write profile '%s': %s", path, strerror(errno));
	}
	rc = write_functions(&w, v, n, st);
	/* The advice depends on the sampler: only sigprof's ("cpu-time") can
	 * be replaced by a denser one (issue 13: perf-ip was told to allow
	 * perf_event_open, which it had). */
	int sigprof = s->event && !strcmp(s->event, "cpu-time");
	if (!rc && !w.hs.functions_cfg && w.hs.functions_sparse)
		rc = core_errf(err, OCOLOS_ENOPROFILE,
			       "the %zu samples in '%s' are too sparse: none of their %u functions has %d "
			       "or more; lengthen opts.profile_ms or raise opts.sample_hz%s", n, b->path,
			       w.hs.functions_sparse, HYBRID_MIN_FUNCTION_SAMPLES,
			       sigprof ? ", or allow perf_event_open (kernel.perf_event_paranoid<=2) "
					 "for a perf sampler" : " (is the program busy while it is sampled?)");
	if (!rc)
		write_calls(&w);
	if (fclose(w.f) != 0 && !rc)
		rc = core_errf(err, OCOLOS_EIO, "cannot write profile '%s': %s", path, strerror(errno));
	if (hs)
		*hs = w.hs;
	free(v);
	free(w.calls);
	free(w.entries);
	free(w.profiled);
	return rc;
}

int infer_write_hybrid(const struct elf_binary *b, uint64_t bias, const struct sample_set *s,
		       const char *path, struct infer_profile_stats *st, struct core_err *err)
{
	return infer_write_hybrid_flags(b, bias, s, path, 0, st, NULL, err);
}

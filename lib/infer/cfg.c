/*
 * CFG construction from classified instructions (see cfg.h for the block
 * rules): leaders, blocks, edges, predecessor lists, calls and exits. The
 * same for every architecture; only the decoders differ. O(n log n) in the
 * number of instructions (binary searches for branch targets).
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "infer/cfg.h"

void infer_cfg_func_free(struct cfg_func *f)
{
	if (!f)
		return;
	free(f->blocks);
	free(f->edges);
	free(f->pred_edges);
	free(f->calls);
	memset(f, 0, sizeof(*f));
}

/* Index of the instruction starting exactly at `a`, or -1. */
static long insn_at(const struct cfg_insn *v, size_t n, uint64_t a)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].addr < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].addr == a ? (long)lo : -1;
}

long infer_cfg_block_containing(const struct cfg_func *f, uint64_t addr)
{
	size_t lo = 0, hi = f->nblocks;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->blocks[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->nblocks && f->blocks[lo].start <= addr ? (long)lo : -1;
}

static int ends_block(uint8_t kind)
{
	return kind == CFG_INSN_COND || kind == CFG_INSN_JUMP || kind == CFG_INSN_IJUMP ||
	       kind == CFG_INSN_RET || kind == CFG_INSN_TRAP;
}

static int falls_through(uint8_t kind)
{
	return kind == CFG_INSN_OTHER || kind == CFG_INSN_CALL || kind == CFG_INSN_ICALL ||
	       kind == CFG_INSN_COND;
}

/* Mark leaders in `lead` (n bytes). Fails if a branch lands inside an
 * instruction of the decoded range. */
static int mark_leaders(const struct cfg_insn *v, size_t n, uint64_t lo, uint64_t hi,
			uint8_t *lead, struct core_err *err)
{
	lead[0] = 1;
	for (size_t i = 0; i < n; i++) {
		if (ends_block(v[i].kind) && i + 1 < n)
			lead[i + 1] = 1;
		if (v[i].kind != CFG_INSN_COND && v[i].kind != CFG_INSN_JUMP)
			continue;
		if (v[i].target < lo || v[i].target >= hi)
			continue; /* leaves the function */
		long t = insn_at(v, n, v[i].target);
		if (t < 0)
			return core_errf(err, OCOLOS_EINVAL,
					 "branch at %#lx targets %#lx, inside an instruction "
					 "(data in code?): no CFG for this function",
					 (unsigned long)v[i].addr, (unsigned long)v[i].target);
		lead[t] = 1;
	}
	return 0;
}

static int make_blocks(const struct cfg_insn *v, size_t n, const uint8_t *lead,
		       uint32_t *blk_of, struct cfg_func *f, struct core_err *err)
{
	size_t nb = 0;
	for (size_t i = 0; i < n; i++)
		nb += lead[i];
	f->blocks = calloc(nb, sizeof(*f->blocks));
	if (!f->blocks)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory building a CFG");
	long b = -1;
	for (size_t i = 0; i < n; i++) {
		if (lead[i])
			f->blocks[++b].start = v[i].addr;
		struct cfg_block *bb = &f->blocks[b];
		bb->end = v[i].addr + v[i].len;
		bb->last = v[i].addr;
		bb->ninsns++;
		blk_of[i] = (uint32_t)b;
	}
	f->nblocks = nb;
	return 0;
}

static void add_edge(struct cfg_func *f, uint32_t src, uint32_t dst, uint8_t kind, uint64_t br)
{
	struct cfg_edge *e = &f->edges[f->nedges++];
	e->src = src;
	e->dst = dst;
	e->kind = kind;
	e->branch = br;
	f->blocks[src].nout++;
}

/* Out-edges of every block, from its last instruction. At most two each. */
static int make_edges(const struct cfg_insn *v, size_t n, const uint32_t *blk_of,
		      uint64_t lo, uint64_t hi, struct cfg_func *f, struct core_err *err)
{
	f->edges = calloc(2 * f->nblocks + 1, sizeof(*f->edges));
	if (!f->edges)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory building a CFG");
	for (uint32_t b = 0; b < f->nblocks; b++) {
		struct cfg_block *bb = &f->blocks[b];
		const struct cfg_insn *last = &v[insn_at(v, n, bb->last)];
		bb->first_out = (uint32_t)f->nedges;
		int inside = last->target >= lo && last->target < hi;
		if ((last->kind == CFG_INSN_COND || last->kind == CFG_INSN_JUMP) && inside)
			add_edge(f, b, blk_of[insn_at(v, n, last->target)],
				 last->kind == CFG_INSN_COND ? CFG_EDGE_TAKEN : CFG_EDGE_JUMP, last->addr);
		if (falls_through(last->kind) && b + 1 < f->nblocks)
			add_edge(f, b, b + 1, CFG_EDGE_FALLTHROUGH, last->addr);
	}
	return 0;
}

/* pred_edges: edge indices grouped by destination (counting sort). */
static int make_preds(struct cfg_func *f, struct core_err *err)
{
	f->pred_edges = malloc((f->nedges ? f->nedges : 1) * sizeof(*f->pred_edges));
	if (!f->pred_edges)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory building a CFG");
	for (size_t e = 0; e < f->nedges; e++)
		f->blocks[f->edges[e].dst].npred++;
	uint32_t at = 0;
	for (size_t b = 0; b < f->nblocks; b++) {
		f->blocks[b].first_in = at;
		at += f->blocks[b].npred;
		f->blocks[b].npred = 0;
	}
	for (size_t e = 0; e < f->nedges; e++) {
		struct cfg_block *d = &f->blocks[f->edges[e].dst];
		f->pred_edges[d->first_in + d->npred++] = (uint32_t)e;
	}
	return 0;
}

/* Direct calls anywhere, and direct branches that leave the function. */
static int make_calls(const struct cfg_insn *v, size_t n, const uint32_t *blk_of,
		      uint64_t lo, uint64_t hi, struct cfg_func *f, struct core_err *err)
{
	f->calls = malloc((n ? n : 1) * sizeof(*f->calls));
	if (!f->calls)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory building a CFG");
	for (size_t i = 0; i < n; i++) {
		int call = v[i].kind == CFG_INSN_CALL;
		int tail = (v[i].kind == CFG_INSN_JUMP || v[i].kind == CFG_INSN_COND) &&
			   (v[i].target < lo || v[i].target >= hi);
		if (!call && !tail)
			continue;
		struct cfg_call *c = &f->calls[f->ncalls++];
		c->site = v[i].addr;
		c->target = v[i].target;
		c->block = blk_of[i];
		c->tail = (uint8_t)tail;
	}
	return 0;
}

int infer_cfg_from_insns(const struct cfg_insn *insns, size_t n, uint64_t addr,
		   uint64_t size, struct cfg_func *out, struct core_err *err)
{
	memset(out, 0, sizeof(*out));
	out->addr = addr;
	out->size = size;
	if (!n)
		return core_errf(err, OCOLOS_EINVAL, "no instruction decodes at %#lx",
				 (unsigned long)addr);
	out->ninsns = (uint32_t)n;
	out->decoded = insns[n - 1].addr + insns[n - 1].len - addr;
	/* Branch targets past the decoded bytes count as leaving the function. */
	uint64_t lo = addr, hi = addr + out->decoded;
	uint8_t *lead = calloc(n, 1);
	uint32_t *blk_of = malloc(n * sizeof(*blk_of));
	int rc = lead && blk_of ? 0 : core_errf(err, OCOLOS_ENOMEM, "out of memory building a CFG");
	if (!rc)
		rc = mark_leaders(insns, n, lo, hi, lead, err);
	if (!rc)
		rc = make_blocks(insns, n, lead, blk_of, out, err);
	if (!rc)
		rc = make_edges(insns, n, blk_of, lo, hi, out, err);
	if (!rc)
		rc = make_preds(out, err);
	if (!rc)
		rc = make_calls(insns, n, blk_of, lo, hi, out, err);
	free(lead);
	free(blk_of);
	if (rc)
		infer_cfg_func_free(out);
	return rc;
}

int infer_cfg_build(uint16_t machine, const uint8_t *code, size_t len, uint64_t addr,
	      struct cfg_func *out, struct core_err *err)
{
	memset(out, 0, sizeof(*out));
	struct cfg_insn *v = NULL;
	size_t n = 0;
	int rc;
	if (machine == EM_X86_64)
		rc = infer_cfg_decode_x86(code, len, addr, &v, &n, err);
	else if (machine == EM_AARCH64)
		rc = infer_cfg_decode_aarch64(code, len, addr, &v, &n, err);
	else
		return core_errf(err, OCOLOS_ENOTSUP,
				 "no CFG builder for ELF machine %u (x86-64 and AArch64 only)", machine);
	if (!rc)
		rc = infer_cfg_from_insns(v, n, addr, len, out, err);
	free(v);
	return rc;
}

/*
 * The public calls on a context, and the one-call conveniences on the
 * calling process. Each call: enter (busy flag, process lock), check the
 * caller's result struct before anything is done to the target, run, write
 * the result within the caller's sz, leave (errors to the context and the
 * thread).
 */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "api/api.h"
#include "api/export.h"

typedef int (*stage_fn)(struct ocolos_ctx *, struct ocolos_stats *);

static int run_stage(struct ocolos_ctx *ctx, stage_fn fn, struct ocolos_stats *stats)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	ctx->entry_frame = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	struct ocolos_stats st;
	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	rc = api_check_out(stats, "ocolos_stats", &ctx->err);
	if (!rc)
		rc = fn(ctx, &st);
	api_write_out(stats, &st, sizeof(st));
	return api_leave(ctx, rc);
}

OCOLOS_DEFINE_0_2(ocolos_round)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_round)(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, api_round, stats);
}

OCOLOS_API int ocolos_stage_profile(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, api_stage_profile, stats);
}

OCOLOS_API int ocolos_stage_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, api_stage_optimize, stats);
}

OCOLOS_API int ocolos_stage_replace(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, api_stage_replace, stats);
}

OCOLOS_API int ocolos_add_samples(struct ocolos_ctx *ctx, const uint64_t *ips, size_t n)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	if (!ips || !n) {
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "ocolos_add_samples(): no samples (ips %s, "
			       "n %zu)", ips ? "set" : "NULL", n);
	} else if (ctx->ext_stacks.nstacks) {
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "ocolos_add_samples(): the context holds "
			       "%zu branch stacks from ocolos_add_branch_stacks(); one profile takes "
			       "IP samples or branch stacks, not both: run a round first",
			       ctx->ext_stacks.nstacks);
	} else if (ctx->ext_n + n > (1u << 26) || ctx->ext_n + n < n) {
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "ocolos_add_samples(): more than 2^26 "
			       "samples held (%zu + %zu): run a round to use them", ctx->ext_n, n);
	} else if (core_reserve((void **)&ctx->ext_ips, &ctx->ext_cap, ctx->ext_n + n,
				sizeof(*ctx->ext_ips))) {
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	if (!rc) {
		memcpy(ctx->ext_ips + ctx->ext_n, ips, n * sizeof(*ips));
		ctx->ext_n += n;
	}
	return api_leave(ctx, rc);
}

/* What the hardware records: perf's branch stacks hold at most 32 entries
 * (Intel LBR), AArch64's BRBE 64. */
enum { EXT_STACK_MAX = 64, EXT_BRANCHES_MAX = 1 << 26 };

OCOLOS_API int ocolos_add_branch_stacks(struct ocolos_ctx *ctx, const struct ocolos_branch *branches,
					const uint32_t *stack_len, size_t nstacks)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	struct sample_set *s = &ctx->ext_stacks;
	size_t total = 0, bad = nstacks;
	for (size_t k = 0; stack_len && k < nstacks && bad == nstacks; k++) {
		if (!stack_len[k] || stack_len[k] > EXT_STACK_MAX)
			bad = k;
		total += stack_len[k];
	}
	if (!branches || !stack_len || !nstacks) {
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "ocolos_add_branch_stacks(): no stacks "
			       "(branches %s, stack_len %s, nstacks %zu)", branches ? "set" : "NULL",
			       stack_len ? "set" : "NULL", nstacks);
	} else if (bad != nstacks) {
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "ocolos_add_branch_stacks(): stack %zu has "
			       "%u entries (1 to %d)", bad, stack_len[bad], EXT_STACK_MAX);
	} else if (ctx->ext_n) {
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "ocolos_add_branch_stacks(): the context "
			       "holds %zu IP samples from ocolos_add_samples(); one profile takes "
			       "IP samples or branch stacks, not both: run a round first",
			       ctx->ext_n);
	} else if (s->nbranches + total > EXT_BRANCHES_MAX) {
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "ocolos_add_branch_stacks(): more than "
			       "2^26 branches held (%zu + %zu): run a round to use them",
			       s->nbranches, total);
	} else {
		/* Room for all first, so that the call adds every stack or none. */
		if (sample_set_reserve(s, nstacks, total))
			rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	if (!rc) {
		const struct ocolos_branch *b = branches;
		for (size_t k = 0; k < nstacks; k++) {
			s->stack_start[s->nstacks++] = s->nbranches;
			for (uint32_t i = 0; i < stack_len[k]; i++, b++)
				s->branches[s->nbranches++] = (struct sample_branch){ b->from, b->to };
		}
	}
	return api_leave(ctx, rc);
}

OCOLOS_API int ocolos_stage_check(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, api_stage_check, stats);
}

static int run_switch(struct ocolos_ctx *ctx, int forward, struct ocolos_switch_stats *stats)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	struct ocolos_switch_stats st;
	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	rc = api_check_out(stats, "ocolos_switch_stats", &ctx->err);
	if (!rc)
		rc = api_switch(ctx, forward, &st);
	api_write_out(stats, &st, sizeof(st));
	return api_leave(ctx, rc);
}

OCOLOS_DEFINE_0_2(ocolos_revert)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_revert)(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats)
{
	return run_switch(ctx, 0, stats);
}

OCOLOS_DEFINE_0_2(ocolos_reapply)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_reapply)(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats)
{
	return run_switch(ctx, 1, stats);
}

OCOLOS_API int ocolos_retire(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, api_retire_call, stats);
}

OCOLOS_DEFINE_0_2(ocolos_where)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_where)(struct ocolos_ctx *ctx,
					     const struct ocolos_where_opts *opts,
					     struct ocolos_where_result *out)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	struct ocolos_where_result res;
	memset(&res, 0, sizeof(res));
	res.sz = sizeof(res);
	struct ocolos_where_opts u;
	rc = out ? api_check_out(out, "ocolos_where_result", &ctx->err)
		 : core_errf(&ctx->err, OCOLOS_EINVAL, "ocolos_where() needs a result struct");
	if (!rc)
		rc = API_READ_OPTS(opts, &u, ocolos_where_opts, &ctx->err);
	if (!rc)
		rc = api_where(ctx, u.window_ms ? u.window_ms : 500, u.sample_hz ? u.sample_hz : 2000,
			       &res);
	api_write_out(out, &res, sizeof(res));
	return api_leave(ctx, rc);
}

/* ---- conveniences: a temporary self context ---- */

OCOLOS_DEFINE_0_2(ocolos_optimize_self)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_optimize_self)(const struct ocolos_opts *opts,
						     struct ocolos_stats *stats)
{
	struct ocolos_ctx *ctx;
	int rc = ocolos_open_self(opts, &ctx);
	if (rc)
		return rc;
	rc = OCOLOS_IMPL_0_2(ocolos_round)(ctx, stats);
	ocolos_close(ctx);
	return rc;
}

OCOLOS_DEFINE_0_2(ocolos_revert_self)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_revert_self)(struct ocolos_switch_stats *stats)
{
	struct ocolos_ctx *ctx;
	int rc = ocolos_open_self(NULL, &ctx);
	if (rc)
		return rc;
	rc = OCOLOS_IMPL_0_2(ocolos_revert)(ctx, stats);
	ocolos_close(ctx);
	return rc;
}

OCOLOS_DEFINE_0_2(ocolos_reapply_self)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_reapply_self)(struct ocolos_switch_stats *stats)
{
	struct ocolos_ctx *ctx;
	int rc = ocolos_open_self(NULL, &ctx);
	if (rc)
		return rc;
	rc = OCOLOS_IMPL_0_2(ocolos_reapply)(ctx, stats);
	ocolos_close(ctx);
	return rc;
}

OCOLOS_DEFINE_0_2(ocolos_where_self)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_where_self)(const struct ocolos_where_opts *opts,
						  struct ocolos_where_result *out)
{
	struct ocolos_ctx *ctx;
	int rc = ocolos_open_self(NULL, &ctx);
	if (rc)
		return rc;
	rc = OCOLOS_IMPL_0_2(ocolos_where)(ctx, opts, out);
	ocolos_close(ctx);
	return rc;
}

/*
 * Public API on another process: a context per target pid, and the round
 * stages on it. The target needs nothing from libocolos; the ptrace target
 * (inject/target_ptrace.c) does what the in-process code does with plain
 * system calls.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"

OCOLOS_API int ocolos_open_pid(pid_t pid, const struct ocolos_pid_opts *opts,
			       struct ocolos_ctx **out)
{
	if (!out)
		return OCOLOS_EINVAL;
	*out = NULL;
	struct ocolos_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return OCOLOS_ENOMEM;
	atomic_flag_clear(&ctx->busy);
	struct ocolos_pid_opts u;
	int rc = api_read_opts(opts, &u, sizeof(u), &ctx->err);
	ctx->log = (struct core_log){ u.log_fn, u.log_user };
	ctx->pid = pid;
	ctx->opts = (struct round_opts){ .profile_ms = u.profile_ms, .sample_hz = u.sample_hz,
		.bolt_timeout_ms = u.bolt_timeout_ms, .stop_timeout_ms = u.stop_timeout_ms,
		.call_timeout_ms = u.call_timeout_ms, .keep_work_dir = u.keep_work_dir,
		.bolt_path = u.bolt_path, .binary_path = u.binary_path, .tmp_dir = u.tmp_dir,
		.bolt_extra_args = u.bolt_extra_args, .sampler = u.sampler,
		.edges = u.edges, .redirect_writable_slots = u.redirect_writable_slots };
	api_defaults(&ctx->opts);
	if (!rc && (pid <= 0 || pid == getpid()))
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, pid <= 0 ? "pid %d is not a process id"
			       : "pid %d is this process: use ocolos_optimize_self()", (int)pid);
	if (!rc && kill(pid, 0) != 0 && errno == ESRCH)
		rc = core_errf(&ctx->err, OCOLOS_ENOPROC, "process %d does not exist", (int)pid);
	if (!rc)
		rc = api_open_target(ctx);
	if (rc) {
		core_logf(&ctx->log, OCOLOS_LOG_ERROR, "%s", ctx->err.msg);
		core_ctx_release(ctx);
		free(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

OCOLOS_API void ocolos_close(struct ocolos_ctx *ctx)
{
	if (!ctx)
		return;
	core_ctx_release(ctx);
	free(ctx);
}

typedef int (*stage_fn)(struct ocolos_ctx *, struct ocolos_stats *);

static int run_stage(struct ocolos_ctx *ctx, stage_fn fn, struct ocolos_stats *stats)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	if (stats)
		memset(stats, 0, sizeof(*stats));
	return api_leave(ctx, fn(ctx, stats));
}

OCOLOS_API int ocolos_profile(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, core_profile, stats);
}

OCOLOS_API int ocolos_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, core_optimize, stats);
}

OCOLOS_API int ocolos_replace(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, core_replace, stats);
}

OCOLOS_API int ocolos_round(struct ocolos_ctx *ctx, struct ocolos_stats *stats)
{
	return run_stage(ctx, core_round, stats);
}

static int switch_ctx(struct ocolos_ctx *ctx, int forward, struct ocolos_switch_stats *stats)
{
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	struct ocolos_switch_stats local;
	return api_leave(ctx, core_switch(ctx, forward, stats ? stats : &local));
}

OCOLOS_API int ocolos_revert(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats)
{
	return switch_ctx(ctx, 0, stats);
}

OCOLOS_API int ocolos_reapply(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats)
{
	return switch_ctx(ctx, 1, stats);
}

OCOLOS_API int ocolos_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
			    struct ocolos_where_result *out)
{
	return api_where(ctx, opts, out);
}

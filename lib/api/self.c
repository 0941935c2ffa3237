/*
 * Public in-process API: ocolos_optimize_self() and friends, plus what all
 * public entry points share (options reading, the busy flag, errors).
 *
 * The in-process context is the library's only static state. It describes
 * the calling process's code image, which is itself process-wide: two
 * contexts for one process could only step on each other. A call holds the
 * context's busy flag, so a concurrent second call gets OCOLOS_EBUSY.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"

static struct ocolos_ctx self_ctx = { .busy = ATOMIC_FLAG_INIT };

OCOLOS_API const char *ocolos_version(void)
{
	return "0.1.0";
}

OCOLOS_API const char *ocolos_last_error(const struct ocolos_ctx *ctx)
{
	if (!ctx)
		ctx = &self_ctx;
	return ctx->err.msg;
}

int api_read_opts(const void *in, void *out, size_t known, struct core_err *err)
{
	memset(out, 0, known);
	if (!in)
		return 0;
	size_t sz;
	memcpy(&sz, in, sizeof(sz));
	if (sz < sizeof(size_t))
		return core_errf(err, OCOLOS_EINVAL, "opts.sz is %zu: fill options with OCOLOS_OPTS()", sz);
	memcpy(out, in, sz < known ? sz : known);
	for (size_t i = known; i < sz; i++)
		if (((const unsigned char *)in)[i])
			return core_errf(err, OCOLOS_EINVAL,
					 "opts has fields this libocolos (%s) does not know; upgrade the library",
					 ocolos_version());
	return 0;
}

void api_defaults(struct round_opts *o)
{
	if (!o->profile_ms)
		o->profile_ms = 4000; /* ~80k samples: see docs/benchmarks.md, "Samples" */
	if (!o->sample_hz)
		o->sample_hz = 10000;
	if (!o->bolt_timeout_ms)
		o->bolt_timeout_ms = 300000;
	if (!o->stop_timeout_ms)
		o->stop_timeout_ms = 2000;
	if (!o->call_timeout_ms)
		o->call_timeout_ms = 2000;
	if (!o->stop_signal)
		o->stop_signal = SIGRTMIN + 7;
}

int api_enter(struct ocolos_ctx *ctx)
{
	if (!ctx)
		return OCOLOS_EINVAL;
	if (atomic_flag_test_and_set(&ctx->busy))
		return OCOLOS_EBUSY; /* the running call owns ctx->err */
	core_err_clear(&ctx->err);
	return 0;
}

int api_leave(struct ocolos_ctx *ctx, int rc)
{
	if (rc && !ctx->err.msg[0])
		core_errf(&ctx->err, rc, "%s", ocolos_strerror(rc));
	if (rc)
		core_logf(&ctx->log, OCOLOS_LOG_ERROR, "%s", ctx->err.msg);
	atomic_flag_clear(&ctx->busy);
	return rc;
}

int api_open_target(struct ocolos_ctx *ctx)
{
	if (ctx->proc_target_open)
		return 0;
	int rc = proc_target_open(&ctx->target, ctx->pid, &ctx->log, &ctx->err);
	if (rc)
		return rc;
	ctx->proc_target_open = 1;
	ctx->target.stop_signal = ctx->opts.stop_signal;
	ctx->target.stop_timeout_ms = ctx->opts.stop_timeout_ms;
	ctx->target.call_timeout_ms = ctx->opts.call_timeout_ms;
	return 0;
}

/* The self context's options for this call. */
static int self_configure(const struct ocolos_self_opts *opts)
{
	struct ocolos_ctx *ctx = &self_ctx;
	struct ocolos_self_opts u;
	int rc = api_read_opts(opts, &u, sizeof(u), &ctx->err);
	if (rc)
		return rc;
	if (u.stop_signal && (u.stop_signal < SIGRTMIN || u.stop_signal > SIGRTMAX))
		return core_errf(&ctx->err, OCOLOS_EINVAL,
				 "opts.stop_signal %d is not a real-time signal (SIGRTMIN..SIGRTMAX)",
				 u.stop_signal);
	ctx->opts = (struct round_opts){ .profile_ms = u.profile_ms, .sample_hz = u.sample_hz,
		.bolt_timeout_ms = u.bolt_timeout_ms, .stop_timeout_ms = u.stop_timeout_ms,
		.stop_signal = u.stop_signal, .keep_work_dir = u.keep_work_dir,
		.bolt_path = u.bolt_path, .binary_path = u.binary_path, .tmp_dir = u.tmp_dir,
		.bolt_extra_args = u.bolt_extra_args, .sampler = u.sampler,
		.edges = u.edges, .redirect_writable_slots = u.redirect_writable_slots };
	api_defaults(&ctx->opts);
	ctx->log = (struct core_log){ u.log_fn, u.log_user };
	if (ctx->pid != getpid()) { /* first call, or first after a fork */
		core_ctx_release(ctx);
		ctx->pid = getpid();
	}
	rc = api_open_target(ctx);
	ctx->target.stop_signal = ctx->opts.stop_signal;
	ctx->target.stop_timeout_ms = ctx->opts.stop_timeout_ms;
	return rc;
}

OCOLOS_API int ocolos_optimize_self(const struct ocolos_self_opts *opts,
				    struct ocolos_stats *stats)
{
	struct ocolos_ctx *ctx = &self_ctx;
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	if (stats)
		memset(stats, 0, sizeof(*stats));
	rc = self_configure(opts);
	if (!rc)
		rc = core_round(ctx, stats);
	return api_leave(ctx, rc);
}

/* Revert (forward = 0) or re-apply (forward = 1) the last round. */
static int switch_self(int forward, struct ocolos_switch_stats *stats)
{
	struct ocolos_ctx *ctx = &self_ctx;
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	struct ocolos_switch_stats local;
	rc = core_switch(ctx, forward, stats ? stats : &local);
	return api_leave(ctx, rc);
}

OCOLOS_API int ocolos_revert_self(struct ocolos_switch_stats *stats)
{
	return switch_self(0, stats);
}

OCOLOS_API int ocolos_reapply_self(struct ocolos_switch_stats *stats)
{
	return switch_self(1, stats);
}

int api_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
	      struct ocolos_where_result *out)
{
	if (!out)
		return OCOLOS_EINVAL;
	memset(out, 0, sizeof(*out));
	int rc = api_enter(ctx);
	if (rc)
		return rc;
	struct ocolos_where_opts u;
	rc = api_read_opts(opts, &u, sizeof(u), &ctx->err);
	if (!rc)
		rc = core_where(ctx, u.window_ms ? u.window_ms : 500, u.sample_hz ? u.sample_hz : 2000, out);
	return api_leave(ctx, rc);
}

OCOLOS_API int ocolos_where_self(const struct ocolos_where_opts *opts, struct ocolos_where_result *out)
{
	if (self_ctx.pid != getpid()) { /* before any round, or after a fork */
		core_ctx_release(&self_ctx);
		self_ctx.pid = getpid();
	}
	return api_where(&self_ctx, opts, out);
}

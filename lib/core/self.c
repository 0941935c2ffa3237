/*
 * Public in-process API: ocolos_optimize_self() and friends.
 *
 * The in-process context is the library's only static state. It describes
 * the calling process's code image, which is itself process-wide: two
 * contexts for one process could only step on each other. A round holds
 * its busy flag, so a concurrent second call gets OCOLOS_EBUSY.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"

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

/* Copy the caller's options (of whatever size they were compiled with,
 * given by their leading `size_t sz`) into a struct of `known` bytes;
 * non-zero bytes beyond what we know are refused, since they are settings
 * this library version would silently ignore. `in` may be NULL. */
static int read_opts(const void *in, void *out, size_t known, struct core_err *err)
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

static void apply_defaults(const struct ocolos_self_opts *u, struct round_opts *o)
{
	o->profile_ms = u->profile_ms ? u->profile_ms : 2000;
	o->sample_hz = u->sample_hz ? u->sample_hz : 10000;
	o->bolt_timeout_ms = u->bolt_timeout_ms ? u->bolt_timeout_ms : 300000;
	o->stop_timeout_ms = u->stop_timeout_ms ? u->stop_timeout_ms : 2000;
	o->stop_signal = u->stop_signal ? u->stop_signal : SIGRTMIN + 7;
	o->keep_work_dir = u->keep_work_dir;
	o->bolt_path = u->bolt_path;
	o->binary_path = u->binary_path;
	o->tmp_dir = u->tmp_dir;
	o->bolt_extra_args = u->bolt_extra_args;
}

OCOLOS_API int ocolos_optimize_self(const struct ocolos_self_opts *opts,
				    struct ocolos_stats *stats)
{
	struct ocolos_ctx *ctx = &self_ctx;
	if (atomic_flag_test_and_set(&ctx->busy))
		return OCOLOS_EBUSY; /* the running round owns ctx->err */
	struct ocolos_stats local;
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	core_err_clear(&ctx->err);
	struct ocolos_self_opts u;
	int rc = read_opts(opts, &u, sizeof(u), &ctx->err);
	if (!rc) {
		struct round_opts o;
		apply_defaults(&u, &o);
		ctx->log = (struct core_log){ u.log_fn, u.log_user };
		ctx->pid = getpid();
		if (o.stop_signal < SIGRTMIN || o.stop_signal > SIGRTMAX)
			rc = core_errf(&ctx->err, OCOLOS_EINVAL,
				       "opts.stop_signal %d is not a real-time signal (SIGRTMIN..SIGRTMAX)",
				       o.stop_signal);
		else
			rc = core_round_self(ctx, &o, stats);
	}
	if (rc && !ctx->err.msg[0])
		core_errf(&ctx->err, rc, "%s", ocolos_strerror(rc));
	if (rc)
		core_logf(&ctx->log, OCOLOS_LOG_ERROR, "%s", ctx->err.msg);
	atomic_flag_clear(&ctx->busy);
	return rc;
}

/* Revert (forward = 0) or re-apply (forward = 1) the last round. */
static int switch_self(int forward, struct ocolos_switch_stats *stats)
{
	struct ocolos_ctx *ctx = &self_ctx;
	if (atomic_flag_test_and_set(&ctx->busy))
		return OCOLOS_EBUSY;
	struct ocolos_switch_stats local;
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	core_err_clear(&ctx->err);
	int rc;
	if (!ctx->live)
		rc = core_errf(&ctx->err, OCOLOS_EINVAL,
			       "no optimized code to switch: run ocolos_optimize_self() first");
	else if (ctx->redirected == forward)
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, forward
			       ? "the optimized code is already in use"
			       : "the program already runs its original code");
	else if (!(rc = core_switch_self(ctx, &ctx->applied.plan, forward, stats)))
		ctx->redirected = forward;
	atomic_flag_clear(&ctx->busy);
	return rc;
}

OCOLOS_API int ocolos_revert_self(struct ocolos_switch_stats *stats)
{
	return switch_self(0, stats);
}

OCOLOS_API int ocolos_reapply_self(struct ocolos_switch_stats *stats)
{
	return switch_self(1, stats);
}

OCOLOS_API int ocolos_where_self(const struct ocolos_where_opts *opts,
				 struct ocolos_where *out)
{
	struct ocolos_ctx *ctx = &self_ctx;
	if (!out)
		return OCOLOS_EINVAL;
	memset(out, 0, sizeof(*out));
	if (atomic_flag_test_and_set(&ctx->busy))
		return OCOLOS_EBUSY;
	core_err_clear(&ctx->err);
	struct ocolos_where_opts u;
	int rc = read_opts(opts, &u, sizeof(u), &ctx->err);
	if (!rc)
		rc = core_where_self(ctx, u.window_ms ? u.window_ms : 500,
				     u.sample_hz ? u.sample_hz : 2000, out);
	atomic_flag_clear(&ctx->busy);
	return rc;
}

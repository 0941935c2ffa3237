/*
 * Contexts: opening one on the calling process or on another by pid, the
 * options it keeps (copied: the caller's strings may go away), the busy
 * flag and the process lock every call takes, the last error (per context
 * and per thread), and the library's version.
 *
 * The self state. The calling process has one code image, so what rounds
 * did to it (api_state) is process-wide, shared by every self context, and
 * `self_lock` lets one call at a time use it; the others get OCOLOS_EBUSY
 * rather than wait (a round can take seconds). A fork() copies the state,
 * which stays true of the child (its memory is a copy, C1 and the patches
 * included); the lock is re-made in the child, since the thread that held
 * it does not exist there. A context used after a fork reopens its target
 * (the /proc/PID/mem it held is the parent's).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "core/util.h"
#include "api/export.h"

static struct api_state self_state;
static pthread_mutex_t self_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* The message of the calling thread's last failed call (ocolos_last_error(NULL)). */
static _Thread_local char thread_error[CORE_ERR_MSG_MAX];

static void self_lock_reinit(void)
{
	pthread_mutex_init(&self_lock, NULL);
}

static void install_atfork(void)
{
	pthread_atfork(NULL, NULL, self_lock_reinit);
}

OCOLOS_API const char *ocolos_version(void)
{
	return OCOLOS_VERSION_STRING;
}

OCOLOS_API unsigned ocolos_version_number(void)
{
	return OCOLOS_VERSION_NUMBER;
}

OCOLOS_API const char *ocolos_last_error(const struct ocolos_ctx *ctx)
{
	return ctx ? ctx->err.msg : thread_error;
}

int api_refuse(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(thread_error, sizeof(thread_error), fmt, ap);
	va_end(ap);
	return rc;
}

/* A signal handler may only touch lock-free atomics (C11 7.14.1.1); the
 * cancel flag is the one thing ocolos_cancel() writes. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "ocolos_cancel() needs a lock-free atomic_int");

OCOLOS_API void ocolos_cancel(struct ocolos_ctx *ctx)
{
	if (ctx)
		atomic_store(&ctx->cancel, 1);
}

int api_check_cancel(struct ocolos_ctx *ctx, const char *where)
{
	if (!atomic_load(&ctx->cancel))
		return 0;
	return core_errf(&ctx->err, OCOLOS_ECANCELED,
			 "canceled by ocolos_cancel() %s: the round was abandoned; process %d keeps "
			 "the code it ran, and its reservation and work directory are removed",
			 where, (int)ctx->pid);
}

int api_open_target(struct ocolos_ctx *ctx)
{
	if (ctx->target_open)
		return 0;
	int rc = proc_target_open(&ctx->target, ctx->pid, &ctx->log, &ctx->err);
	if (rc)
		return rc;
	ctx->target_open = 1;
	ctx->target.stop_signal = ctx->opts.stop_signal;
	ctx->target.stop_timeout_ms = ctx->opts.stop_timeout_ms;
	ctx->target.call_timeout_ms = ctx->opts.call_timeout_ms;
	return 0;
}

int api_enter(struct ocolos_ctx *ctx)
{
	if (!ctx)
		return api_refuse(OCOLOS_EINVAL, "the context is NULL: open one with ocolos_open_self() "
				  "or ocolos_open_pid()");
	if (atomic_flag_test_and_set(&ctx->busy))
		return api_refuse(OCOLOS_EBUSY, "another call is running on this context; a context "
				  "is used by one thread at a time");
	if (ctx->self && pthread_mutex_trylock(&self_lock) != 0) {
		atomic_flag_clear(&ctx->busy);
		return api_refuse(OCOLOS_EBUSY, "another call on this process's code is running "
				  "(another self context, or ocolos_*_self() in another thread)");
	}
	core_err_clear(&ctx->err);
	if (ctx->self && ctx->pid != getpid()) {
		/* First call after a fork: the context describes the child now. */
		api_ctx_release(ctx);
		ctx->pid = getpid();
	}
	/* A request made while no call ran stops this one before it starts. */
	int rc = api_check_cancel(ctx, "before the call started");
	if (!rc)
		rc = api_open_target(ctx);
	return rc ? api_leave(ctx, rc) : 0;
}

int api_leave(struct ocolos_ctx *ctx, int rc)
{
	if (rc && !ctx->err.msg[0])
		core_errf(&ctx->err, rc, "%s", ocolos_strerror(rc));
	if (rc) {
		core_logf(&ctx->log, OCOLOS_LOG_ERROR, "%s", ctx->err.msg);
		snprintf(thread_error, sizeof(thread_error), "%s", ctx->err.msg);
	}
	/* Whatever stage saw the request, nothing of the round may outlive it
	 * (a round profiled by an earlier call is pending here too). */
	if (rc == OCOLOS_ECANCELED)
		api_drop_pending(ctx);
	/* A request is for the call it found running (or the next one): once
	 * that call returns, it is spent, so a late one cannot stop a call
	 * made much later. */
	atomic_store(&ctx->cancel, 0);
	if (ctx->self)
		pthread_mutex_unlock(&self_lock);
	atomic_flag_clear(&ctx->busy);
	return rc;
}

/* The strings of `u` copied into one allocation, pointed at by `o`: the
 * single strings, then each NULL-ended list (a table of pointers, then
 * its strings). */
static int copy_strings(struct ocolos_ctx *ctx, const struct ocolos_opts *u)
{
	const char *one[] = { u->bolt_path, u->binary_path, u->tmp_dir, u->profile_export,
			      u->artifact_out, u->artifact_in };
	const char **dst[] = { &ctx->opts.bolt_path, &ctx->opts.binary_path, &ctx->opts.tmp_dir,
			       &ctx->opts.profile_export, &ctx->opts.artifact_out,
			       &ctx->opts.artifact_in };
	const char *const *lists[] = { u->bolt_extra_args, u->profile_from };
	const char *const **ldst[] = { &ctx->opts.bolt_extra_args, &ctx->opts.profile_from };
	enum { NONE = 6, NLISTS = 2 };
	size_t bytes = 1, nitems[NLISTS] = { 0 };
	for (size_t i = 0; i < NONE; i++)
		bytes += one[i] ? strlen(one[i]) + 1 : 0;
	for (size_t l = 0; l < NLISTS; l++) {
		if (!lists[l])
			continue;
		for (; lists[l][nitems[l]]; nitems[l]++)
			bytes += strlen(lists[l][nitems[l]]) + 1;
		bytes += (nitems[l] + 1) * sizeof(char *);
	}
	char *mem = malloc(bytes + NLISTS * sizeof(char *)); /* slack: aligned tables */
	if (!mem)
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	ctx->strings = mem;
	char *p = mem;
	for (size_t l = 0; l < NLISTS; l++) {
		*ldst[l] = NULL;
		if (!lists[l])
			continue;
		char **table = (char **)(void *)p;
		p += (nitems[l] + 1) * sizeof(char *);
		*ldst[l] = (const char *const *)table;
		table[nitems[l]] = NULL;
		for (size_t i = 0; i < nitems[l]; i++) {
			table[i] = strcpy(p, lists[l][i]);
			p += strlen(lists[l][i]) + 1;
		}
		/* The next table starts aligned (the tables come first, strings
		 * of the last list last). */
		size_t off = (size_t)(p - mem), al = sizeof(char *);
		p = mem + (off + al - 1) / al * al;
	}
	for (size_t i = 0; i < NONE; i++) {
		*dst[i] = NULL;
		if (one[i]) {
			*dst[i] = strcpy(p, one[i]);
			p += strlen(one[i]) + 1;
		}
	}
	return 0;
}

#define DEFAULT_MAX_OVERHEAD 20 /* permille: 2 % */

/* The sampling window's options, checked, with their defaults: a window
 * that ends when the profile has converged (the default: 1000 to 20000 ms,
 * 30 permille), or a fixed profile_ms when the caller sets one.
 * docs/api.md, "The sampling window", says why converging is the default
 * (on fe: 2.49-2.60x instead of 2.21-2.29x for the fixed 4 s). */
static int configure_window(struct ocolos_ctx *ctx, const struct ocolos_opts *u)
{
	struct api_opts *o = &ctx->opts;
	if (u->max_overhead_permille > 1000)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.max_overhead_permille %u is more "
				 "than 1000 (all of the sampled threads' CPU time)",
				 u->max_overhead_permille);
	if (u->profile_converge_permille > 1000)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.profile_converge_permille %u is "
				 "more than 1000 (the distance is at most 1000)",
				 u->profile_converge_permille);
	o->converge = !u->profile_ms;
	/* A converging window's length is the library's choice, so is its
	 * cost: by default at most DEFAULT_MAX_OVERHEAD of the sampled
	 * threads' CPU time (a service pays the sampling, not a benchmark),
	 * the window lengthened instead (round.c: sample_window). A fixed
	 * window is the caller's: no limit unless asked. 1000 (all of their
	 * CPU time) is no limit. */
	o->max_overhead_permille = u->max_overhead_permille == 1000 ? 0
				 : u->max_overhead_permille ? u->max_overhead_permille
				 : o->converge ? DEFAULT_MAX_OVERHEAD : 0;
	if (!o->converge) {
		if (u->profile_min_ms || u->profile_converge_permille)
			return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.profile_ms %u is a fixed "
					 "window: leave profile_min_ms and profile_converge_permille "
					 "0, or profile_ms 0 to sample until the profile converges",
					 u->profile_ms);
		o->profile_ms = u->profile_ms;
		o->profile_max_ms = u->profile_max_ms ? u->profile_max_ms
				  : o->profile_ms > UINT32_MAX / 4 ? UINT32_MAX : 4 * o->profile_ms;
		if (o->profile_max_ms < o->profile_ms)
			return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.profile_max_ms %u is shorter "
					 "than the fixed window profile_ms %u", o->profile_max_ms,
					 o->profile_ms);
		return 0;
	}
	o->profile_ms = 0;
	o->profile_min_ms = u->profile_min_ms ? u->profile_min_ms : 1000;
	o->profile_max_ms = u->profile_max_ms ? u->profile_max_ms : 20000;
	o->converge_permille = u->profile_converge_permille ? u->profile_converge_permille : 30;
	if (u->profile_min_ms && u->profile_max_ms && u->profile_min_ms > u->profile_max_ms)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.profile_min_ms %u is longer than "
				 "opts.profile_max_ms %u", o->profile_min_ms, o->profile_max_ms);
	/* One bound set past the other's default: the default gives way. */
	if (o->profile_min_ms > o->profile_max_ms) {
		if (u->profile_max_ms)
			o->profile_min_ms = o->profile_max_ms;
		else
			o->profile_max_ms = o->profile_min_ms;
	}
	return 0;
}

/* Options with their defaults, checked. */
static int configure(struct ocolos_ctx *ctx, const struct ocolos_opts *in)
{
	struct ocolos_opts u;
	int rc = API_READ_OPTS(in, &u, ocolos_opts, &ctx->err);
	if (rc)
		return rc;
	ctx->log = (struct core_log){ u.log_fn, u.log_user };
	if (u.stop_signal && (u.stop_signal < SIGRTMIN || u.stop_signal > SIGRTMAX))
		return core_errf(&ctx->err, OCOLOS_EINVAL,
				 "opts.stop_signal %d is not a real-time signal (SIGRTMIN..SIGRTMAX)",
				 u.stop_signal);
	if (u.sampler < 0 || u.sampler > OCOLOS_SAMPLER_SIGPROF)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.sampler %d is not an enum "
				 "ocolos_sampler value", u.sampler);
	if (u.edges < 0 || u.edges > OCOLOS_EDGES_BOLT)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.edges %d is not an enum "
				 "ocolos_edges value", u.edges);
	if (u.pointer_slots < 0 || u.pointer_slots > OCOLOS_SLOTS_NONE)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.pointer_slots %d is not an enum "
				 "ocolos_pointer_slots value", u.pointer_slots);
	if (u.benefit_min_ratio != u.benefit_min_ratio || u.benefit_min_ratio < 0 ||
	    u.benefit_min_ratio > 100)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.benefit_min_ratio %g is not a ratio "
				 "between 0 and 100 (1.0: at least as fast as the original)",
				 u.benefit_min_ratio);
	if (u.benefit_pairs > 100 || u.benefit_window_ms > 60000)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.benefit_pairs %u / benefit_window_ms "
				 "%u out of range (at most 100 pairs of 60000 ms)", u.benefit_pairs,
				 u.benefit_window_ms);
	if (!u.work_fn && (u.benefit_pairs || u.benefit_window_ms || u.benefit_min_ratio))
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.benefit_* set without opts.work_fn: "
				 "the benefit check needs a work counter");
	if (u.profile_from && !u.profile_from[0])
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.profile_from is an empty list: "
				 "NULL to sample, or the files to read");
	if (u.profile_export && !u.profile_export[0])
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.profile_export is an empty path");
	if ((u.artifact_out && !u.artifact_out[0]) || (u.artifact_in && !u.artifact_in[0]))
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.artifact_%s is an empty path",
				 u.artifact_in && !u.artifact_in[0] ? "in" : "out");
	if (u.artifact_in && (u.artifact_out || u.profile_from || u.profile_export))
		return core_errf(&ctx->err, OCOLOS_EINVAL, "opts.artifact_in applies optimized code "
				 "without a profile or BOLT: it cannot go with opts.artifact_out, "
				 "profile_from or profile_export");
	struct api_opts *o = &ctx->opts;
	*o = (struct api_opts){ .profile_ms = u.profile_ms, .sample_hz = u.sample_hz,
		.bolt_timeout_ms = u.bolt_timeout_ms, .stop_timeout_ms = u.stop_timeout_ms,
		.call_timeout_ms = u.call_timeout_ms, .stop_signal = u.stop_signal,
		.keep_work_dir = u.keep_work_dir, .sampler = u.sampler, .edges = u.edges,
		.pointer_slots = u.pointer_slots, .work_fn = u.work_fn, .work_user = u.work_user,
		.benefit_pairs = u.benefit_pairs ? u.benefit_pairs : 5,
		.benefit_window_ms = u.benefit_window_ms ? u.benefit_window_ms : 300,
		.benefit_min_ratio = u.benefit_min_ratio ? u.benefit_min_ratio : 1.0 };
	rc = configure_window(ctx, &u);
	if (rc)
		return rc;
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
	return copy_strings(ctx, &u);
}

static void ctx_free(struct ocolos_ctx *ctx)
{
	api_ctx_release(ctx);
	if (ctx->state == &ctx->own_state)
		api_state_free(&ctx->own_state);
	free(ctx->strings);
	core_free_clear(ctx->ext_ips, ctx->ext_cap * sizeof(*ctx->ext_ips));
	sample_set_free(&ctx->ext_stacks);
	free(ctx);
}

/* A new context for `pid` (0: the calling process). On failure the reason
 * is the thread's last error too. */
static int ctx_open(pid_t pid, const struct ocolos_opts *opts, struct ocolos_ctx **out)
{
	if (!out)
		return api_refuse(OCOLOS_EINVAL, "the ctx argument is NULL");
	*out = NULL;
	struct ocolos_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return api_refuse(OCOLOS_ENOMEM, "out of memory");
	atomic_flag_clear(&ctx->busy);
	atomic_init(&ctx->cancel, 0);
	ctx->self = pid == 0;
	ctx->pid = ctx->self ? getpid() : pid;
	ctx->state = ctx->self ? &self_state : &ctx->own_state;
	int rc = configure(ctx, opts);
	if (!rc && !ctx->self && pid < 0)
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "pid %d is not a process id", (int)pid);
	else if (!rc && !ctx->self && pid == getpid())
		rc = core_errf(&ctx->err, OCOLOS_EINVAL,
			       "pid %d is this process: use ocolos_open_self()", (int)pid);
	else if (!rc && !ctx->self && kill(pid, 0) != 0 && errno == ESRCH)
		rc = core_errf(&ctx->err, OCOLOS_ENOPROC,
			       "process %d does not exist (it exited, or the pid is wrong)", (int)pid);
	if (!rc)
		rc = api_open_target(ctx);
	if (ctx->self)
		pthread_once(&atfork_once, install_atfork);
	if (rc) {
		core_logf(&ctx->log, OCOLOS_LOG_ERROR, "%s", ctx->err.msg);
		api_refuse(rc, "%s", ctx->err.msg);
		ctx_free(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

OCOLOS_API int ocolos_open_self(const struct ocolos_opts *opts, struct ocolos_ctx **ctx)
{
	return ctx_open(0, opts, ctx);
}

OCOLOS_DEFINE_0_2(ocolos_open_pid)
OCOLOS_API int OCOLOS_IMPL_0_2(ocolos_open_pid)(pid_t pid, const struct ocolos_opts *opts,
						struct ocolos_ctx **ctx)
{
	if (pid == 0)
		return api_refuse(OCOLOS_EINVAL, "pid 0 is not a process id");
	return ctx_open(pid, opts, ctx);
}

OCOLOS_API void ocolos_close(struct ocolos_ctx *ctx)
{
	if (ctx)
		ctx_free(ctx);
}

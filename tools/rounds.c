/*
 * Rounds on a pid, shared by the two tools: open a context, run each round
 * stage by stage (ocolos_stage_profile / _optimize / _replace, so that
 * every stage gets its progress lines and elapsed time), report it, and
 * with --every run the next round after a pause — no revert in between:
 * each round profiles the code in use and makes the next generation. The
 * library keeps what the rounds did in the process itself, so a later
 * agent (or this one after a restart) continues where this one stopped;
 * --revert goes back to the original code.
 *
 * Stopping. SIGINT/SIGTERM land in tool_request_stop(), which records the
 * signal and calls ocolos_cancel() on the open context: the running call
 * returns OCOLOS_ECANCELED at its next safe point, having left nothing of
 * the round in the target. The library spends a cancel request when a call
 * returns, so one that arrives after a call's last safe point is dropped:
 * the recorded signal is therefore checked before every stage too, and no
 * further stage or round starts once it is set. The tool never exits from
 * the handler: it returns only after the library did, so the target is
 * never left half-done by the tool's own exit.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

volatile sig_atomic_t tool_stop_signal;

/* The context a signal handler may cancel: set while one is open. Only
 * this thread opens and closes it, and a handler runs on this thread too
 * (the tools and the library start no thread), so the handler never sees
 * a context being freed. Lock-free, as a handler needs. */
static _Atomic(struct ocolos_ctx *) running_ctx;

void tool_request_stop(int sig)
{
	if (!tool_stop_signal)
		tool_stop_signal = sig;
	struct ocolos_ctx *ctx = atomic_load(&running_ctx);
	if (ctx)
		ocolos_cancel(ctx);
}

static void on_stop(int sig)
{
	int saved = errno;
	tool_request_stop(sig);
	errno = saved;
}

void tool_install_stop_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void log_cb(enum ocolos_log_level level, const char *msg, void *user)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const struct tool_cfg *cfg = user;
	if ((int)level <= (cfg->verbose > 1 ? OCOLOS_LOG_DEBUG : OCOLOS_LOG_INFO))
		fprintf(stderr, "%s: libocolos %s: %s\n", cfg->prog, names[level & 3], msg);
}

static const char *signal_name(int sig)
{
	return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP"
	       : sig == SIGQUIT ? "SIGQUIT" : "a signal";
}

/* Wait `ms` in 100 ms steps unless told to stop, the target is gone or
 * cfg->poll says so. Returns -1 if the rounds should end. */
static int pause_between(uint32_t ms, pid_t pid, const struct tool_cfg *cfg)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
	for (;;) {
		if (tool_stop_signal || (kill(pid, 0) != 0 && errno == ESRCH) ||
		    (cfg->poll && cfg->poll(cfg->poll_user)))
			return -1;
		uint64_t t = now_ns();
		if (t >= end)
			return 0;
		uint64_t step = end - t < 100000000ull ? end - t : 100000000ull;
		struct timespec ts = { 0, (long)step };
		nanosleep(&ts, NULL);
	}
}

/* What a stage did, for its progress line. */
static void stage_done(unsigned stage, const struct ocolos_stats *st, char *buf, size_t size)
{
	if (stage == 0 && !strcmp(st->sampler, "artifact"))
		snprintf(buf, size, "artifact checked, its range reserved");
	else if (stage == 1 && !strcmp(st->sampler, "artifact"))
		snprintf(buf, size, "the artifact's BOLT output moves %u functions (no llvm-bolt "
			 "run)", st->functions_moved);
	else if (stage == 0)
		snprintf(buf, size, "%s, %llu samples (%llu in the binary), %u threads",
			 st->sampler[0] ? st->sampler : "-", (unsigned long long)st->samples,
			 (unsigned long long)st->samples_in_binary, st->threads_sampled);
	else if (stage == 1)
		snprintf(buf, size, "llvm-bolt moved %u functions", st->functions_moved);
	else
		snprintf(buf, size, "pause %.3f ms, %u call sites and %u entries redirected",
			 st->pause_ns / 1e6, st->call_sites_patched, st->entries_patched);
}

/* One round, stage by stage; fills `r` (its st points at `st`). */
static void run_round(struct ocolos_ctx *ctx, const struct tool_cfg *cfg, struct tool_round *r,
		      struct ocolos_stats *st)
{
	static const struct {
		const char *name, *doing;
		int (*fn)(struct ocolos_ctx *, struct ocolos_stats *);
	} stages[] = {
		{ "profile", "sampling", ocolos_stage_profile },
		{ "optimize", "running llvm-bolt", ocolos_stage_optimize },
		{ "replace", "mapping the new code and redirecting to it", ocolos_stage_replace },
		{ "check", "alternating the original and the new code", ocolos_stage_check },
	};
	unsigned nstages = cfg->work_cmd ? 4 : 3;
	static char stopped[128];
	uint64_t t0 = now_ns();
	r->rc = 0;
	for (unsigned i = 0; i < nstages && !r->rc; i++) {
		r->stage = stages[i].name;
		/* A stop that came after the previous call's last safe point. */
		if (tool_stop_signal) {
			r->rc = OCOLOS_ECANCELED;
			snprintf(stopped, sizeof(stopped), "stopped by %s before the %s stage; the "
				 "round was abandoned", signal_name(tool_stop_signal), stages[i].name);
			r->message = stopped;
			tool_progress(cfg, r->pid, r->round, "%s", stopped);
			break;
		}
		if (i == 0 && r->artifact) {
			tool_progress(cfg, r->pid, r->round, "profile: reading the artifact %s...",
				      r->artifact);
		} else if (i == 0 && cfg->nprofile_from) {
			tool_progress(cfg, r->pid, r->round, "profile: reading %u profile file%s...",
				      cfg->nprofile_from, cfg->nprofile_from > 1 ? "s" : "");
		} else if (i == 1 && r->artifact) {
			tool_progress(cfg, r->pid, r->round, "optimize: reading the artifact's BOLT "
				      "output...");
		} else if (i == 0) {
			char window[16];
			tool_format_seconds(cfg->profile_max_ms ? cfg->profile_max_ms : cfg->profile_ms,
					    window, sizeof(window));
			tool_progress(cfg, r->pid, r->round, cfg->profile_max_ms
				      ? "profile: %s until the profile converges, at most %s s at the "
					"full rate..."
				      : "profile: %s for %s s...", stages[i].doing, window);
		} else
			tool_progress(cfg, r->pid, r->round, "%s: %s...", stages[i].name,
				      stages[i].doing);
		uint64_t t = now_ns();
		r->rc = stages[i].fn(ctx, st);
		r->stage_ns[i] = now_ns() - t;
		char what[256];
		if (r->rc) {
			r->message = ocolos_last_error(ctx);
			tool_progress(cfg, r->pid, r->round, "%s failed after %.2f s: %s", stages[i].name,
				      r->stage_ns[i] / 1e9, r->message);
		} else {
			stage_done(i, st, what, sizeof(what));
			tool_progress(cfg, r->pid, r->round, "%s done in %.2f s: %s", stages[i].name,
				      r->stage_ns[i] / 1e9, what);
		}
	}
	r->round_ns = now_ns() - t0;
}

/* --revert: back to the original code, then unmap what no thread is in. A
 * process already on its original code is not an error (OCOLOS_EINVAL from
 * the revert says so; the retire still runs). */
static void revert(struct ocolos_ctx *ctx, const struct tool_cfg *cfg, struct tool_round *r,
		   struct ocolos_stats *st)
{
	uint64_t t0 = now_ns();
	OCOLOS_OPTS(ocolos_switch_stats, sw);
	r->stage = "revert";
	tool_progress(cfg, r->pid, 0, "revert: back to the original code...");
	int rc = ocolos_revert(ctx, &sw);
	if (rc == OCOLOS_EINVAL) {
		tool_progress(cfg, r->pid, 0, "revert: %s", ocolos_last_error(ctx));
		rc = 0;
	}
	if (!rc)
		rc = ocolos_retire(ctx, st);
	st->pause_ns = sw.pause_ns;
	st->threads_stopped = sw.threads_stopped;
	st->call_sites_patched = sw.call_sites;
	st->pointer_slots_patched = sw.pointer_slots;
	st->entries_patched = sw.entries;
	r->rc = rc;
	r->message = rc ? ocolos_last_error(ctx) : NULL;
	r->round_ns = r->stage_ns[2] = now_ns() - t0;
	if (rc)
		tool_progress(cfg, r->pid, 0, "revert failed: %s", r->message);
	else
		tool_progress(cfg, r->pid, 0, "revert done in %.2f s: %u call sites and %u entries "
			      "back, %u versions of optimized code still mapped", r->round_ns / 1e9,
			      sw.call_sites, sw.entries, st->versions_mapped);
}

/* --work-cmd: the first whole number CMD prints. A command that fails or
 * prints none counts as no work done (the check then gives no verdict). */
static uint64_t work_cmd(void *user)
{
	const struct tool_cfg *cfg = user;
	FILE *p = popen(cfg->work_cmd, "r");
	if (!p)
		return 0;
	char line[256];
	uint64_t v = 0;
	int found = 0;
	while (!found && fgets(line, sizeof(line), p)) {
		char *d = line + strcspn(line, "0123456789");
		if (*d) {
			v = strtoull(d, NULL, 10);
			found = 1;
		}
	}
	while (fgets(line, sizeof(line), p))
		;
	pclose(p);
	return v;
}

/* The context again, without opts->artifact_in (closed, reopened): NULL
 * if it cannot be opened, then `r` says so (stage "open"). */
static struct ocolos_ctx *reopen_local(struct ocolos_ctx *ctx, pid_t pid, struct ocolos_opts *opts,
				       struct tool_round *r)
{
	atomic_store(&running_ctx, NULL);
	ocolos_close(ctx);
	opts->artifact_in = NULL;
	struct ocolos_ctx *n = NULL;
	int rc = ocolos_open_pid(pid, opts, &n);
	if (rc) {
		r->rc = rc;
		r->stage = "open";
		r->message = ocolos_last_error(NULL);
		return NULL;
	}
	atomic_store(&running_ctx, n);
	if (tool_stop_signal)
		ocolos_cancel(n);
	return n;
}

void tool_run(pid_t pid, const struct tool_cfg *cfg, struct tool_result *res)
{
	memset(res, 0, sizeof(*res));
	OCOLOS_OPTS(ocolos_opts, opts, .profile_ms = cfg->profile_max_ms ? 0 : cfg->profile_ms,
		    .profile_max_ms = cfg->profile_max_ms,
		    .max_overhead_permille = cfg->max_overhead_permille, .sample_hz = cfg->sample_hz,
		    .sampler = cfg->sampler, .bolt_path = cfg->bolt_path,
		    .bolt_timeout_ms = cfg->bolt_timeout_ms, .binary_path = cfg->binary_path,
		    .tmp_dir = cfg->tmp_dir, .keep_work_dir = cfg->keep_work_dir,
		    .log_fn = cfg->verbose ? log_cb : NULL, .log_user = (void *)cfg,
		    .work_fn = cfg->work_cmd ? work_cmd : NULL,
		    .work_user = cfg->work_cmd ? (void *)cfg : NULL,
		    .benefit_min_ratio = cfg->benefit_min, .benefit_pairs = cfg->benefit_pairs,
		    .benefit_window_ms = cfg->benefit_window_ms, .profile_export = cfg->export_profile,
		    .profile_from = cfg->nprofile_from ? cfg->profile_from : NULL,
		    .artifact_out = cfg->artifact_out, .artifact_in = cfg->artifact_in);
	char binary[PATH_MAX], build_id[130];
	tool_binary_info(pid, cfg->binary_path, binary, sizeof(binary), build_id, sizeof(build_id));
	struct ocolos_ctx *ctx;
	int rc = ocolos_open_pid(pid, &opts, &ctx);
	if (rc) {
		OCOLOS_OPTS(ocolos_stats, none);
		struct tool_round r = { .pid = pid, .rc = rc, .stage = "open",
			.message = ocolos_last_error(NULL), .binary = binary, .build_id = build_id,
			.st = &none };
		tool_progress(cfg, pid, 0, "cannot open: %s", r.message);
		tool_report(cfg, &r);
		res->rounds = res->failed = 1;
		return;
	}
	atomic_store(&running_ctx, ctx);
	/* A signal that came before the context existed had nothing to cancel. */
	if (tool_stop_signal)
		ocolos_cancel(ctx);
	uint32_t rounds = cfg->rounds ? cfg->rounds : cfg->every_ms ? 0 : 1;
	if (cfg->revert) {
		OCOLOS_OPTS(ocolos_stats, st);
		struct tool_round r = { .pid = pid, .round = 1, .binary = binary,
			.build_id = build_id, .st = &st };
		revert(ctx, cfg, &r, &st);
		tool_report(cfg, &r);
		res->rounds = 1;
		res->failed = r.rc != 0;
		atomic_store(&running_ctx, NULL);
		ocolos_close(ctx);
		return;
	}
	for (unsigned round = 1; rounds == 0 || round <= rounds; round++) {
		/* The next round profiles the code in use and makes the next
		 * generation: the layout follows what the target does now. */
		if (round > 1 && pause_between(cfg->every_ms, pid, cfg))
			break;
		OCOLOS_OPTS(ocolos_stats, st);
		struct tool_round r = { .pid = pid, .round = round, .binary = binary,
			.build_id = build_id, .st = &st, .artifact = opts.artifact_in };
		/* After the artifact's round (applied or not), rounds are local. */
		if (round > 1 && opts.artifact_in && !(ctx = reopen_local(ctx, pid, &opts, &r))) {
			tool_report(cfg, &r);
			res->rounds++;
			res->failed++;
			return;
		}
		r.artifact = opts.artifact_in;
		run_round(ctx, cfg, &r, &st);
		if (r.rc == OCOLOS_ETAKEN && opts.artifact_in) {
			/* Its range is taken here: this process gets its own BOLT run. */
			fprintf(stderr, "%s: pid %d: %s (%s); running a local round instead\n",
				cfg->prog, (int)pid, r.message, ocolos_strerror(r.rc));
			st = (struct ocolos_stats){ .sz = sizeof(st) };
			r = (struct tool_round){ .pid = pid, .round = round, .binary = binary,
				.build_id = build_id, .st = &st };
			if (!(ctx = reopen_local(ctx, pid, &opts, &r))) {
				tool_report(cfg, &r);
				res->rounds++;
				res->failed++;
				return;
			}
			run_round(ctx, cfg, &r, &st);
		}
		tool_report(cfg, &r);
		res->rounds++;
		res->failed += r.rc != 0;
		if (r.rc == OCOLOS_ENOPROC || tool_stop_signal || (cfg->poll && cfg->poll(cfg->poll_user)))
			break;
	}
	atomic_store(&running_ctx, NULL);
	ocolos_close(ctx);
}

/*
 * One optimization round on the calling process, stage by stage:
 *
 *   model     open the binary, find its load bias           (elf/, core/procmaps)
 *             find a usable BOLT                           (layout/)
 *   reserve   PROT_NONE range for C1 near the code          (inject/reserve)
 *   profile   sample every other thread for the window      (sample/)
 *             write the samples as a BOLT profile           (infer/)
 *   optimize  run BOLT for the reserved address             (layout/)
 *             read its output: C1 segments, moved functions (elf/bolt_output)
 *   prepare   patch plan, map C1, register unwind tables    (inject/)
 *   replace   stop the world, write the plan, resume        (inject/)
 *
 * Until `replace`, nothing the program executes has changed; a failure
 * there or before it unmaps C1 and leaves the program on its original code.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/util.h"
#include "core/workdir.h"
#include "infer/profile.h"
#include "layout/layout.h"
#include "sample/sample.h"

struct round {
	struct ocolos_ctx *ctx;
	const struct round_opts *o;
	struct ocolos_stats *st;
	struct core_err *err;
	uint64_t bias;
	struct core_workdir wd;
	struct inject_reservation res;
	struct sample_set samples;
	struct bolt_output *out;
	struct inject_plan plan;
	void *unwind;
	char profile[PATH_MAX], output[PATH_MAX], log[PATH_MAX];
};

static int stage_model(struct round *r)
{
	struct ocolos_ctx *ctx = r->ctx;
	if (!ctx->bin) {
		char exe[PATH_MAX];
		const char *path = r->o->binary_path;
		if (!path) {
			ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
			if (n <= 0)
				return core_errf(r->err, OCOLOS_EIO, "cannot read /proc/self/exe; set opts.binary_path");
			exe[n] = '\0';
			path = exe;
		}
		int rc = elf_binary_open(path, &ctx->bin, r->err);
		if (rc)
			return rc;
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "binary %s: %zu functions, %zu call sites, %zu pointer slots%s",
			  path, ctx->bin->nfuncs, ctx->bin->nsites, ctx->bin->nslots,
			  ctx->bin->is_pie ? ", PIE" : "");
	}
	struct procmaps m = { 0 };
	int rc = procmaps_read(getpid(), &m, r->err);
	if (!rc)
		rc = procmaps_load_bias(&m, ctx->bin->dev, ctx->bin->ino, ctx->bin->segs[0].vaddr,
					ctx->bin->segs[0].offset, &r->bias, r->err);
	procmaps_free(&m);
	return rc;
}

static int stage_reserve(struct round *r)
{
	/* C1 holds at most the moved code plus its tables; 2x the original
	 * text leaves room for BOLT's alignment. Address space is cheap. */
	uint64_t size = 2 * r->ctx->bin->text_bytes + (64ull << 20);
	size = (size + (2ull << 20) - 1) & ~((2ull << 20) - 1);
	if (size > (1ull << 30))
		size = 1ull << 30;
	return inject_reserve_self(r->ctx->bin, r->bias, size, &r->res, r->err);
}

static int stage_profile(struct round *r)
{
	struct sample_config cfg = { .backend = SAMPLE_PERF_IP, .pid = getpid(),
		.hz = r->o->sample_hz, .window_ms = r->o->profile_ms,
		.exclude_tid = (pid_t)syscall(SYS_gettid) };
	uint64_t t0 = core_now_ns();
	int rc = sample_collect(&cfg, &r->samples, r->err);
	r->st->profile_ns = core_now_ns() - t0;
	r->st->samples = r->samples.n;
	r->st->threads_sampled = r->samples.threads;
	if (rc)
		return rc;
	struct infer_profile_stats ps;
	rc = infer_write_preagg(r->ctx->bin, r->bias, &r->samples, r->profile, &ps, r->err);
	r->st->samples_in_binary = ps.in_binary;
	core_logf(&r->ctx->log, OCOLOS_LOG_INFO, "profile: %zu samples (%s, %u threads), %llu in %u functions of the binary",
		  r->samples.n, r->samples.event ? r->samples.event : "-", r->samples.threads,
		  (unsigned long long)ps.in_binary, ps.functions);
	return rc;
}

/* Find BOLT before anything is done to the process; the result is kept
 * for later rounds that ask for the same opts.bolt_path. */
static int stage_find_bolt(struct round *r)
{
	struct ocolos_ctx *ctx = r->ctx;
	const char *hint = r->o->bolt_path ? r->o->bolt_path : "";
	if (ctx->bolt[0] && !strcmp(ctx->bolt_hint, hint))
		return 0;
	ctx->bolt[0] = '\0';
	int rc = layout_bolt_probe(r->o->bolt_path, r->wd.path, ctx->bolt, r->err);
	if (!rc)
		snprintf(ctx->bolt_hint, sizeof(ctx->bolt_hint), "%s", hint);
	return rc;
}

static int stage_optimize(struct round *r)
{
	struct ocolos_ctx *ctx = r->ctx;
	int rc;
	struct layout_request req = { .bolt_path = ctx->bolt, .binary = ctx->bin->path,
		.profile = r->profile, .output = r->output, .log_path = r->log,
		.alloc_vma = r->res.addr - r->bias, .timeout_ms = r->o->bolt_timeout_ms,
		.extra_args = r->o->bolt_extra_args };
	rc = layout_bolt_run(&req, &r->st->bolt_ns, r->err);
	if (rc)
		return rc;
	rc = elf_bolt_output_open(r->output, ctx->bin, req.alloc_vma, r->res.size, &r->out, r->err);
	if (rc)
		return rc;
	core_logf(&ctx->log, OCOLOS_LOG_INFO, "BOLT: %u functions moved in %.1f ms",
		  r->out->moved, (double)r->st->bolt_ns / 1e6);
	return 0;
}

static int stage_prepare(struct round *r)
{
	int rc = inject_plan_build(r->ctx->bin, r->out, r->bias, &r->plan, r->err);
	if (rc)
		return rc;
	rc = inject_map_c1(r->out, r->bias, &r->res, &r->st->c1_bytes, r->err);
	if (rc)
		return rc;
	inject_reservation_trim(&r->res, r->bias + r->out->hi);
	r->st->c1_addr = r->bias + r->out->lo;
	r->st->functions_moved = r->out->moved;
	if (r->out->eh_frame &&
	    (rc = inject_unwind_register(r->bias + r->out->eh_frame, r->out->eh_frame_size,
					 &r->unwind, r->err)))
		return rc;
	inject_sync_core_register();
	return 0;
}

static int stage_replace(struct round *r)
{
	struct ocolos_switch_stats sw;
	r->ctx->stop_signal = r->o->stop_signal;
	r->ctx->stop_timeout_ms = r->o->stop_timeout_ms;
	int rc = core_switch_self(r->ctx, &r->plan, 1, &sw);
	r->st->pause_ns = sw.pause_ns;
	r->st->threads_stopped = sw.threads_stopped;
	r->st->call_sites_patched = sw.call_sites;
	r->st->pointer_slots_patched = sw.pointer_slots;
	if (!rc && r->plan.skipped_writable)
		core_logf(&r->ctx->log, OCOLOS_LOG_INFO,
			  "%u function pointers in writable data left on C0 (see docs/guide.md)",
			  r->plan.skipped_writable);
	return rc;
}

int core_round_self(struct ocolos_ctx *ctx, const struct round_opts *o,
		    struct ocolos_stats *st)
{
	struct round r = { .ctx = ctx, .o = o, .st = st, .err = &ctx->err };
	uint64_t t0 = core_now_ns();
	if (ctx->live && ctx->redirected)
		return core_errf(&ctx->err, OCOLOS_ENOTSUP,
				 "this process already runs optimized code from an earlier round; "
				 "continuous re-optimization is not implemented yet: call "
				 "ocolos_revert_self() first to optimize afresh");
	if (ctx->live) {
		/* A reverted round: its C1 stays mapped and registered for
		 * good (a thread may still return into it); only its plan goes. */
		inject_plan_free(&ctx->applied.plan);
		ctx->live = 0;
	}
	int rc = stage_model(&r);
	if (!rc)
		rc = core_workdir_create(&r.wd, o->tmp_dir, r.err);
	if (!rc && !(rc = core_workdir_file(&r.wd, "profile.preagg", r.profile, r.err)) &&
	    !(rc = core_workdir_file(&r.wd, "c1.bolt", r.output, r.err)))
		rc = core_workdir_file(&r.wd, "bolt.log", r.log, r.err);
	if (!rc)
		rc = stage_find_bolt(&r);
	if (!rc)
		rc = stage_reserve(&r);
	if (!rc)
		rc = stage_profile(&r);
	if (!rc)
		rc = stage_optimize(&r);
	if (!rc)
		rc = stage_prepare(&r);
	if (!rc)
		rc = stage_replace(&r);
	if (rc) {
		/* Nothing points at C1: it can go. */
		inject_unwind_deregister(r.unwind);
		inject_reservation_release(&r.res);
		inject_plan_free(&r.plan);
	} else {
		ctx->live = 1;
		ctx->redirected = 1;
		ctx->applied = (struct round_live){ r.res, r.plan, r.unwind };
	}
	sample_set_free(&r.samples);
	elf_bolt_output_close(r.out);
	if (o->keep_work_dir && r.wd.path[0])
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "work directory kept: %s", r.wd.path);
	else
		core_workdir_remove(&r.wd);
	st->round_ns = core_now_ns() - t0;
	return rc;
}

/*
 * One optimization round, stage by stage:
 *
 *   profile   model the binary, find its load bias, check the running
 *             image is the file on disk                 (elf/, core/procmaps)
 *             find a usable BOLT                        (layout/)
 *             reserve the C1 range near the code        (inject/reserve, target)
 *             sample the target for the window          (sample/)
 *             write the samples as a BOLT profile       (infer/)
 *             or, with opts.artifact_in, read another instance's BOLT
 *             output and reserve where it was built for (api/artifact)
 *   optimize  run BOLT for the reserved address         (layout/)
 *             (opts.artifact_out: write its output as an artifact)
 *             read its output: C1 segments, moved functions (elf/bolt_output)
 *             compute the patch plan                    (inject/plan)
 *   replace   map C1, register its unwind tables        (target)
 *             stop the world, write the plan, resume    (target, inject/apply)
 *
 * Until the last step nothing the target executes has changed; a failure
 * there or before it unmaps C1 and leaves the target on its original code.
 * The stages can be called one by one (ocolos_stage_profile/optimize/replace);
 * the round between them is `ctx->pending`.
 */
#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api/api.h"
#include "api/debuginfo.h"
#include "core/util.h"
#include "api/workdir.h"
#include "infer/bat_translate.h"
#include "infer/hybrid.h"
#include "infer/profile.h"
#include "layout/layout.h"
#include "arch/arch.h"
#include "sample/sample.h"

struct round_pending {
	int stage;		/* 1 profiled, 2 optimized */
	int branches;		/* sampled branch stacks (else IP samples) */
	int basic;		/* IP samples handed to BOLT bare (OCOLOS_EDGES_BOLT) */
	int from_artifact;	/* `output` came from opts.artifact_in: no BOLT run */
	char bolt_args[2048];	/* the layout run's arguments, for an artifact */
	/* Functions BOLT was told to leave in place (layout_again_without),
	 * names of ctx->bin's: the file that told BOLT goes with the work
	 * directory, so an artifact records them. */
	const char **skipped;
	size_t nskipped;
	uint64_t bias;
	struct api_workdir wd;
	struct inject_reservation res;
	struct inject_reservation island; /* AArch64 veneers, when C1 is out of BL reach */
	struct bolt_output *out;
	struct elf_bat *bat;		/* the output's address translation */
	struct inject_fixups fixups;	/* address-taking code kept on C0 */
	struct inject_plan want;	/* what this round wants (old = original bytes) */
	struct inject_version_entries entries; /* of the new version */
	struct ocolos_stats st;
	uint64_t t_start;
	uint64_t generation;	/* of the target's state when profiled */
	char profile[PATH_MAX], output[PATH_MAX], log[PATH_MAX];
};

static void copy_stats(const struct round_pending *p, struct ocolos_stats *st)
{
	if (st && p)
		*st = p->st;
}

/* The file the target runs: opts.binary_path, or /proc/PID/exe resolved. */
int api_open_model(struct ocolos_ctx *ctx)
{
	if (ctx->bin)
		return 0;
	char exe[PATH_MAX], link[64];
	const char *path = ctx->opts.binary_path;
	if (!path) {
		snprintf(link, sizeof(link), "/proc/%d/exe", (int)ctx->pid);
		ssize_t n = readlink(link, exe, sizeof(exe) - 1);
		if (n <= 0)
			return core_errf(&ctx->err, OCOLOS_ENOPROC, "cannot read %s: is process %d alive?",
					 link, (int)ctx->pid);
		exe[n] = '\0';
		/* " (deleted)": the file is gone; /proc/PID/exe still opens it. */
		path = strstr(exe, " (deleted)") ? link : exe;
	}
	int rc = elf_binary_open(path, &ctx->bin, &ctx->err);
	if (!rc)
		core_logf(&ctx->log, OCOLOS_LOG_INFO,
			  "binary %s: %zu functions, %zu call sites (%zu from relocations), %zu pointer slots%s",
			  path, ctx->bin->nfuncs, ctx->bin->nsites, ctx->bin->reloc_sites,
			  ctx->bin->nslots, ctx->bin->is_pie ? ", PIE" : "");
	return rc;
}

/* Load bias, and proof that the running image is the file BOLT will read:
 * same inode mapped, same build-id in memory. */
int api_find_bias(struct ocolos_ctx *ctx, uint64_t *bias)
{
	struct procmaps m = { 0 };
	int rc = core_procmaps_read(ctx->pid, &m, &ctx->err);
	if (rc)
		return rc == OCOLOS_EIO ? OCOLOS_ENOPROC : rc;
	rc = core_procmaps_load_bias(&m, ctx->bin->dev, ctx->bin->ino, ctx->bin->segs[0].vaddr,
				ctx->bin->segs[0].offset, bias, &ctx->err);
	core_procmaps_free(&m);
	if (rc)
		return OCOLOS_ESTALE;
	const struct elf_binary *b = ctx->bin;
	uint8_t id[64];
	if (b->build_id_vaddr && b->build_id_len &&
	    (ctx->target.ops->peek(&ctx->target, *bias + b->build_id_vaddr, id, b->build_id_len) ||
	     memcmp(id, b->build_id, b->build_id_len)))
		return core_errf(&ctx->err, OCOLOS_ESTALE,
				 "'%s' on disk has another build-id than the image process %d runs: the "
				 "file was rewritten since the process started; restart it, or point "
				 "binary_path at the original file", b->path, (int)ctx->pid);
	return 0;
}

/* Find BOLT before anything is done to the target; the result is kept for
 * later rounds that ask for the same bolt_path. */
static int find_bolt(struct ocolos_ctx *ctx, const char *dir)
{
	const char *hint = ctx->opts.bolt_path ? ctx->opts.bolt_path : "";
	if (ctx->bolt[0] && !strcmp(ctx->bolt_hint, hint))
		return 0;
	ctx->bolt[0] = '\0';
	int rc = layout_bolt_probe_for(ctx->opts.bolt_path, dir, ctx->bin->machine, ctx->bolt,
				       &ctx->bolt_custom_vma, &ctx->err);
	if (!rc) {
		snprintf(ctx->bolt_hint, sizeof(ctx->bolt_hint), "%s", hint);
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "BOLT: %s (%s)", ctx->bolt, ctx->bolt_custom_vma
			  ? "--custom-allocation-vma" : "places new code after the image");
	}
	return rc;
}

static int reserve(struct ocolos_ctx *ctx, struct round_pending *p)
{
#if defined(__aarch64__)
	/* First choice: the range BOLT 19 will use, reserved when the library
	 * was loaded, before the heap could grow there (inject/reserve.c); with
	 * a BOLT that has --custom-allocation-vma the same range is simply
	 * passed. Else a range picked now within BL reach; BOLT 19 is pointed
	 * there through a copy of the binary (api_stage_optimize). */
	if (ctx->pid == getpid()) {
		struct core_err why = { 0 };
		if (!inject_reserve_early_take(ctx->bin, p->bias, &p->res, &why))
			return 0;
		int rc = inject_reserve_placed(&ctx->target, ctx->bin, p->bias, &p->res, &ctx->err);
		if (!rc)
			core_logf(&ctx->log, OCOLOS_LOG_INFO,
				  "the load-time reservation is unusable (%s); new code goes to 0x%llx "
				  "instead, reserved now%s", why.msg, (unsigned long long)p->res.addr,
				  ctx->bolt_custom_vma ? "" : " (BOLT is given a copy of the binary whose "
				  "last segment ends there)");
		return rc;
	}
#endif
	/* A BOLT that places new code itself: a range where a copy of the
	 * binary can make it do so. */
	if (!ctx->bolt_custom_vma)
		return inject_reserve_placed(&ctx->target, ctx->bin, p->bias, &p->res, &ctx->err);
	/* C1 holds at most the moved code plus its tables; 2x the original
	 * text leaves room for BOLT's alignment. Address space is cheap. */
	uint64_t size = 2 * ctx->bin->text_bytes + (64ull << 20);
	size = (size + (2ull << 20) - 1) & ~((2ull << 20) - 1);
	if (size > (1ull << 30))
		size = 1ull << 30;
	/* The fleet's place first: the same offset from the load bias in
	 * every instance of the build, so that this round's BOLT output fits
	 * them all (an artifact, api/artifact.c). Else the nearest free range. */
	uint64_t vma = inject_fleet_vma(ctx->bin, size);
	struct core_err why = { 0 };
	if (vma && !inject_reserve_fixed(&ctx->target, p->bias + vma, size, &p->res, &why))
		return 0;
	core_logf(&ctx->log, ctx->opts.artifact_out ? OCOLOS_LOG_INFO : OCOLOS_LOG_DEBUG,
		  "the range other instances of the build use for new code is unusable here (%s): "
		  "searching near it%s", vma ? why.msg : "the image is too large",
		  ctx->opts.artifact_out ? "; the artifact will fit fewer instances" : "");
	return inject_reserve(&ctx->target, ctx->bin, p->bias, size, &p->res, &ctx->err);
}

/* opts.artifact_in, in place of BOLT probe, reservation and sampling: the
 * artifact read and checked into p->output (artifact.c), its range
 * reserved exactly. Only for a process on its original code: the plan of
 * a later round would have to lead from older versions to it too, and
 * its BOLT output was made from a profile of C0 alone. */
static int artifact_in(struct ocolos_ctx *ctx, struct round_pending *p)
{
	const char *path = ctx->opts.artifact_in;
	if (ctx->state->nv)
		return core_errf(&ctx->err, OCOLOS_ENOTSUP, "process %d already has optimized code "
				 "of an earlier round mapped (generation %u): an artifact applies only to "
				 "a process on its original code (the first round); run a local round "
				 "(no artifact_in), or revert and retire first", (int)ctx->pid,
				 ctx->state->last_gen);
	uint64_t vma = 0, size = 0, t0 = core_now_ns();
	int rc = api_artifact_read(ctx, path, p->output, &vma, &size);
	struct core_err why = { 0 };
	if (!rc && (rc = inject_reserve_fixed(&ctx->target, p->bias + vma, size, &p->res, &why)))
		rc = core_errf(&ctx->err, rc, "artifact '%s' was built for 0x%llx-0x%llx (load bias + "
			       "0x%llx): %s; run a local round instead (no artifact_in)", path,
			       (unsigned long long)(p->bias + vma),
			       (unsigned long long)(p->bias + vma + size), (unsigned long long)vma,
			       why.msg);
	p->st.profile_ns = core_now_ns() - t0;
	snprintf(p->st.sampler, sizeof(p->st.sampler), "artifact");
	p->from_artifact = !rc;
	return rc;
}

static const char *sampler_name(enum sample_backend_kind k)
{
	return k == SAMPLE_PERF_LBR ? "perf-lbr" : k == SAMPLE_SIGPROF ? "sigprof" : "perf-ip";
}

/* The target exited (or was reaped) since the context was opened. */
static int target_gone(const struct ocolos_ctx *ctx)
{
	return !ctx->self && sample_process_gone(ctx->pid);
}

static int gone_error(struct ocolos_ctx *ctx)
{
	return core_errf(&ctx->err, OCOLOS_ENOPROC,
			 "process %d exited before its profile could be taken", (int)ctx->pid);
}

/* The backend for opts.sampler: the one asked for if it can run here, or
 * for AUTO the best that can (branch stacks, then IP samples, then, in the
 * process itself, CPU-time timers). */
static int choose_sampler(struct ocolos_ctx *ctx, enum sample_backend_kind *kind)
{
	static const enum sample_backend_kind by_option[] = {
		[OCOLOS_SAMPLER_PERF_LBR] = SAMPLE_PERF_LBR, [OCOLOS_SAMPLER_PERF_IP] = SAMPLE_PERF_IP,
		[OCOLOS_SAMPLER_SIGPROF] = SAMPLE_SIGPROF };
	int want = ctx->opts.sampler;
	if (want < 0 || want > OCOLOS_SAMPLER_SIGPROF)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "unknown sampler %d", want);
	if (want != OCOLOS_SAMPLER_AUTO) {
		*kind = by_option[want];
		int rc = sample_probe(*kind, ctx->pid, &ctx->err);
		return rc && target_gone(ctx) ? gone_error(ctx) : rc;
	}
	static const enum sample_backend_kind order[] = { SAMPLE_PERF_LBR, SAMPLE_PERF_IP, SAMPLE_SIGPROF };
	struct core_err why = { 0 };
	int rc = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		core_err_clear(&why);
		rc = sample_probe(order[i], ctx->pid, &why);
		if (!rc) {
			*kind = order[i];
			return 0;
		}
		/* A target that exited makes every probe fail, each for its own
		 * reason (perf: ESRCH; sigprof: not this process); the caller
		 * must hear that it is gone, not that no sampler fits. */
		if (target_gone(ctx))
			return gone_error(ctx);
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "sampler %s unusable: %s",
			  sampler_name(order[i]), why.msg);
	}
	return core_errf(&ctx->err, rc, "no sampler can run here; the last one tried said: %s", why.msg);
}

/* Samples taken in optimized code (any version still mapped) back to the
 * C0 addresses they came from (BAT), so BOLT optimizes the original binary
 * from where the program really runs. */
static int translate_samples(struct ocolos_ctx *ctx, struct round_pending *p, struct sample_set *s)
{
	const struct api_state *st = ctx->state;
	if (!st->nv)
		return 0;
	struct infer_bat_code *codes = calloc(st->nv, sizeof(*codes));
	struct infer_range *ranges = calloc(2 * st->nv, sizeof(*ranges));
	if (!codes || !ranges) {
		free(codes);
		free(ranges);
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < st->nv; i++) {
		const struct api_version *v = &st->v[i];
		ranges[2 * i] = (struct infer_range){ v->res.addr, v->res.addr + v->res.size };
		ranges[2 * i + 1] = (struct infer_range){ v->island.addr, v->island.addr + v->island.size };
		codes[i] = (struct infer_bat_code){ v->bat, &ranges[2 * i], v->island.size ? 2 : 1, p->bias };
	}
	struct infer_bat_stats bs = { 0 };
	int rc = infer_bat_translate_samples(s, codes, st->nv, p->bias, &bs, &ctx->err);
	if (!rc && (bs.ips_translated || bs.ends_translated))
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "samples in optimized code mapped back to C0: "
			  "%llu IPs, %llu branch ends (%llu + %llu left: BOLT's own code)",
			  (unsigned long long)bs.ips_translated, (unsigned long long)bs.ends_translated,
			  (unsigned long long)bs.ips_untranslated, (unsigned long long)bs.ends_untranslated);
	free(codes);
	core_free_clear(ranges, 2 * st->nv * sizeof(*ranges));
	return rc;
}

/* The key of a sample for the window's convergence test: the 256-byte
 * block of the binary it is in — for a sample in optimized code of an
 * earlier round, the block it came from (BAT) — else (libraries, code BOLT
 * added) its own 256-byte block, kept apart. Blocks, not functions: BOLT
 * lays out each function's blocks by their counts, and a program whose
 * time is in a few large functions (SQLite's VDBE loop) had converged by
 * function long before those functions' blocks had counts (samples per
 * block, not per function, decided the layout: docs/benchmarks.md,
 * "Converging on blocks"). */
struct sample_key {
	const struct elf_binary *bin;
	const struct api_state *st;
	uint64_t bias;
};

static uint64_t sample_key(void *user, uint64_t ip)
{
	const struct sample_key *k = user;
	uint64_t at = ip - k->bias;
	for (size_t i = 0; i < k->st->nv; i++) {
		const struct api_version *v = &k->st->v[i];
		uint64_t in;
		if (ip >= v->lo && ip < v->hi && v->bat &&
		    elf_bat_translate(v->bat, ip - k->bias, &in) == ELF_BAT_TRANSLATED) {
			at = in;
			break;
		}
	}
	return elf_func_containing(k->bin, at) >= 0 ? at >> 8 : (ip >> 8) | (1ull << 63);
}

#define MAX_STRETCH 16 /* a converging window under a cost limit: wall max / profile_max_ms */

static const char *const stop_names[] = { "-", "fixed window", "converged", "max window",
					  "canceled" };

/* Sample for the window the options ask for (sample/window.c), the stats
 * of the window in p->st. */
static int sample_window(struct ocolos_ctx *ctx, struct round_pending *p,
			 enum sample_backend_kind kind, struct sample_set *s)
{
	const struct api_opts *o = &ctx->opts;
	struct sample_config cfg = { .backend = kind, .pid = ctx->pid, .hz = o->sample_hz,
		.window_ms = o->converge ? o->profile_max_ms : o->profile_ms,
		.exclude_tid = ctx->pid == getpid() ? (pid_t)syscall(SYS_gettid) : 0,
		.cancel = &ctx->cancel };
	struct sample_key key = { ctx->bin, ctx->state, p->bias };
	/* With a cost limit a converging window's maximum counts time at the
	 * asked rate (a tenth of the rate, ten times as long: as many
	 * samples as without the limit), in at most MAX_STRETCH times
	 * profile_max_ms of wall time. */
	int stretch = o->converge && o->max_overhead_permille;
	uint64_t wall_max = stretch ? (uint64_t)o->profile_max_ms * MAX_STRETCH : o->profile_max_ms;
	struct sample_policy pol = { .fixed_ms = o->converge ? 0 : o->profile_ms,
		.min_ms = o->profile_min_ms,
		.max_ms = wall_max > UINT32_MAX ? UINT32_MAX : (uint32_t)wall_max,
		.max_rate_ms = stretch ? o->profile_max_ms : 0,
		.converge_ppm = o->converge_permille * 1000,
		.max_overhead_ppm = o->max_overhead_permille * 1000,
		.key = sample_key, .key_user = &key };
	struct sample_window_result wr;
	int rc = sample_collect_window(&cfg, &pol, s, &wr, &ctx->err);
	p->st.profile_ns = wr.elapsed_ns;
	p->st.profile_stop = wr.stop;
	p->st.profile_distance_ppm = wr.distance_ppm;
	p->st.sample_overhead_ppm = wr.overhead_ppm;
	p->st.sample_hz_final = wr.hz_final;
	p->st.sample_cost_ns = wr.cost_ns;
	char dist[32] = "-";
	if (wr.distance_ppm != UINT32_MAX)
		snprintf(dist, sizeof(dist), "%.1f%%", wr.distance_ppm / 1e4);
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "sampling window: %.0f ms in %u segments, stopped: %s (distance %s; %s; %u "
		  "256-byte blocks carry 90%% of the samples), rate %u Hz at the end (asked %u), "
		  "estimated cost %.2f%% of the sampled threads' CPU time (%u ns per sample, "
		  "sampler thread %.1f ms, sampled threads %.1f ms)",
		  wr.elapsed_ns / 1e6, wr.segments, stop_names[wr.stop], dist,
		  o->converge ? "converging" : "fixed", wr.hot_keys, wr.hz_final, o->sample_hz,
		  wr.overhead_ppm / 1e4, wr.cost_ns, wr.sampler_cpu_ns / 1e6, wr.sampled_cpu_ns / 1e6);
	return rc;
}

static int sample(struct ocolos_ctx *ctx, struct round_pending *p)
{
	enum sample_backend_kind kind = SAMPLE_PERF_IP;
	struct sample_set s = { 0 };
	int rc = 0;
	if (ctx->ext_n) {
		/* ocolos_add_samples(): taken elsewhere, used as IP samples are. */
		s.ips = ctx->ext_ips;
		s.n = ctx->ext_n;
		s.cap = ctx->ext_cap;
		s.event = "external";
		ctx->ext_ips = NULL;
		ctx->ext_n = ctx->ext_cap = 0;
		snprintf(p->st.sampler, sizeof(p->st.sampler), "external");
		p->branches = 0;
	} else if (ctx->ext_stacks.nstacks) {
		/* ocolos_add_branch_stacks(): used as perf-lbr's stacks are. */
		s = ctx->ext_stacks;
		s.event = "external";
		memset(&ctx->ext_stacks, 0, sizeof(ctx->ext_stacks));
		snprintf(p->st.sampler, sizeof(p->st.sampler), "external");
		p->branches = 1;
	} else {
		rc = choose_sampler(ctx, &kind);
		if (rc)
			return rc;
		snprintf(p->st.sampler, sizeof(p->st.sampler), "%s", sampler_name(kind));
		p->branches = kind == SAMPLE_PERF_LBR;
		rc = sample_window(ctx, p, kind, &s);
	}
	p->st.samples = s.n ? s.n : s.nstacks; /* external stacks come without IPs */
	p->st.threads_sampled = s.threads;
	if (!rc)
		rc = translate_samples(ctx, p, &s);
	/* Branch stacks give edges directly. IP samples alone would reach BOLT
	 * only as per-function counts (with --pa --ba, BOLT 22 leaves every
	 * block's count unknown), so they become edge weights here: our CFGs,
	 * the hybrid estimator and must-have-run inference (infer/hybrid.c). */
	struct infer_profile_stats ps = { 0 };
	struct hybrid_write_stats hs = { 0 };
	p->basic = !p->branches && ctx->opts.edges == OCOLOS_EDGES_BOLT;
	if (!rc && ctx->opts.edges > OCOLOS_EDGES_BOLT)
		rc = core_errf(&ctx->err, OCOLOS_EINVAL, "unknown edges setting %d", ctx->opts.edges);
	else if (!rc && p->branches)
		rc = infer_write_lbr(ctx->bin, p->bias, &s, p->profile, &ps, &ctx->err);
	else if (!rc && p->basic)
		rc = infer_write_preagg(ctx->bin, p->bias, &s, p->profile, &ps, &ctx->err);
	else if (!rc)
		rc = infer_write_hybrid_flags(ctx->bin, p->bias, &s, p->profile, 0, &ps, &hs, &ctx->err);
	if (!rc && !p->branches && !p->basic)
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG,
			  "hybrid edges: %u functions with a CFG (%u without, %u with under %d samples "
			  "left in C0), %u sampled blocks, %u inferred (R1..R4: %u %u %u %u), %llu branch "
			  "+ %llu fall-through + %llu call records (%llu calls into functions without "
			  "profile dropped)",
			  hs.functions_cfg, hs.functions_nocfg, hs.functions_sparse,
			  HYBRID_MIN_FUNCTION_SAMPLES, hs.est.sampled_blocks, hs.est.inferred_blocks,
			  hs.est.by_rule[0], hs.est.by_rule[1], hs.est.by_rule[2], hs.est.by_rule[3],
			  (unsigned long long)hs.branch_records, (unsigned long long)hs.fallthrough_records,
			  (unsigned long long)hs.call_records, (unsigned long long)hs.calls_dropped);
	p->st.samples_in_binary = ps.in_binary;
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "profile: %zu samples (%s, %s, %u threads), %llu in %u functions of the binary",
		  s.n, p->st.sampler, s.event ? s.event : "-", s.threads,
		  (unsigned long long)ps.in_binary, ps.functions);
	sample_set_free(&s);
	return rc;
}

void api_drop_pending(struct ocolos_ctx *ctx)
{
	struct round_pending *p = ctx->pending;
	if (!p)
		return;
	inject_plan_free(&p->want);
	inject_version_entries_free(&p->entries);
	inject_fixups_free(&p->fixups);
	elf_bat_free(p->bat);
	elf_bolt_output_close(p->out);
	free(p->skipped);
	if (ctx->target_open) {
		int had = p->res.size || p->island.size;
		inject_reservation_release(&ctx->target, &p->res);
		inject_reservation_release(&ctx->target, &p->island);
		/* The record must not name a range that is no longer ours. */
		if (ctx->bin && (had || ctx->state->phase != API_PHASE_IDLE))
			api_state_save_quiet(ctx, NULL);
	}
	if (ctx->opts.keep_work_dir && p->wd.path[0])
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "work directory kept: %s", p->wd.path);
	else
		api_workdir_remove(&p->wd);
	free(p);
	ctx->pending = NULL;
}

int api_stage_profile(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	api_drop_pending(ctx);
	struct round_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	ctx->pending = p;
	p->t_start = core_now_ns();
	p->st.sz = sizeof(p->st);
	p->st.profile_distance_ppm = UINT32_MAX; /* until a window computes one */
	int rc = api_open_model(ctx);
	if (!rc)
		rc = api_find_bias(ctx, &p->bias);
	if (!rc) {
		ctx->state->bias = p->bias;
		/* What earlier rounds did, possibly by another agent (persist.c). */
		rc = api_state_sync(ctx, 1);
	}
	p->generation = ctx->state->generation;
	if (!rc)
		rc = api_workdir_create(&p->wd, ctx->opts.tmp_dir, &ctx->err);
	if (!rc && !(rc = api_workdir_file(&p->wd, "profile.preagg", p->profile, &ctx->err)) &&
	    !(rc = api_workdir_file(&p->wd, "c1.bolt", p->output, &ctx->err)))
		rc = api_workdir_file(&p->wd, "bolt.log", p->log, &ctx->err);
	if (!rc && ctx->opts.artifact_in) {
		rc = artifact_in(ctx, p);
	} else {
		if (!rc)
			rc = find_bolt(ctx, p->wd.path);
		if (!rc && ctx->opts.artifact_out && !ctx->bolt_custom_vma)
			rc = core_errf(&ctx->err, OCOLOS_ENOTSUP, "opts.artifact_out needs a BOLT with "
				       "--custom-allocation-vma ('%s' has none): its new code must be "
				       "placed at the same offset in every instance", ctx->bolt);
		if (!rc && ctx->opts.artifact_out && !ctx->bin->build_id_len)
			rc = core_errf(&ctx->err, OCOLOS_ENOTSUP, "'%s' has no build-id: an artifact "
				       "of it could not be matched to the build it fits; relink it "
				       "with -Wl,--build-id, or leave opts.artifact_out unset",
				       ctx->bin->path);
		if (!rc)
			rc = reserve(ctx, p);
	}
	if (!rc)
		rc = api_state_save(ctx, &(struct api_pending){ .phase = API_PHASE_PROFILING,
								 .res = &p->res });
	if (!rc)
		core_test_kill_at("profiling-saved");
	if (!rc && p->from_artifact) {
		/* nothing to sample: the artifact holds BOLT's output */
	} else if (!rc && ctx->opts.profile_from) {
		/* Another instance's window (or several, merged): no sampling. */
		uint64_t records = 0, t0 = core_now_ns();
		rc = api_profile_import(ctx, ctx->opts.profile_from, p->profile, &records);
		p->st.profile_ns = core_now_ns() - t0;
		p->st.samples_in_binary = records;
		snprintf(p->st.sampler, sizeof(p->st.sampler), "imported");
	} else if (!rc) {
		rc = sample(ctx, p);
	}
	if (!rc && ctx->opts.profile_export) {
		if (p->basic)
			rc = core_errf(&ctx->err, OCOLOS_ENOTSUP, "bare IP samples (opts.edges = "
				       "OCOLOS_EDGES_BOLT) cannot be exported: their meaning depends "
				       "on BOLT's aggregation run; use the default edges");
		else
			rc = api_profile_export(ctx, p->profile, ctx->opts.profile_export);
	}
	p->st.round_ns = core_now_ns() - p->t_start;
	copy_stats(p, st);
	if (rc)
		api_drop_pending(ctx);
	else
		p->stage = 1;
	return rc;
}

/* AArch64: can C1 reach beyond BL range (128 MiB) of the original code?
 * BOLT lays out the hot code first, then the cold fragments: together at
 * most about the text's size (lite: only profiled functions move). BOLT
 * 19 then fails on split functions (see layout_request.no_split). */
static int c1_may_be_far(const struct elf_binary *b, uint64_t vma)
{
	if (b->machine != EM_AARCH64)
		return 0;
	uint64_t tlo = UINT64_MAX;
	for (size_t i = 0; i < b->nsegs; i++)
		if ((b->segs[i].flags & PF_X) && b->segs[i].vaddr < tlo)
			tlo = b->segs[i].vaddr;
	return tlo != UINT64_MAX &&
	       vma + b->text_bytes + (1ull << 20) - tlo > ARCH_A64_BRANCH_REACH;
}

/* What this round wants: every C0 location, slot stub and entry of an
 * older version aimed at the new version (plan.c), and what the new
 * version's own entries are, for the round after it (version.c). */
static int plan(struct ocolos_ctx *ctx, struct round_pending *p)
{
	struct api_state *st = ctx->state;
	int slots = ctx->opts.pointer_slots;
	int rc = 0;
	/* Stubs for slots, and on x86-64 for C0's entries too (plan.c): there
	 * they only save later rounds' writes, so a round goes on without. */
	int slot_stubs = slots != OCOLOS_SLOTS_NONE && ctx->bin->nslots;
	if (slot_stubs || ctx->bin->machine == EM_X86_64) {
		rc = inject_stubs_reserve(&ctx->target, ctx->bin, p->bias, &st->stubs, &ctx->err);
		if (rc && !slot_stubs) {
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "no room for entry stubs (%s): entries "
				  "jump straight to the new code", ctx->err.msg);
			core_err_clear(&ctx->err);
			rc = 0;
		}
	}
	struct inject_version_entries *older = calloc(st->nv + 1, sizeof(*older));
	if (!rc && !older)
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < st->nv; i++)
		older[i] = st->v[i].entries;
	struct inject_plan_opts po = { .bias = p->bias, .island = p->island.addr,
		.flags = slots == OCOLOS_SLOTS_ALL ? INJECT_PLAN_UNSAFE_SLOTS
		       : slots == OCOLOS_SLOTS_NONE ? INJECT_PLAN_NO_SLOTS : 0,
		.gen = st->last_gen + 1, .stubs = st->stubs.res.size ? &st->stubs : NULL,
		.older = older, .nolder = st->nv };
	if (!rc)
		rc = inject_plan_build_for(ctx->bin, p->out, &po, &p->want, &ctx->err);
	free(older);
	if (!rc)
		rc = inject_version_entries_build(ctx->bin, p->out, p->bat, &p->fixups, p->bias, po.gen,
						  &p->entries, &ctx->err);
	if (rc)
		inject_stubs_rollback(&st->stubs);
	return rc;
}

/* Write `name` as a regular expression that matches it whole, and BOLT's
 * names of it as a local symbol ("name/N", "name/file/N"). */
static void put_name_regex(FILE *f, const char *name)
{
	fputc('^', f);
	for (const char *c = name; *c; c++) {
		if (strchr(".^$|()[]{}*+?\\", *c))
			fputc('\\', f);
		fputc(*c, f);
	}
	fputs("(/.*)?$\n", f);
}

/* Append the lines of `from` to `to`, each ended by a newline. A `from`
 * that cannot be read is passed over with a warning, as BOLT itself does
 * with it (no message, exit 0): the first run went ahead without it too. */
static int copy_lines(struct ocolos_ctx *ctx, const char *from, const char *to,
		      struct core_err *err)
{
	FILE *in = fopen(from, "re");
	if (!in) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "cannot read the --skip-funcs-file '%s' given "
			  "in bolt_extra_args (%s); BOLT ignores it too", from, strerror(errno));
		return 0;
	}
	FILE *out = fopen(to, "ae");
	if (!out) {
		fclose(in);
		return core_errf(err, OCOLOS_EIO, "cannot write '%s': %s", to, strerror(errno));
	}
	int c, last = '\n';
	while ((c = getc(in)) != EOF)
		putc(last = c, out);
	if (last != '\n')
		putc('\n', out);
	int bad = ferror(in);
	fclose(in);
	if (fclose(out) != 0 || bad)
		return core_errf(err, OCOLOS_EIO, "cannot copy '%s' into '%s'", from, to);
	return 0;
}

/* BOLT's code forms the address of moved copies that keep_c0.c could not
 * point back at C0 (inject.h, `left`): `&f` would yield a copy's address
 * where the rest of the program yields C0's, a default that changes what
 * the program computes. BOLT runs again, told to leave those functions
 * where they are: references to them are then C0's, and the rest of the
 * layout is kept. A new layout may leave others (a function moved next to
 * a form keep_c0.c cannot prove): the list grows, up to RERUNS runs more;
 * if some are left still, nothing is applied. Each run has the whole
 * bolt_timeout_ms. Rare: the relocations explain nearly every form. */
#define RERUNS 2
static int layout_again_without(struct ocolos_ctx *ctx, struct round_pending *p,
				struct layout_request *req)
{
	struct inject_fixups *fx = &p->fixups;
	const char *first = ctx->bin->funcs[fx->left[0]].name;
	if (p->from_artifact)
		return core_errf(&ctx->err, OCOLOS_ENOTSUP, "the artifact's code forms the address of "
				 "%zu moved functions (first: %s) in a way the library cannot point "
				 "back at the original code; nothing was applied: build the artifact "
				 "again with this version of the library", fx->nleft, first);
	char path[PATH_MAX], arg[PATH_MAX + 32], log[PATH_MAX];
	int rc = api_workdir_file(&p->wd, "bolt-skip-funcs.txt", path, &ctx->err);
	if (rc)
		return rc;
	size_t n = 0, cap = 0;
	while (req->extra_args && req->extra_args[n])
		n++;
	const char **args = calloc(n + 2, sizeof(*args));
	if (!args)
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	/* BOLT keeps the last --skip-funcs-file it is given: one of the
	 * caller's (bolt_extra_args) would be dropped by ours, which comes
	 * last. Its lines go into ours; the argument stays, overridden, so
	 * that the runs' record (bolt-args, an artifact's) still names it.
	 * (One inside an @response file is not seen.) */
	for (size_t i = 0; !rc && i < n; i++) {
		const char *a = req->extra_args[i], *file = NULL;
		args[i] = a;
		a += a[0] == '-' && a[1] == '-';
		if (!strncmp(a, "-skip-funcs-file=", 17))
			file = a + 17;
		else if (!strcmp(a, "-skip-funcs-file") && i + 1 < n)
			file = req->extra_args[i + 1];
		if (file && *file) /* (empty: not set, to BOLT) */
			rc = copy_lines(ctx, file, path, &ctx->err);
	}
	if (rc) {
		free(args);
		return rc;
	}
	snprintf(arg, sizeof(arg), "--skip-funcs-file=%s", path);
	args[n] = arg;
	const char *const *saved = req->extra_args;
	const char *saved_log = req->log_path;
	for (int run = 0; !rc && fx->nleft; run++) {
		if (run == RERUNS) {
			rc = core_errf(&ctx->err, OCOLOS_ENOTSUP, "BOLT's code forms the address of "
				       "moved function %s in a way the library cannot point back at "
				       "the original code, after %d runs that left %zu such functions "
				       "in place; nothing was applied (the program runs its code as "
				       "before)", ctx->bin->funcs[fx->left[0]].name, RERUNS,
				       p->nskipped);
			break;
		}
		/* Each run its own log: a kept work directory then shows what
		 * made BOLT run again as well as the run that was applied. */
		char name[32];
		snprintf(name, sizeof(name), "bolt-rerun%d.log", run + 1);
		if ((rc = api_workdir_file(&p->wd, name, log, &ctx->err)))
			break;
		if (p->nskipped + fx->nleft > cap) {
			cap = p->nskipped + fx->nleft;
			const char **grown = realloc(p->skipped, cap * sizeof(*grown));
			if (!grown) {
				rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
				break;
			}
			p->skipped = grown;
		}
		FILE *f = fopen(path, "ae");
		if (!f) {
			rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s': %s", path,
				       strerror(errno));
			break;
		}
		for (size_t i = 0; i < fx->nleft; i++) {
			put_name_regex(f, ctx->bin->funcs[fx->left[i]].name);
			p->skipped[p->nskipped++] = ctx->bin->funcs[fx->left[i]].name;
		}
		if (fclose(f) != 0) {
			rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s'", path);
			break;
		}
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "BOLT's code forms the address of %zu moved "
			  "functions in a way not pointed back at the original code (first: %s): "
			  "BOLT runs again, leaving %zu in place (its log: %s)", fx->nleft,
			  ctx->bin->funcs[fx->left[0]].name, p->nskipped, name);
		inject_fixups_free(fx);
		elf_bat_free(p->bat);
		p->bat = NULL;
		elf_bolt_output_close(p->out);
		p->out = NULL;
		req->extra_args = args;
		req->log_path = log;
		req->fdata_ready = 1;
		uint64_t ns = 0;
		rc = layout_bolt_run(req, &ns, &ctx->err);
		req->extra_args = saved;
		req->log_path = saved_log;
		p->st.bolt_ns += ns;
		if (!rc)
			rc = elf_bolt_output_open(p->output, ctx->bin, req->alloc_vma, p->res.size,
						 &p->out, &ctx->err);
		if (!rc)
			rc = elf_bat_open(p->output, ctx->bin, &p->bat, &ctx->err);
		if (!rc)
			rc = inject_fixups_build(ctx->bin, p->out, p->bat, fx, &ctx->err);
	}
	free(args);
	return rc;
}

int api_stage_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	struct round_pending *p = ctx->pending;
	if (!p || p->stage != 1)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "nothing to optimize: profile first");
	/* A BOLT without --custom-allocation-vma outside the load-time range:
	 * it reads a copy of the binary that makes it place new code at the
	 * reserved address (the profile's addresses hold for the copy too). */
	char placed[PATH_MAX];
	int rc = 0;
	if (!p->from_artifact && !ctx->bolt_custom_vma && !p->res.early &&
	    !(rc = api_workdir_file(&p->wd, "bolt-input.elf", placed, &ctx->err)))
		rc = layout_bolt_placed_copy(ctx->bin->path, placed, p->res.addr - p->bias, &ctx->err);
	struct layout_request req = { .bolt_path = ctx->bolt,
		.binary = !ctx->bolt_custom_vma && !p->res.early ? placed : ctx->bin->path,
		.profile = p->profile, .output = p->output, .log_path = p->log,
		.alloc_vma = p->res.addr - p->bias, .self_placed = !ctx->bolt_custom_vma,
		.no_split = c1_may_be_far(ctx->bin, p->res.addr - p->bias),
		.keep_nops = ctx->bin->machine == EM_AARCH64,
		.timeout_ms = ctx->opts.bolt_timeout_ms,
		.basic_samples = p->basic, .extra_args = ctx->opts.bolt_extra_args,
		.cancel = &ctx->cancel, .args_out = p->bolt_args,
		.args_out_size = sizeof(p->bolt_args) };
	if (!rc && req.no_split && !p->from_artifact)
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "new code at 0x%llx may lie beyond BL reach of the "
			  "code: BOLT runs without --split-functions",
			  (unsigned long long)p->res.addr);
	if (!rc && !p->from_artifact)
		rc = layout_bolt_run(&req, &p->st.bolt_ns, &ctx->err);
	if (!rc)
		rc = elf_bolt_output_open(p->output, ctx->bin, req.alloc_vma, p->res.size, &p->out, &ctx->err);
	if (!rc)
		rc = elf_bat_open(p->output, ctx->bin, &p->bat, &ctx->err);
	if (!rc)
		rc = inject_fixups_build(ctx->bin, p->out, p->bat, &p->fixups, &ctx->err);
	if (!rc && p->fixups.nleft)
		rc = layout_again_without(ctx, p, &req);
	if (!rc && (p->fixups.n || p->fixups.unfixed))
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "address-taking code in C1 kept on C0: %u "
			  "PC-relative references, %u immediates (%u references to a copy left)",
			  p->fixups.rip_refs, p->fixups.immediates, p->fixups.unfixed);
	if (!rc) {
		if (p->from_artifact)
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "artifact: %u functions moved (no BOLT "
				  "run here)", p->out->moved);
		else
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "BOLT: %u functions moved in %.1f ms",
				  p->out->moved, (double)p->st.bolt_ns / 1e6);
		p->st.functions_moved = p->out->moved;
		/* AArch64: call sites beyond BL reach of C1 go through veneers. */
		if (inject_plan_needs_island(ctx->bin, p->out) &&
		    !(rc = inject_reserve_island(&ctx->target, ctx->bin, p->bias,
						 inject_plan_island_size(ctx->bin, p->out),
						 &p->island, &ctx->err)))
			rc = api_state_save(ctx, &(struct api_pending){ .phase = API_PHASE_PROFILING,
					    .res = &p->res, .island = &p->island });
	}
	if (!rc)
		rc = plan(ctx, p);
	if (!rc && ctx->opts.artifact_out) {
		/* The output just proved usable: other instances may apply it. */
		char version[256];
		layout_bolt_version(ctx->bolt, p->wd.path, version, sizeof(version));
		rc = api_artifact_write(ctx, p->output, req.alloc_vma, p->res.size, version,
					p->bolt_args, p->skipped, p->nskipped,
					ctx->opts.artifact_out);
	}
	p->st.round_ns = core_now_ns() - p->t_start;
	copy_stats(p, st);
	if (rc)
		api_drop_pending(ctx);
	else
		p->stage = 2;
	return rc;
}

/* Right before the new version's unwind tables are registered. */
static int note_mapping(void *arg, uint64_t handle)
{
	struct ocolos_ctx *ctx = arg;
	struct round_pending *p = ctx->pending;
	int rc = api_state_save(ctx, &(struct api_pending){ .phase = API_PHASE_MAPPING,
				.res = &p->res, .island = &p->island, .gen = p->entries.gen,
				.unwind = handle });
	if (!rc)
		core_test_kill_at("mapping-saved");
	return rc;
}

/* Map C1 and register its unwind tables: still invisible to the target. */
static int prepare(struct ocolos_ctx *ctx, struct round_pending *p, uint64_t *unwind)
{
	struct proc_target *t = &ctx->target;
	int rc = inject_map_c1(t, p->out, p->bias, &p->fixups, p->entries.gen, &p->res,
			       &p->st.c1_bytes, &ctx->err);
	if (!rc)
		rc = inject_map_island(t, &p->want, p->entries.gen, &ctx->err);
	if (rc)
		return rc;
	core_test_kill_at("c1-mapped");
	p->st.c1_addr = p->bias + p->out->lo;
	uint64_t used = p->bias + p->out->hi - p->res.addr;
	rc = inject_unwind_register_hook(t, p->out, p->bias, p->entries.gen, &p->res, &used, unwind,
					 note_mapping, ctx, &ctx->err);
	if (!rc) {
		core_test_kill_at("mapping-registered");
		inject_reservation_trim(t, &p->res, p->res.addr + used);
		core_test_kill_at("mapping-trimmed");
	} else if (*unwind) {
		/* Maybe registered (inject_unwind_register): kept mapped for
		 * good, never deregistered. */
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "the new code stays mapped, unused, for the "
			  "life of process %d: whether libgcc registered its unwind tables is not "
			  "known", (int)ctx->pid);
		api_state_add_tomb(ctx->state, p->res.addr, p->res.addr + p->res.size);
		api_state_add_tomb(ctx->state, p->island.addr, p->island.addr + p->island.size);
		p->res = (struct inject_reservation){ 0 };
		p->island = (struct inject_reservation){ 0 };
		*unwind = 0;
	}
	return rc;
}

/* The new version, made the newest of the state (takes over the round's
 * reservations, BAT and entries). */
static int push_version(struct ocolos_ctx *ctx, struct round_pending *p, uint64_t unwind)
{
	struct api_state *st = ctx->state;
	if (core_grow((void **)&st->v, &st->cap, st->nv, sizeof(*st->v)))
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	st->v[st->nv++] = (struct api_version){ .gen = p->entries.gen, .res = p->res,
		.island = p->island, .lo = p->bias + p->out->lo, .hi = p->bias + p->out->hi,
		.bytes = p->st.c1_bytes, .unwind = unwind, .bat = p->bat, .entries = p->entries };
	st->last_gen = p->entries.gen;
	p->res = (struct inject_reservation){ 0 };
	p->island = (struct inject_reservation){ 0 };
	p->bat = NULL;
	memset(&p->entries, 0, sizeof(p->entries));
	return 0;
}

void api_fill_state_stats(const struct api_state *st, struct ocolos_stats *out)
{
	out->generation = st->last_gen;
	out->versions_mapped = (uint32_t)st->nv;
	out->versions_retired = st->versions_retired;
	out->bytes_retired = st->bytes_retired;
}

int api_stage_replace(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	struct round_pending *p = ctx->pending;
	struct api_state *state = ctx->state;
	if (!p || p->stage != 2)
		return core_errf(&ctx->err, OCOLOS_EINVAL, "nothing to replace: optimize first");
	/* Another agent may have changed the target since the profile. */
	int rc = api_state_sync(ctx, 0);
	if (rc) {
		api_drop_pending(ctx);
		return rc;
	}
	if (p->generation != state->generation) {
		api_drop_pending(ctx);
		return core_errf(&ctx->err, OCOLOS_EBUSY,
				 "another context changed the code process %d runs since this round "
				 "was profiled; its plan no longer applies: run the round again",
				 (int)ctx->pid);
	}
	uint64_t unwind = 0;
	rc = prepare(ctx, p, &unwind);
	if (!rc)
		rc = inject_stubs_map(&ctx->target, &state->stubs, &ctx->err);
	if (!rc)
		core_test_kill_at("stubs-mapped");
	/* The new version joins the state before the switch, so that the
	 * switch also watches it; it is taken out again if the switch fails. */
	size_t nv_before = state->nv;
	uint32_t gen_before = state->last_gen;
	if (!rc)
		rc = push_version(ctx, p, unwind);
	uint8_t *quiet = rc ? NULL : calloc(state->nv + 1, 1);
	if (!rc && !quiet)
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	struct inject_switch_result sw = { 0 };
	/* The last safe point: once threads are stopped, the switch completes. */
	if (!rc)
		rc = api_check_cancel(ctx, "before the stop-the-world");
	if (!rc)
		rc = api_state_save(ctx, &(struct api_pending){ .phase = API_PHASE_SWITCHING,
				    .want = &p->want, .forward = 1 });
	if (!rc)
		core_test_kill_at("switching-saved");
	if (!rc)
		rc = api_transition(ctx, &p->want, &sw, quiet);
	const struct inject_apply_result res = sw.applied;
	p->st.threads_stopped = sw.threads;
	p->st.pause_ns = sw.pause_ns;
	p->st.call_sites_patched = res.call_sites;
	p->st.pointer_slots_patched = res.ptr_slots;
	p->st.entries_patched = res.entries;
	p->st.entries_blocked = res.blocked;
	p->st.pointer_slots_kept = p->want.slots_kept + res.slots_held;
	if (rc) {
		if (state->nv > nv_before) { /* the switch failed: nothing leads there */
			/* Noted as being retired first, as any version
			 * (versions.c): killed while its tables leave libgcc,
			 * this agent leaves a tombstone, not a switch that the
			 * next one would finish into unmapped code. */
			api_state_save_quiet(ctx, &(struct api_pending){
					     .phase = API_PHASE_RETIRING,
					     .gen = state->v[state->nv - 1].gen });
			api_version_free(ctx, &state->v[--state->nv], 1);
			state->last_gen = gen_before;
		} else {
			/* Registered, never used: out of libgcc before its memory
			 * goes; else kept mapped for good (api_version_free). */
			struct core_err e = { 0 };
			if (inject_unwind_deregister(&ctx->target, unwind, &e)) {
				core_logf(&ctx->log, OCOLOS_LOG_WARN, "the new code stays mapped, "
					  "unused: %s", e.msg);
				api_state_add_tomb(state, p->res.addr, p->res.addr + p->res.size);
				api_state_add_tomb(state, p->island.addr,
						   p->island.addr + p->island.size);
				p->res = (struct inject_reservation){ 0 };
				p->island = (struct inject_reservation){ 0 };
			}
		}
		free(quiet);
		p->st.round_ns = core_now_ns() - p->t_start;
		copy_stats(p, st);
		api_drop_pending(ctx); /* unmaps C1: nothing points at it */
		return rc;
	}
	state->redirected = 1;
	state->generation++;
	inject_plan_free(&state->want);
	state->want = p->want;
	p->want = (struct inject_plan){ 0 };
	api_state_save_quiet(ctx, NULL);
	core_logf(&ctx->log, OCOLOS_LOG_INFO,
		  "redirect to C%u: %u call sites, %u pointer slots (%u left on C0: their function's "
		  "address is taken), %u stubs, %u function entries (%u left: a thread was inside; "
		  "%u of older versions left: no thread can reach them; %u mismatched, %u slots held "
		  "with them), %u threads stopped for %.3f ms (stopping %.3f, looking %.3f, writing "
		  "%.3f)", state->last_gen, res.call_sites, res.ptr_slots, state->want.slots_kept,
		  res.stubs, res.entries, res.blocked, res.deferred, res.mismatched, res.slots_held,
		  p->st.threads_stopped, (double)p->st.pause_ns / 1e6, (double)sw.stop_ns / 1e6,
		  (double)sw.look_ns / 1e6, (double)sw.write_ns / 1e6);
	/* perf and gdb get the new version's symbols (debuginfo.c). */
	api_debuginfo_publish(ctx, &state->v[state->nv - 1], p->out, p->bias);
	/* Older versions nothing leads to any more go now, if no thread is in
	 * them (versions.c). A failure to retire is not the round's. */
	uint32_t retired = 0;
	if (api_retire(ctx, quiet, 1, &retired))
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "retiring old code failed: %s", ctx->err.msg);
	core_err_clear(&ctx->err);
	free(quiet);
	api_fill_state_stats(state, &p->st);
	p->st.round_ns = core_now_ns() - p->t_start;
	copy_stats(p, st);
	ctx->round_st = p->st;
	ctx->round_st_valid = 1;
	api_drop_pending(ctx);
	return 0;
}

int api_round(struct ocolos_ctx *ctx, struct ocolos_stats *st)
{
	int rc = api_stage_profile(ctx, st);
	if (!rc && !(rc = api_check_cancel(ctx, "before the optimize stage")))
		rc = api_stage_optimize(ctx, st);
	if (!rc && !(rc = api_check_cancel(ctx, "before the replace stage")))
		rc = api_stage_replace(ctx, st);
	if (!rc && ctx->opts.work_fn)
		rc = api_benefit_check(ctx, st);
	return rc;
}

void api_ctx_release(struct ocolos_ctx *ctx)
{
	api_drop_pending(ctx);
	elf_binary_close(ctx->bin);
	ctx->bin = NULL;
	if (ctx->target_open)
		proc_target_close(&ctx->target);
	ctx->target_open = 0;
}

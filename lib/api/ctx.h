/*
 * The context: one target process and what libocolos has done to it. The
 * in-process API uses one context for the calling process (its code image
 * is process-wide state already; see self.c); ocolos_open_pid() makes one
 * per process optimized from outside (pid.c).
 */
#ifndef OCOLOS_API_CTX_H
#define OCOLOS_API_CTX_H

#include <limits.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "core/err.h"
#include "core/log.h"
#include "elf/binary.h"
#include "inject/inject.h"
#include "proc/target.h"

/* Options of a round, defaults applied (see ocolos_self_opts). */
struct round_opts {
	uint32_t profile_ms, sample_hz, bolt_timeout_ms, stop_timeout_ms, call_timeout_ms;
	int stop_signal, keep_work_dir;
	int sampler;		/* enum ocolos_sampler */
	int edges;		/* enum ocolos_edges */
	int redirect_writable_slots;
	const char *bolt_path, *binary_path, *tmp_dir;
	const char *const *bolt_extra_args;
};

/* What a successful round left in the target (kept for undoing it). */
struct round_live {
	struct inject_reservation c1;	/* C1's mapping */
	struct inject_plan plan;	/* patches written */
	uint64_t unwind;		/* unwinder registration handle */
};

struct round_pending; /* a round between its stages (round.c) */

struct ocolos_ctx {
	atomic_flag busy;		/* a call is running on this context */
	struct core_err err;		/* last error of a call on this context */
	struct core_log log;
	pid_t pid;
	struct round_opts opts;
	struct target target;		/* open while pid is known */
	int proc_target_open;
	struct elf_binary *bin;		/* opened by the first round */
	char bolt[PATH_MAX];		/* probed llvm-bolt, "" until probed */
	char bolt_hint[PATH_MAX];	/* the opts.bolt_path it was probed for */
	int bolt_custom_vma;		/* it has --custom-allocation-vma */
	struct round_pending *pending;	/* profiled and/or optimized, not replaced */
	int live;			/* `applied` holds the last round's C1 */
	int redirected;			/* its patches are in place */
	struct round_live applied;
};

/* The stages of a round (round.c). Each fills `st` as far as it got.
 * profile: model, BOLT probe, reservation, sampling, profile file.
 * optimize: BOLT, its output, the patch plan. replace: map C1, register
 * its unwind tables, stop the world and redirect. A failing stage drops
 * the pending round: the target keeps its original code. */
int core_profile(struct ocolos_ctx *ctx, struct ocolos_stats *st);
int core_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *st);
int core_replace(struct ocolos_ctx *ctx, struct ocolos_stats *st);
int core_round(struct ocolos_ctx *ctx, struct ocolos_stats *st);
void core_drop_pending(struct ocolos_ctx *ctx);

/* Stop the world and write the live round's plan forward (C0 -> C1) or
 * backward. */
int core_switch(struct ocolos_ctx *ctx, int forward, struct ocolos_switch_stats *st);

/* Sample the other threads and classify where they run (see ocolos.h). */
int core_where(struct ocolos_ctx *ctx, uint32_t window_ms, uint32_t hz,
	       struct ocolos_where_result *out);

/* Free everything the context holds; what was injected stays in the target. */
void core_ctx_release(struct ocolos_ctx *ctx);

#endif

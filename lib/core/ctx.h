/*
 * The context: one target process and what libocolos has done to it. For
 * the in-process API there is exactly one, for the calling process (its
 * code image is process-wide state already; see self.c).
 */
#ifndef OCOLOS_CORE_CTX_H
#define OCOLOS_CORE_CTX_H

#include <limits.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "core/err.h"
#include "core/log.h"
#include "elf/binary.h"
#include "inject/inject.h"

/* Options of one round, defaults applied (see ocolos_self_opts). */
struct round_opts {
	uint32_t profile_ms, sample_hz, bolt_timeout_ms, stop_timeout_ms;
	int stop_signal, keep_work_dir;
	const char *bolt_path, *binary_path, *tmp_dir;
	const char *const *bolt_extra_args;
};

/* What a successful round left in the process (kept for undoing it). */
struct round_live {
	struct inject_reservation c1;	/* C1's mapping */
	struct inject_plan plan;	/* patches written */
	void *unwind;			/* unwinder registration */
};

struct ocolos_ctx {
	atomic_flag busy;		/* a round is running */
	struct core_err err;		/* last error of a call on this context */
	struct core_log log;
	pid_t pid;
	struct elf_binary *bin;		/* opened by the first round */
	char bolt[PATH_MAX];		/* probed llvm-bolt, "" until probed */
	char bolt_hint[PATH_MAX];	/* the opts.bolt_path it was probed for */
	int live;			/* `applied` holds the last round's C1 */
	int redirected;			/* its patches are in place */
	int stop_signal;		/* of the last round, for switching */
	uint32_t stop_timeout_ms;
	struct round_live applied;
};

/* Stop the world and write `plan` forward (C0 -> C1) or backward, filling
 * `st`. Every failure leaves the plan wholly unapplied (or wholly applied
 * when going back). */
/* Sample the other threads and classify where they run (see ocolos.h). */
int core_where_self(struct ocolos_ctx *ctx, uint32_t window_ms, uint32_t hz,
		    struct ocolos_where *out);

int core_switch_self(struct ocolos_ctx *ctx, const struct inject_plan *plan,
		     int forward, struct ocolos_switch_stats *st);

/* Run one profile → optimize → replace round on the calling process. */
int core_round_self(struct ocolos_ctx *ctx, const struct round_opts *o,
		    struct ocolos_stats *st);

#endif

/*
 * The top floor: contexts, their options, and the round's stages as the
 * public calls see them. Nothing below api/ includes this header.
 *
 * A context (struct ocolos_ctx) is one target process and what this
 * library caches about it (the binary model, the probed BOLT, a round
 * between its stages). What the rounds left in the target — the optimized
 * code in use and the patches that redirect to it — is `struct api_state`:
 * for the calling process it is process-wide, shared by every self context
 * (the process has one code image), and a mutex lets one call at a time
 * use it; for another process the context owns it.
 */
#ifndef OCOLOS_API_API_H
#define OCOLOS_API_API_H

#include <limits.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "core/err.h"
#include "core/log.h"
#include "elf/binary.h"
#include "inject/inject.h"
#include "proc/target.h"
#include "sample/sample.h"

/* Options of a context, defaults applied (see struct ocolos_opts). The
 * strings are the context's own copies. */
struct api_opts {
	uint32_t profile_ms, sample_hz, bolt_timeout_ms, stop_timeout_ms, call_timeout_ms;
	int stop_signal, keep_work_dir;
	int sampler;		/* enum ocolos_sampler */
	int edges;		/* enum ocolos_edges */
	int pointer_slots;	/* enum ocolos_pointer_slots */
	const char *bolt_path, *binary_path, *tmp_dir;
	const char *const *bolt_extra_args;
	const char *profile_export;	   /* NULL: none */
	const char *const *profile_from;   /* NULL: sample */
	const char *artifact_out, *artifact_in; /* NULL: none (artifact.c) */
	ocolos_work_fn work_fn;	/* NULL: no benefit check */
	void *work_user;
	uint32_t benefit_pairs, benefit_window_ms;
	double benefit_min_ratio;
	/* The sampling window (ctx.c: configure): converge (profile_ms 0)
	 * between profile_min_ms and profile_max_ms, or a fixed profile_ms
	 * that max_overhead_permille may lengthen up to profile_max_ms.
	 * max_overhead_permille 0 here: no limit (the caller's 1000). */
	int converge;
	uint32_t profile_min_ms, profile_max_ms, converge_permille, max_overhead_permille;
};

/* One version of optimized code mapped in the target (C1, C2, ...). */
struct api_version {
	uint32_t gen;
	struct inject_reservation res;	/* its mapping: code, tables */
	struct inject_reservation island; /* AArch64 veneers, or none */
	uint64_t lo, hi;		/* run-time span of its code */
	uint64_t bytes;			/* bytes mapped */
	uint64_t unwind;		/* unwinder registration, or 0 */
	struct elf_bat *bat;		/* its addresses back to C0's */
	struct inject_version_entries entries; /* its copies' entries */
	struct inject_pin pin;		/* what kept it mapped at the last look */
};

/* What the rounds left in a target process. */
struct api_state {
	struct api_version *v;		/* mapped versions, oldest first */
	size_t nv, cap;
	int redirected;			/* the newest version is in use */
	struct inject_record rec;	/* every location written: original, current */
	struct inject_plan want;	/* what the newest version's round wanted
					   (old = original bytes): a re-apply */
	struct inject_stubs stubs;	/* slot stubs */
	uint32_t last_gen;		/* generation of the newest version made */
	uint64_t pointer_guard;		/* glibc's, as read at the last stop (scan.c;
					   AArch64: from the dynamic linker, once) */
	int guard_looked;		/* AArch64: looked for it already */
	struct proc_live_thread threads[1024]; /* the threads stopped then */
	size_t nthreads;
	uint32_t versions_retired;
	uint64_t bytes_retired;
	/* Bumped by every change of the code in use, so a round prepared by
	 * one context is not applied over another's (round.c). */
	uint64_t generation;
	uint64_t bias;			/* the binary's load bias in the target */
	/* The state record in the target (persist.c). */
	uint64_t seq;			/* of the newest record written or read */
	struct inject_reservation records[2]; /* its mappings: older, newest */
	int phase;			/* enum api_phase of the newest */
	/* Ranges kept mapped for good (see persist.c: "tombstone"). */
	uint64_t (*tomb)[2];
	size_t ntomb, tomb_cap;
};

/* What a state record says is in progress (persist.c). */
enum api_phase {
	API_PHASE_IDLE = 0,
	API_PHASE_PROFILING = 1,	/* res, island: the round's reservations */
	API_PHASE_MAPPING = 2,		/* res, island, gen: the new version mapped,
					   `unwind` about to be registered */
	API_PHASE_SWITCHING = 3,	/* want, forward: a transition about to stop */
	API_PHASE_RETIRING = 4,		/* gen: the version about to be unmapped */
};
struct api_pending {
	int phase;
	const struct inject_reservation *res, *island;
	uint32_t gen;
	uint64_t unwind;
	const struct inject_plan *want;
	int forward;			/* the transition leads to the newest version */
};

struct round_pending; /* a round between its stages (round.c) */

struct ocolos_ctx {
	atomic_flag busy;		/* a call is running on this context */
	/* ocolos_cancel() was called: the running (or next) call stops at its
	 * next safe point (api_check_cancel); cleared when a call returns.
	 * Lock-free, so a signal handler may set it (ctx.c). */
	atomic_int cancel;
	struct core_err err;		/* last error of a call on this context */
	struct core_log log;
	int self;			/* the calling process */
	pid_t pid;			/* the target (self: as of the running call) */
	struct api_opts opts;
	char *strings;			/* one allocation behind opts' strings */
	struct proc_target target;	/* open while pid is known */
	int target_open;
	struct elf_binary *bin;		/* opened by the first round */
	char bolt[PATH_MAX];		/* probed llvm-bolt, "" until probed */
	char bolt_hint[PATH_MAX];	/* the opts.bolt_path it was probed for */
	int bolt_custom_vma;		/* it has --custom-allocation-vma */
	struct round_pending *pending;	/* profiled and/or optimized, not replaced */
	struct api_state *state;	/* self: the process's; else &own_state */
	uint64_t entry_frame;		/* the running call's frame on its thread */
	/* What the last round on this context reported, for a check stage
	 * called on its own afterwards (its stats continue the round's). */
	struct ocolos_stats round_st;
	int round_st_valid;
	/* ocolos_add_samples(): IPs for the next profile stage */
	uint64_t *ext_ips;
	size_t ext_n, ext_cap;
	/* ocolos_add_branch_stacks(): stacks for the next profile stage
	 * (branches and stack starts only) */
	struct sample_set ext_stacks;
	struct api_state own_state;
};

/* ---- options and the ABI of structs that cross the API (abi.c) ---- */

/* Copy the caller's options `in` (of whatever size they were compiled
 * with, given by their leading `size_t sz`) into `out` (`out_size` bytes,
 * zero-filled first). `known` is offsetofend of the last field this
 * library knows: non-zero bytes past it are refused (OCOLOS_EINVAL naming
 * the offset), since they are settings this version would silently
 * ignore. `in` may be NULL (all defaults). */
int api_read_opts(const void *in, void *out, size_t out_size, size_t known, const char *what,
		  struct core_err *err);
#define API_OFFSETOFEND(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define API_READ_OPTS(in, out, type, err)                                      \
	api_read_opts(in, out, sizeof(*(out)),                                 \
		      API_OFFSETOFEND(struct type, type##__last_field), #type, err)
/* A result struct from the caller (NULL is fine: not wanted): its sz must
 * be set. Checked before anything is done to the target. */
int api_check_out(const void *out, const char *what, struct core_err *err);
/* Write the library's result `src` (`known` bytes, a leading size_t sz
 * included) into the caller's `out` (NULL: nothing): at most out->sz
 * bytes, the caller's sz kept, and whatever of the caller's struct lies
 * past `known` (fields of a newer header) zeroed. */
void api_write_out(void *out, const void *src, size_t known);

/* ---- contexts (ctx.c) ---- */

/* Start a call on `ctx`: take its busy flag (OCOLOS_EBUSY if taken), for a
 * self context the process's lock too, follow a fork (the context then
 * describes the child), clear the context's error. */
int api_enter(struct ocolos_ctx *ctx);
/* End it: record a generic message for `rc` if none was set, log it, copy
 * it to the calling thread's last error, release what api_enter took. */
int api_leave(struct ocolos_ctx *ctx, int rc);
/* A call that could not start (a NULL or busy context): the thread's last
 * error says so; the context's is left to the call that owns it. */
int api_refuse(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A safe point: OCOLOS_ECANCELED, with a message saying the round was
 * abandoned `where` ("before the optimize stage"), if ocolos_cancel() was
 * called on ctx; else 0. The caller then fails as on any error (the
 * pending round is dropped by api_leave in any case). */
int api_check_cancel(struct ocolos_ctx *ctx, const char *where);
/* Open ctx->target for ctx->pid if not open yet. */
int api_open_target(struct ocolos_ctx *ctx);
/* Free everything the context caches; what was done to the target stays. */
void api_ctx_release(struct ocolos_ctx *ctx);

/* ---- the round (round.c), switching (switch.c), where (where.c) ---- */

/* The stages. Each fills `st` as far as it got. profile: model, BOLT
 * probe, reservation, sampling, profile file. optimize: BOLT, its output,
 * the patch plan. replace: map C1, register its unwind tables, stop the
 * world and redirect. A failing stage drops the pending round: the target
 * keeps the code it ran. */
int api_stage_profile(struct ocolos_ctx *ctx, struct ocolos_stats *st);
int api_stage_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *st);
int api_stage_replace(struct ocolos_ctx *ctx, struct ocolos_stats *st);
int api_round(struct ocolos_ctx *ctx, struct ocolos_stats *st);
void api_drop_pending(struct ocolos_ctx *ctx);

/* The benefit check after a round that switched to new code (benefit.c):
 * alternate the original and the newest code, measure the work counter,
 * keep the newest or revert (OCOLOS_ENOGAIN). Fills st's benefit_*. */
int api_benefit_check(struct ocolos_ctx *ctx, struct ocolos_stats *st);

/* Profiles as files (profile_io.c): write the round's profile file
 * `profile` to `path` (gzip, build-id in the header); read, check and
 * merge `paths` into `profile` (*records: branch records). */
int api_profile_export(struct ocolos_ctx *ctx, const char *profile, const char *path);
int api_profile_import(struct ocolos_ctx *ctx, const char *const *paths, const char *profile,
		       uint64_t *records);
/* Artifacts, one BOLT per build (artifact.c). Write BOLT's output
 * `output`, built for link-time address `vma` in a reservation of `size`
 * bytes by BOLT `bolt_version` with arguments `bolt_args`, told to leave
 * the `nskipped` functions `skipped` in place, as the artifact `path`. Read
 * the artifact `path` (trusted, whole, of this build: else
 * OCOLOS_EUNTRUSTED / OCOLOS_EBADARTIFACT) and write its BOLT output to
 * `output`; *vma and *size say where it must go. */
int api_artifact_write(struct ocolos_ctx *ctx, const char *output, uint64_t vma, uint64_t size,
		       const char *bolt_version, const char *bolt_args, const char *const *skipped,
		       size_t nskipped, const char *path);
int api_artifact_read(struct ocolos_ctx *ctx, const char *path, const char *output,
		      uint64_t *vma, uint64_t *size);
/* ocolos_stage_check(): the same as a call of its own, on what the last
 * round (possibly another agent's: the state record) left in use. */
int api_stage_check(struct ocolos_ctx *ctx, struct ocolos_stats *st);

/* Stop the world and take the target to the newest version's code
 * (forward) or back to C0 (a revert) (switch.c). */
int api_switch(struct ocolos_ctx *ctx, int forward, struct ocolos_switch_stats *st);

/* ---- code versions (versions.c) ---- */

/* Take the target from what the record says to `want`, in one stop (the
 * record is updated with what was written), and see at that stop which
 * versions no thread is in (quiet[i], for state->v[i]; may be NULL).
 * `want` NULL: change nothing, only stop and look. */
int api_transition(struct ocolos_ctx *ctx, const struct inject_plan *want,
		   struct inject_switch_result *res, uint8_t *quiet);
/* Retire the versions that are not in use (all but the newest, or all
 * after a revert unless `keep_newest`: a re-apply needs it) that nothing we wrote leads to and no thread is in:
 * `quiet[i]` says version i had no thread in it at the stop just made (or
 * NULL: make a stop now to see). Unmapped after a scan of the target's
 * memory finds no reference to them and a second, short stop confirms
 * that still no thread is in them. *retired counts them. */
int api_retire(struct ocolos_ctx *ctx, const uint8_t *quiet, int keep_newest, uint32_t *retired);
/* ocolos_retire(): what earlier calls left (the state record), every
 * version that can go, and the counts in `st`. */
int api_retire_call(struct ocolos_ctx *ctx, struct ocolos_stats *st);
void api_fill_state_stats(const struct api_state *state, struct ocolos_stats *out);
/* The want plan of a revert: every stub and every version's entries back
 * at C0, slots kept on their stubs. */
int api_want_c0(struct ocolos_ctx *ctx, struct inject_plan *want);
/* Free a version (unmapping it and dropping its unwind tables if `unmap`). */
/* Forget version `v`; with `unmap`, first take its unwind tables out of
 * the target's libgcc and unmap it — unless that call could not be made
 * or did not return in time: then it stays mapped for good (a tombstone,
 * persist.c), since libgcc may still read it. */
void api_version_free(struct ocolos_ctx *ctx, struct api_version *v, int unmap);
/* Keep [lo, hi) mapped for the life of the process (persist.c). 0 or
 * OCOLOS_ENOMEM. */
int api_state_add_tomb(struct api_state *st, uint64_t lo, uint64_t hi);
void api_state_free(struct api_state *st);

/* ---- the state record in the target (persist.c) ---- */

/* Write a new record of ctx->state and what `pd` says is in progress
 * (NULL: nothing), then drop the oldest but one. */
int api_state_save(struct ocolos_ctx *ctx, const struct api_pending *pd);
/* The same where failing is not the call's failure: logged, ctx->err kept. */
void api_state_save_quiet(struct ocolos_ctx *ctx, const struct api_pending *pd);
/* Read the target's record if it is newer than what ctx->state holds, and
 * take it over, checked against the target; with `may_recover`, finish a
 * step whose writer is gone. Needs the model (ctx->bin). OCOLOS_ESTATE
 * when the record is another library version's, another binary's, or
 * unusable; OCOLOS_EBUSY when a live process is in the middle of a round. */
int api_state_sync(struct ocolos_ctx *ctx, int may_recover);

/* Read every location of the patch record from the target and record what
 * it holds where that differs (a switch that found unexpected bytes, one
 * that was cut short, a slot the program wrote), and which version those
 * bytes lead into: retirement must never trust a stale record. */
void api_record_refresh(struct ocolos_ctx *ctx);

/* The model of the target's binary (ctx->bin), and its load bias, checked
 * against the running image (round.c). */
int api_open_model(struct ocolos_ctx *ctx);
int api_find_bias(struct ocolos_ctx *ctx, uint64_t *bias);

/* Sample the target's threads and classify where they run. */
int api_where(struct ocolos_ctx *ctx, uint32_t window_ms, uint32_t hz,
	      struct ocolos_where_result *out);

#endif

/*
 * libocolos — online code layout optimization for running native programs.
 *
 * This is the only header a user includes. One optimization round: sample
 * the process for a window, have LLVM BOLT re-lay out the hot code of the
 * program's own binary for an address range reserved in the process, map
 * that code (C1) beside the original (C0), stop the world briefly, redirect
 * direct calls, the function-pointer slots the program cannot tell apart
 * (docs/guide.md, the pointer rule) and (x86-64, where provably safe) the
 * entries of moved functions to C1, resume. Nothing else of C0 changes, so
 * return addresses and function pointers into C0 stay valid.
 *
 * The model: a context (struct ocolos_ctx) is one target process — the
 * calling process (ocolos_open_self) or another one by pid
 * (ocolos_open_pid) — with the same calls on both: a whole round, its
 * stages one by one, revert / re-apply, where. ocolos_optimize_self() and
 * friends are one-call conveniences on a temporary self context.
 *
 * ABI. Every struct here starts with `size_t sz`: fill it with
 * OCOLOS_OPTS(), which zero-fills the struct and sets sz, options and
 * results alike. The library reads options only up to the last field it
 * knows and refuses non-zero bytes past it (a field from a newer header
 * that it would silently ignore); it writes results only up to the sz the
 * caller set, and zeroes the fields of a newer header that it does not
 * know. Every call returns 0 or a negative OCOLOS_E* code;
 * ocolos_strerror() names the code and ocolos_last_error() says what
 * happened and what to do about it.
 *
 * Ownership: the library keeps no pointer the caller passes in, except
 * log_user (handed back to log_fn); option strings are copied when a
 * context is opened. Strings the library returns belong to it (see each
 * call for how long they stay valid).
 *
 * Threads: a context is used by one thread at a time; a second call while
 * one runs on the same context returns OCOLOS_EBUSY (ocolos_cancel() is the
 * exception: it is meant to be called while a call runs). Contexts on different
 * processes are independent. In one process, at most one call on a self
 * context runs at a time (they share the process's code image): the others
 * get OCOLOS_EBUSY. See docs/api.md for fork().
 */
#ifndef OCOLOS_OCOLOS_H
#define OCOLOS_OCOLOS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OCOLOS_VERSION_MAJOR 0
#define OCOLOS_VERSION_MINOR 2
#define OCOLOS_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, for compile-time checks. */
#define OCOLOS_VERSION_NUMBER                                                  \
	(OCOLOS_VERSION_MAJOR * 10000 + OCOLOS_VERSION_MINOR * 100 + OCOLOS_VERSION_PATCH)
#define OCOLOS_STRINGIFY_(x) #x
#define OCOLOS_STRINGIFY(x) OCOLOS_STRINGIFY_(x)
/* "MAJOR.MINOR.PATCH" of this header. */
#define OCOLOS_VERSION_STRING                                                  \
	OCOLOS_STRINGIFY(OCOLOS_VERSION_MAJOR) "." OCOLOS_STRINGIFY(OCOLOS_VERSION_MINOR) "." \
	OCOLOS_STRINGIFY(OCOLOS_VERSION_PATCH)

#define OCOLOS_API __attribute__((visibility("default")))

/* A target process and what libocolos did to it (opaque). */
struct ocolos_ctx;

/* Error codes: every call returns 0 or one of these (negative). */
enum ocolos_error {
	OCOLOS_OK = 0,
	OCOLOS_EINVAL = -1,	/* bad argument, or unknown non-zero opts bytes */
	OCOLOS_ENOMEM = -2,	/* out of memory */
	OCOLOS_EIO = -3,	/* reading a file or /proc failed */
	OCOLOS_EELF = -4,	/* the binary is not an ELF file we can model */
	OCOLOS_ENORELOCS = -5,	/* binary linked without -Wl,--emit-relocs */
	OCOLOS_ENOSYMS = -6,	/* binary is stripped (no .symtab) */
	OCOLOS_ENOTSUP = -7,	/* unsupported machine, binary feature or sampler */
	OCOLOS_EPERF = -8,	/* perf_event_open refused or failed */
	OCOLOS_ENOPROFILE = -9,	/* the window produced no samples in the binary */
	OCOLOS_ENOBOLT = -10,	/* no usable llvm-bolt found */
	OCOLOS_EBOLT = -11,	/* llvm-bolt failed on this binary/profile */
	OCOLOS_ETIMEDOUT = -12,	/* BOLT or stop-the-world exceeded its limit */
	OCOLOS_ERESERVE = -13,	/* no free address range within branch reach */
	OCOLOS_EBUSY = -14,	/* another call is running on this target */
	OCOLOS_ESTOP = -15,	/* could not stop every thread of the target */
	OCOLOS_EPATCH = -16,	/* code or data to patch was not what we expected */
	OCOLOS_ENOTHOT = -17,	/* BOLT moved no function: nothing to redirect */
	OCOLOS_EATTACH = -18,	/* cannot ptrace the target process */
	OCOLOS_ENOPROC = -19,	/* the target process is gone or exiting */
	OCOLOS_ESTALE = -20,	/* the binary on disk is not the one running */
	OCOLOS_ECANCELED = -21,	/* ocolos_cancel() stopped the call */
	OCOLOS_ESTATE = -22,	/* the target's state record is another library
				   version's or binary's, or unusable: nothing done */
	OCOLOS_ENOGAIN = -23,	/* the benefit check found the optimized code no
				   faster: the target runs its original code */
	OCOLOS_EBADPROFILE = -24, /* an imported profile is of another build,
				     truncated or malformed: nothing done */
	OCOLOS_EBADARTIFACT = -25, /* an artifact (opts.artifact_in) is of another
				      build, altered (digest), truncated or
				      malformed: nothing done */
	OCOLOS_ETAKEN = -26,	/* the address range an artifact's code was built
				   for is taken in this process: run a local
				   round instead; nothing done */
	OCOLOS_EUNTRUSTED = -27, /* an artifact file (or its directory) is writable
				    by group/others or owned by another user:
				    not loaded as code; nothing done */
};

/* Short fixed text for an error code ("OCOLOS_ENORELOCS: ..."). Never NULL;
 * a static string. Thread-safe. */
OCOLOS_API const char *ocolos_strerror(int err);

/* Version of the library actually loaded: "MAJOR.MINOR.PATCH" (a static
 * string) and OCOLOS_VERSION_NUMBER's encoding of it. Thread-safe. */
OCOLOS_API const char *ocolos_version(void);
OCOLOS_API unsigned ocolos_version_number(void);

/* Log levels for the log callback. */
enum ocolos_log_level {
	OCOLOS_LOG_ERROR = 0,
	OCOLOS_LOG_WARN = 1,
	OCOLOS_LOG_INFO = 2,
	OCOLOS_LOG_DEBUG = 3,
};

/* The library never prints; it calls this if set. `msg` has no newline and is
 * valid only for the duration of the call. Called from the thread running the
 * call on the context, never while the world is stopped. */
typedef void (*ocolos_log_fn)(enum ocolos_log_level level, const char *msg,
			      void *user);

/* Zero-fill a struct of this header, set its sz, and apply designated
 * initializers: options (OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 2000))
 * and results (OCOLOS_OPTS(ocolos_stats, st)) alike. In C++, zero-initialize
 * the struct and set sz = sizeof(it) instead. */
#define OCOLOS_OPTS(TYPE, NAME, ...)                                           \
	struct TYPE NAME = ({                                                  \
		struct TYPE ___##NAME;                                         \
		__builtin_memset(&___##NAME, 0, sizeof(___##NAME));            \
		___##NAME = (struct TYPE){ .sz = sizeof(struct TYPE),          \
					   __VA_ARGS__ };                      \
		___##NAME;                                                     \
	})

/* Where samples come from. */
enum ocolos_sampler {
	/* perf-lbr where the machine has branch-stack sampling, else perf-ip,
	 * else (in-process only) sigprof. */
	OCOLOS_SAMPLER_AUTO = 0,
	/* perf_event_open branch stacks (Intel LBR, AMD BRS, AArch64 BRBE):
	 * exact taken branches. */
	OCOLOS_SAMPLER_PERF_LBR = 1,
	/* perf_event_open instruction-pointer samples (cycles, or cpu-clock
	 * without a PMU). */
	OCOLOS_SAMPLER_PERF_IP = 2,
	/* Per-thread CPU-time timers in the process itself: no perf_event
	 * access needed (containers, qemu-user); at most one sample per kernel
	 * tick per thread. Self contexts only. */
	OCOLOS_SAMPLER_SIGPROF = 3,
};

/* How IP samples (perf-ip, sigprof) become the edge counts BOLT lays out
 * blocks with. Branch stacks (perf-lbr) carry edges and ignore this. */
enum ocolos_edges {
	OCOLOS_EDGES_AUTO = 0,	 /* OCOLOS_EDGES_HYBRID */
	/* The library's CFGs, the AOBO hybrid estimator and inference of
	 * blocks that must have run, handed to BOLT as branch records. */
	OCOLOS_EDGES_HYBRID = 1,
	/* Bare samples; BOLT infers edges itself (perf2bolt's --ba / "-nl").
	 * BOLT 22 only. */
	OCOLOS_EDGES_BOLT = 2,
};

/* Which function-pointer slots the linker filled (v-tables, const and
 * writable tables of functions) are redirected to C1. */
enum ocolos_pointer_slots {
	/* Only the slots of functions whose address the program has no other
	 * way to obtain — no code takes it, it is not exported, all its slots
	 * move together — so no comparison of function pointers changes its
	 * result (docs/guide.md, the pointer rule). Calls through the other
	 * slots reach C1 through the C0 entry's jump. */
	OCOLOS_SLOTS_SAFE = 0,
	/* Every slot, even those of functions whose address the program can
	 * also obtain as `&func` (which still yields C0): only for a program
	 * that never compares function pointers. */
	OCOLOS_SLOTS_ALL = 1,
	/* None: every value the program can read stays what it was. */
	OCOLOS_SLOTS_NONE = 2,
};

/* A count of the work the target has done so far (requests served,
 * operations, bytes): it only grows, and grows faster when the program runs
 * faster. The benefit check (struct ocolos_opts) calls it from the thread
 * running the round; for a pid context, in the calling process. */
typedef uint64_t (*ocolos_work_fn)(void *user);

/* Options of a context. All fields default when zero/NULL. Strings are
 * copied by ocolos_open_*: the caller may free them after the call. */
struct ocolos_opts {
	size_t sz; /* sizeof(struct ocolos_opts); set by OCOLOS_OPTS */
	/* Length of the sampling window, ms: a fixed window. Default 0: the
	 * window ends when the profile has converged (profile_min_ms and
	 * below; since 0.2, before which the default was a fixed 4000 ms —
	 * about 80k samples with 2 busy threads, which left fe at 0.85 of
	 * the gain a dense profile gives, see docs/benchmarks.md). */
	uint32_t profile_ms;
	/* Samples per second per thread (cpu-clock / cycles). Default 10000. */
	uint32_t sample_hz;
	/* llvm-bolt to run. Default: probe /usr/lib/llvm-22/bin/llvm-bolt,
	 * then other /usr/lib/llvm-N/bin/llvm-bolt, then $PATH. */
	const char *bolt_path;
	/* Kill BOLT after this many ms and fail with OCOLOS_ETIMEDOUT.
	 * Default 300000. */
	uint32_t bolt_timeout_ms;
	/* Give up stopping the world after this many ms (OCOLOS_ESTOP). A
	 * thread that blocks the stop signal cannot be parked. Default 2000. */
	uint32_t stop_timeout_ms;
	/* Self contexts: the real-time signal used to park threads. Default
	 * SIGRTMIN + 7. Ignored by pid contexts (ptrace stops the target). */
	int stop_signal;
	/* Pid contexts: the limit of a call injected into the target
	 * (registering C1's unwind tables with its libgcc); OCOLOS_ETIMEDOUT
	 * past it. Default 2000. Ignored by self contexts. */
	uint32_t call_timeout_ms;
	/* Binary to optimize. Default: the file behind /proc/PID/exe. */
	const char *binary_path;
	/* Parent of the private 0700 work directory. Default $TMPDIR or /tmp. */
	const char *tmp_dir;
	/* Keep the work directory (profile, BOLT output, BOLT log). Default 0. */
	int keep_work_dir;
	/* Sampler (enum ocolos_sampler). Default OCOLOS_SAMPLER_AUTO. */
	int sampler;
	/* Edge inference for IP samples (enum ocolos_edges). Default AUTO. */
	int edges;
	/* Pointer slots to redirect (enum ocolos_pointer_slots). Default
	 * OCOLOS_SLOTS_SAFE. */
	int pointer_slots;
	/* Log callback and its user pointer. Default: no logging. */
	ocolos_log_fn log_fn;
	void *log_user;
	/* Extra llvm-bolt arguments appended after the library's (NULL-ended
	 * array, or NULL; copied). For experiments; the library's placement
	 * options must not be overridden. */
	const char *const *bolt_extra_args;
	/* The benefit check (off unless work_fn is set): after a round has
	 * switched to its optimized code, the round measures the work counter
	 * in short windows, alternating the original code and the new one
	 * (ABBA order, `benefit_pairs` pairs of `benefit_window_ms` each), and
	 * keeps the optimized code only if the median of the per-pair ratios
	 * (optimized rate / original rate) reaches `benefit_min_ratio`;
	 * otherwise it reverts and the round returns OCOLOS_ENOGAIN.
	 * Defaults: 5 pairs, 300 ms, 1.0. */
	ocolos_work_fn work_fn;
	void *work_user;
	uint32_t benefit_pairs;
	uint32_t benefit_window_ms;
	double benefit_min_ratio;
	/* Profiles as files (fleets: sample a few instances of a build,
	 * optimize them all). profile_export: after the sampling window, write
	 * the round's profile there (BOLT's pre-aggregated format, gzip; the
	 * build-id in its header). profile_from: NULL-ended list of such files
	 * (or NULL); if set, the profile stage reads and merges them instead
	 * of sampling — each must be of the build the process runs
	 * (OCOLOS_EBADPROFILE otherwise). Both copied. */
	const char *profile_export;
	const char *const *profile_from;
	/* Sampling until the profile is good enough (docs/api.md, "The
	 * sampling window"), the default: with profile_ms 0 the window ends
	 * once the profile has converged: the distribution over 256-byte
	 * blocks of the binary's code (docs/api.md says why blocks) of
	 * the first half of the samples and of all of them differ by less
	 * than profile_converge_permille (total variation distance,
	 * 0..1000), checked every 250 ms once profile_min_ms has passed; at
	 * profile_max_ms at the latest. Defaults: 1000 ms, 20000 ms, 30
	 * permille. Under a cost limit (max_overhead_permille, by default
	 * 2 % for such a window) profile_max_ms counts time at the asked
	 * rate: at a tenth of sample_hz the window may last ten times as
	 * long, and at most 16 x profile_max_ms of wall time. With
	 * profile_ms set (a fixed window) profile_min_ms and
	 * profile_converge_permille must be 0, and profile_max_ms only caps
	 * how far max_overhead_permille may lengthen the window (default 4 x
	 * profile_ms). */
	uint32_t profile_min_ms;
	uint32_t profile_max_ms;
	uint32_t profile_converge_permille;
	/* Sampling cost limit: the sampler measures what sampling costs the
	 * sampled threads (per-sample cost measured on the calling thread
	 * before the window, plus the sampler's own CPU time, per CPU time of
	 * the sampled threads) and lowers the rate to stay below this many
	 * permille of their CPU time, lengthening the window instead (up to
	 * profile_max_ms). The per-sample cost is measured for perf-ip; for
	 * perf-lbr and sigprof only the sampler thread's own CPU time counts.
	 * Default (0): 20 (2 %) for a converging window,
	 * no limit for a fixed one. 1000: no limit (the rate
	 * stays sample_hz). At most 1000. */
	uint32_t max_overhead_permille;
	/* One BOLT per build (docs/api.md, "Artifacts"): the optimized code
	 * of a build as a file other instances apply without sampling or
	 * BOLT. artifact_out: after a successful optimize stage, write BOLT's
	 * output there, with the build-id, the address its code was built for
	 * (the same offset from the load bias in every instance), the BOLT
	 * version and options, and a SHA-256 digest. artifact_in: the round
	 * applies that file instead of profiling and running BOLT — only a
	 * process that runs its original code (no round's code mapped) — after
	 * checking it is trusted (OCOLOS_EUNTRUSTED: the file or its directory
	 * writable by group/others, or owned by another user than the caller
	 * or root), whole and of this build (OCOLOS_EBADARTIFACT), and that its
	 * address range is free here (OCOLOS_ETAKEN: run a local round).
	 * Artifacts are code: apply only files you would run. Both copied;
	 * not both at once. x86-64 (a BOLT with --custom-allocation-vma). */
	const char *artifact_out;
	const char *artifact_in;
	size_t : 0; /* no trailing padding can hide a field (see the ABI note) */
};
#define ocolos_opts__last_field artifact_in

/* What a round did. Filled on success, and as far as the round got on
 * error. The caller sets sz (OCOLOS_OPTS). */
struct ocolos_stats {
	size_t sz;		      /* sizeof(struct ocolos_stats), set by the caller */
	uint64_t samples;	      /* samples taken in the window */
	uint64_t samples_in_binary;   /* of those, in the binary's own code */
	uint32_t threads_sampled;     /* threads sampled during the window */
	uint32_t functions_moved;     /* functions that now have a C1 copy */
	uint64_t c1_bytes;	      /* bytes of C1 mapped (code + tables) */
	uint64_t c1_addr;	      /* run-time address of the C1 mapping */
	uint32_t call_sites_patched;  /* C0 call rel32 redirected to C1 (in code
					 not moved; docs/guide.md) */
	uint32_t pointer_slots_patched; /* v-table/function-pointer slots */
	uint32_t threads_stopped;     /* threads parked during the pause */
	/* Moved functions whose C0 entry now jumps to C1 (x86-64), so calls
	 * through function pointers held anywhere run C1 too. */
	uint32_t entries_patched;
	/* Entries left alone this time: a thread could resume inside them. */
	uint32_t entries_blocked;
	/* Slots left on C0 by the pointer rule (their function's address is
	 * observable otherwise). */
	uint32_t pointer_slots_kept;
	uint64_t profile_ns;	      /* sampling window */
	uint64_t bolt_ns;	      /* llvm-bolt wall time */
	uint64_t pause_ns;	      /* stop-the-world duration */
	uint64_t round_ns;	      /* whole round */
	/* sampler used: "perf-lbr", "perf-ip", "sigprof"; "external"
	 * (ocolos_add_samples), "imported" (opts.profile_from), "artifact"
	 * (opts.artifact_in: no samples, bolt_ns 0) */
	char sampler[16];
	/* Continuous optimization: the generation of the code this round made
	 * (1 for the first round on a process, then 2, 3, ...), how many
	 * versions of optimized code are mapped after it (the one in use, and
	 * older ones a thread may still run in), and, over the process's life,
	 * how many versions were retired (unmapped) and their bytes. */
	uint32_t generation;
	uint32_t versions_mapped;
	uint32_t versions_retired;
	uint64_t bytes_retired;
	/* The benefit check (0 when it did not run): the median ratio of the
	 * optimized code's work rate to the original's, the pairs of windows
	 * it measured, and their time. */
	double benefit_ratio;
	uint64_t benefit_ns;
	uint32_t benefit_pairs;
	/* Why the sampling window ended (enum ocolos_profile_stop; 0 when
	 * nothing was sampled: imported or external samples), and the
	 * convergence distance when it ended, in ppm of the total variation
	 * between the distribution over blocks of code of the first half of the
	 * samples and of all of them (UINT32_MAX: never computed). */
	uint32_t profile_stop;
	uint32_t profile_distance_ppm;
	/* What sampling cost: the estimated share of the sampled threads' CPU
	 * time spent on sampling during the window (ppm; docs/api.md says how
	 * it is measured), the rate at the end of the window (lowered by
	 * max_overhead_permille, else sample_hz), and the cost of one sample
	 * measured before the window (ns; 0 where it is not measured). */
	uint32_t sample_overhead_ppm;
	uint32_t sample_hz_final;
	uint32_t sample_cost_ns;
	size_t : 0;
};

/* Why a sampling window ended (ocolos_stats.profile_stop). */
enum ocolos_profile_stop {
	OCOLOS_PROFILE_STOP_NONE = 0,	   /* nothing was sampled */
	OCOLOS_PROFILE_STOP_FIXED = 1,	   /* the fixed window (profile_ms) ran out */
	OCOLOS_PROFILE_STOP_CONVERGED = 2, /* the profile converged */
	OCOLOS_PROFILE_STOP_MAX = 3,	   /* profile_max_ms reached first */
	OCOLOS_PROFILE_STOP_CANCELED = 4,  /* ocolos_cancel() */
};

/* What switching between C0 and C1 did (revert / re-apply). */
struct ocolos_switch_stats {
	size_t sz;		 /* sizeof(struct ocolos_switch_stats), set by the caller */
	uint32_t call_sites;	 /* call sites rewritten */
	uint32_t pointer_slots;	 /* slots retargeted (their stubs, see docs/guide.md) */
	uint32_t entries;	 /* function entries rewritten (see ocolos_stats) */
	uint32_t mismatched;	 /* skipped: memory held something unexpected */
	uint32_t threads_stopped;
	uint64_t pause_ns;	 /* stop-the-world duration */
	size_t : 0;
};

/* Options of ocolos_where(). All fields default when zero. */
struct ocolos_where_opts {
	size_t sz;	    /* sizeof(struct ocolos_where_opts); set by OCOLOS_OPTS */
	uint32_t window_ms; /* how long to sample. Default 500. */
	uint32_t sample_hz; /* samples per second per thread. Default 2000. */
	size_t : 0;
};
#define ocolos_where_opts__last_field sample_hz

/* Where the target's threads run, by sample counts. */
struct ocolos_where_result {
	size_t sz;		/* sizeof(struct ocolos_where_result), set by the caller */
	uint64_t samples;	/* all samples (a self context: of the other threads) */
	uint64_t in_original;	/* in the binary's original code (C0) */
	uint64_t in_optimized;	/* in the optimized code in use (C1) */
	uint64_t elsewhere;	/* libraries, kernel-adjacent stubs, JITs */
	size_t : 0;
};

/* ---- contexts ---- */

/*
 * Open a context on the calling process. `opts` may be NULL (defaults).
 * Nothing is done to the process until a round runs. On success *ctx must
 * be closed with ocolos_close(); on failure *ctx is NULL and
 * ocolos_last_error(NULL) says why. Several self contexts may be open; one
 * call at a time runs among them (OCOLOS_EBUSY for the others).
 */
OCOLOS_API int ocolos_open_self(const struct ocolos_opts *opts, struct ocolos_ctx **ctx);

/*
 * Open a context on process `pid`, which needs nothing from libocolos: no
 * linking, no preload (x86-64; elsewhere OCOLOS_ENOTSUP). Attaching
 * happens only while a call needs it (ptrace; the caller must be allowed to
 * trace the target). On success *ctx must be closed with ocolos_close(); on
 * failure *ctx is NULL and ocolos_last_error(NULL) says why.
 */
OCOLOS_API int ocolos_open_pid(pid_t pid, const struct ocolos_opts *opts,
			       struct ocolos_ctx **ctx);

/* Release the context. What was done to the target stays: it keeps running
 * whatever code it runs now (a round's code stays in use). NULL is fine.
 * Must not be called while another thread is in a call on `ctx`. */
OCOLOS_API void ocolos_close(struct ocolos_ctx *ctx);

/*
 * Run one full round on the context's process, synchronously in the
 * calling thread, while the process's threads keep running: the three
 * stages below (the check only with opts.work_fn). `stats` may be NULL. On
 * error the process keeps running the code it ran before (after
 * OCOLOS_ENOGAIN: its original code), and ocolos_last_error() says what to
 * do.
 *
 * A self context's calling thread may itself be inside functions BOLT
 * moves (main, say): C0 stays intact, so returning into it is safe.
 */
OCOLOS_API int ocolos_round(struct ocolos_ctx *ctx, struct ocolos_stats *stats);

/*
 * The stages of a round, callable one by one (e.g. to profile while the
 * target is busy and replace when it is idle). Each fills `stats` (may be
 * NULL) as far as the round got.
 *  profile:  check the binary, reserve C1's range, sample, write the profile
 *  optimize: run BOLT, compute the patches
 *  replace:  map C1, stop the world, redirect, resume
 *  check:    the benefit check (opts.work_fn; ocolos_round runs it when
 *            set): keep the new code, or go back to the original and
 *            return OCOLOS_ENOGAIN. OCOLOS_EINVAL without opts.work_fn or
 *            with no optimized code in use.
 * A failing stage abandons the round; the target keeps the code it ran.
 */
OCOLOS_API int ocolos_stage_profile(struct ocolos_ctx *ctx, struct ocolos_stats *stats);
OCOLOS_API int ocolos_stage_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *stats);
OCOLOS_API int ocolos_stage_replace(struct ocolos_ctx *ctx, struct ocolos_stats *stats);
OCOLOS_API int ocolos_stage_check(struct ocolos_ctx *ctx, struct ocolos_stats *stats);

/*
 * Send execution back to the original code: undo the last round's
 * redirections in one short stop-the-world. The optimized code stays mapped
 * (threads may still be in it, and a re-apply is then cheap). `stats` may
 * be NULL. OCOLOS_EINVAL if no round's code is in use.
 */
OCOLOS_API int ocolos_revert(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats);
/* Redirect to the last round's optimized code again after a revert. */
OCOLOS_API int ocolos_reapply(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats);

/*
 * Unmap the versions of optimized code that are not in use and that no
 * thread can reach any more (docs/guide.md, "Retirement"): after a revert,
 * every version (a re-apply is then refused: there is nothing to re-apply);
 * otherwise all but the one in use. Rounds and switches retire older
 * versions by themselves; this is the explicit call, e.g. after a revert,
 * or to retry a version a thread was still in. `stats` may be NULL; it
 * gets generation, versions_mapped, versions_retired and bytes_retired.
 */
OCOLOS_API int ocolos_retire(struct ocolos_ctx *ctx, struct ocolos_stats *stats);

/*
 * Samples from elsewhere: a fleet's own continuous profiler, perf data
 * collected by another tool. `ips` are user-mode instruction pointers of
 * the context's process, as run-time addresses (taken at any time: in the
 * original code or in a version of optimized code now mapped). They are
 * kept by the context, accumulate over calls, and the next profile stage
 * uses them instead of sampling (stats.sampler "external"), through the
 * same edge inference as the built-in IP samplers; then they are dropped.
 * OCOLOS_EINVAL for n == 0 or ips NULL; OCOLOS_ENOMEM past 2^26 samples.
 */
OCOLOS_API int ocolos_add_samples(struct ocolos_ctx *ctx, const uint64_t *ips, size_t n);

/* One taken branch of a branch stack, by run-time addresses. */
struct ocolos_branch {
	uint64_t from;	/* the branch instruction */
	uint64_t to;	/* where it went */
};

/*
 * Branch stacks from elsewhere (Intel LBR, AArch64 BRBE: a fleet's own
 * profiler, `perf record -b` run by another tool): `nstacks` stacks, stack k
 * being the next stack_len[k] entries of `branches`, newest branch first as
 * the hardware records them; addresses as for ocolos_add_samples. Kept and
 * used the same way, except that the profile stage writes BOLT's branch and
 * fall-through records from them directly, as for the perf-lbr sampler
 * (stats.sampler "external", stats.samples the number of stacks). One
 * profile holds IP samples or branch stacks, not both: OCOLOS_EINVAL.
 * OCOLOS_EINVAL for nstacks == 0, a NULL array, or a stack of 0 or more than
 * 64 entries; OCOLOS_ENOMEM past 2^26 branches.
 */
OCOLOS_API int ocolos_add_branch_stacks(struct ocolos_ctx *ctx, const struct ocolos_branch *branches,
					const uint32_t *stack_len, size_t nstacks);

/*
 * Sample the process's threads (a self context: all but the caller) for a
 * short window and report where they run: the way to see that a round's
 * code is in use, and that a revert took effect. `opts` may be NULL.
 */
OCOLOS_API int ocolos_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
			    struct ocolos_where_result *out);

/*
 * Detailed message of the last failed call on `ctx` (valid until the next
 * call on that context), or, with NULL, of the last failed call of any kind
 * made by the calling thread, including a failed open (thread-local; valid
 * until that thread's next failing call). Empty string if none.
 */
OCOLOS_API const char *ocolos_last_error(const struct ocolos_ctx *ctx);

/*
 * Ask the call running on `ctx` (from another thread, or from a signal
 * handler of the thread running it) to stop: it returns OCOLOS_ECANCELED
 * at its next safe point — before each stage, within the sampling window,
 * while llvm-bolt runs (BOLT is killed and reaped), before the
 * stop-the-world — and the round is abandoned as on any failure: the
 * target keeps the code it ran, the reservation is unmapped and the work
 * directory removed. A switch whose threads are already stopped completes.
 *
 * Made while no call runs on `ctx`, the request stops the next call at
 * its start. Every call's return clears it: a request that came after the
 * running call's last safe point is dropped and that call's result stands
 * (a caller that means "stop for good" keeps its own flag too, as the
 * tools do). Async-signal-safe (it sets an atomic flag and nothing else);
 * NULL is ignored. `ctx` must stay open: do not race it with ocolos_close().
 */
OCOLOS_API void ocolos_cancel(struct ocolos_ctx *ctx);

/* ---- one-call conveniences on the calling process ---- */

/* Open a self context with `opts`, run a round, close it. */
OCOLOS_API int ocolos_optimize_self(const struct ocolos_opts *opts, struct ocolos_stats *stats);
/* ocolos_revert / ocolos_reapply / ocolos_where on a temporary self
 * context with default options. */
OCOLOS_API int ocolos_revert_self(struct ocolos_switch_stats *stats);
OCOLOS_API int ocolos_reapply_self(struct ocolos_switch_stats *stats);
OCOLOS_API int ocolos_where_self(const struct ocolos_where_opts *opts,
				 struct ocolos_where_result *out);

#ifdef __cplusplus
}
#endif
#endif /* OCOLOS_OCOLOS_H */

/*
 * libocolos — online code layout optimization for running native programs.
 *
 * This is the only header a user includes. Everything here is stable ABI:
 * options structs start with `size_t sz` and are filled with OCOLOS_OPTS(),
 * so fields can be appended without breaking programs built against an
 * older header. Every call returns 0 or a negative OCOLOS_E* code;
 * ocolos_strerror() names the code and ocolos_last_error() says what
 * happened and what to do about it.
 *
 * One optimization round: sample the process for a window, have LLVM BOLT
 * re-lay out the hot code of the program's own binary for an address range
 * reserved in the process, map that code (C1) beside the original (C0),
 * stop the world briefly, redirect direct calls, read-only function-pointer
 * slots and (x86-64, where provably safe) the entries of moved functions to
 * C1, resume. Nothing else of C0 changes, so return addresses and function
 * pointers into C0 stay valid. See docs/guide.md.
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
#define OCOLOS_VERSION_MINOR 1
#define OCOLOS_VERSION_PATCH 0

#define OCOLOS_API __attribute__((visibility("default")))

/* A target process and what libocolos did to it (opaque). */
struct ocolos_ctx;

/* Error codes: every call returns 0 or one of these (negative). */
enum ocolos_error {
	OCOLOS_OK = 0,
	OCOLOS_EINVAL = -1,	/* bad argument or unknown non-zero opts bytes */
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
	OCOLOS_EBUSY = -14,	/* another round is running on this target */
	OCOLOS_ESTOP = -15,	/* could not stop every thread of the target */
	OCOLOS_EPATCH = -16,	/* code or data to patch was not what we expected */
	OCOLOS_ENOTHOT = -17,	/* BOLT moved no function: nothing to redirect */
	OCOLOS_EATTACH = -18,	/* cannot ptrace the target process */
	OCOLOS_ENOPROC = -19,	/* the target process is gone or exiting */
	OCOLOS_ESTALE = -20,	/* the binary on disk is not the one running */
};

/* Short fixed text for an error code ("OCOLOS_ENORELOCS: ..."). Never NULL. */
OCOLOS_API const char *ocolos_strerror(int err);

/* Log levels for the log callback. */
enum ocolos_log_level {
	OCOLOS_LOG_ERROR = 0,
	OCOLOS_LOG_WARN = 1,
	OCOLOS_LOG_INFO = 2,
	OCOLOS_LOG_DEBUG = 3,
};

/* The library never prints; it calls this if set. `msg` has no newline and is
 * valid only for the duration of the call. Called from the thread running the
 * round, never while the world is stopped. */
typedef void (*ocolos_log_fn)(enum ocolos_log_level level, const char *msg,
			      void *user);

/* Zero-fill an options struct, set its sz, and apply designated initializers. */
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
	 * tick per thread. In-process only. */
	OCOLOS_SAMPLER_SIGPROF = 3,
};

/* How IP samples (perf-ip, sigprof) become the edge counts BOLT lays out
 * blocks with. Branch stacks (perf-lbr) carry edges and ignore this. */
enum ocolos_edges {
	OCOLOS_EDGES_AUTO = 0,	 /* OCOLOS_EDGES_HYBRID */
	/* The library's CFGs, the AOBO hybrid estimator and inference of
	 * blocks that must have run, handed to BOLT as branch records. */
	OCOLOS_EDGES_HYBRID = 1,
	/* Bare samples; BOLT infers edges itself (perf2bolt's --ba / "-nl"). */
	OCOLOS_EDGES_BOLT = 2,
};

/* Options of one in-process round. All fields default when zero/NULL. */
struct ocolos_self_opts {
	size_t sz; /* sizeof(struct ocolos_self_opts); set by OCOLOS_OPTS */
	/* Length of the sampling window, ms. Default 4000 (about 80k samples
	 * with 2 busy threads; the layout gain grows with the samples, see
	 * docs/benchmarks.md). */
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
	/* Real-time signal used to park threads. Default SIGRTMIN + 7. */
	int stop_signal;
	/* Binary to optimize. Default: the file behind /proc/self/exe. */
	const char *binary_path;
	/* Parent of the private 0700 work directory. Default $TMPDIR or /tmp. */
	const char *tmp_dir;
	/* Keep the work directory (profile, BOLT output, BOLT log). Default 0. */
	int keep_work_dir;
	/* Log callback and its user pointer. Default: no logging. */
	ocolos_log_fn log_fn;
	void *log_user;
	/* Extra llvm-bolt arguments appended after the library's (NULL-ended
	 * array, or NULL). For experiments; the library's placement options
	 * must not be overridden. */
	const char *const *bolt_extra_args;
	/* Sampler (enum ocolos_sampler). Default OCOLOS_SAMPLER_AUTO. */
	int sampler;
	/* Edge inference for IP samples (enum ocolos_edges). Default AUTO. */
	int edges;
	/* Also redirect function pointers stored in writable data (.data) by
	 * the linker, like a table of handlers, to C1. Default 0: they keep
	 * pointing at C0, whose entry jumps to C1, which costs a jump and a
	 * cache line per call. Set it only if the program never compares
	 * such a pointer with the function's address (`&func` still yields
	 * C0): after the redirect the two differ. A slot the program has
	 * changed is left alone. */
	int redirect_writable_slots;
};
#define ocolos_self_opts__last_field redirect_writable_slots

/* What a round did. Filled on success, and as far as the round got on error. */
struct ocolos_stats {
	uint64_t samples;	      /* samples taken in the window */
	uint64_t samples_in_binary;   /* of those, in the binary's own code */
	uint32_t threads_sampled;     /* threads sampled during the window */
	uint32_t functions_moved;     /* functions that now have a C1 copy */
	uint64_t c1_bytes;	      /* bytes of C1 mapped (code + tables) */
	uint64_t c1_addr;	      /* run-time address of the C1 mapping */
	uint32_t call_sites_patched;  /* C0 call rel32 redirected to C1 */
	uint32_t pointer_slots_patched; /* v-table/function-pointer slots */
	uint32_t threads_stopped;     /* threads parked during the pause */
	uint64_t profile_ns;	      /* sampling window */
	uint64_t bolt_ns;	      /* llvm-bolt wall time */
	uint64_t pause_ns;	      /* stop-the-world duration */
	uint64_t round_ns;	      /* whole round */
	char sampler[16];	      /* sampler used: "perf-lbr", "perf-ip", "sigprof" */
	/* Moved functions whose C0 entry now jumps to C1 (x86-64), so calls
	 * through function pointers held anywhere run C1 too. */
	uint32_t entries_patched;
	/* Entries left alone this time: a thread could resume inside them. */
	uint32_t entries_blocked;
};

/*
 * Run one full round on the calling process, synchronously in the calling
 * thread, while the other threads keep running. `opts` may be NULL (all
 * defaults); `stats` may be NULL.
 *
 * Returns 0, or a negative OCOLOS_E* code; then the program still runs its
 * original code, and ocolos_last_error(NULL) says what went wrong and what
 * to do. A second concurrent call gets OCOLOS_EBUSY.
 *
 * The calling thread may itself be inside functions BOLT moves (main, say):
 * C0 stays intact, so returning into it is safe.
 */
OCOLOS_API int ocolos_optimize_self(const struct ocolos_self_opts *opts,
				    struct ocolos_stats *stats);

/* What switching between C0 and C1 did (revert / re-apply). */
struct ocolos_switch_stats {
	uint32_t call_sites;	 /* call sites rewritten */
	uint32_t pointer_slots;	 /* pointer slots rewritten */
	uint32_t mismatched;	 /* skipped: memory held something unexpected */
	uint32_t threads_stopped;
	uint64_t pause_ns;	 /* stop-the-world duration */
	uint32_t entries;	 /* function entries rewritten (see ocolos_stats) */
};

/*
 * Send execution back to the original code: undo the call-site and
 * pointer-slot redirections of the last round in one short stop-the-world.
 * C1 stays mapped (threads may still be in it, and a re-apply is then
 * cheap). `stats` may be NULL. OCOLOS_EINVAL if no round's code is in use.
 * After a revert, ocolos_optimize_self() may run a new round.
 */
OCOLOS_API int ocolos_revert_self(struct ocolos_switch_stats *stats);

/* Redirect to the last round's C1 again after ocolos_revert_self(). */
OCOLOS_API int ocolos_reapply_self(struct ocolos_switch_stats *stats);

/* Options of ocolos_where_self(). All fields default when zero. */
struct ocolos_where_opts {
	size_t sz;	    /* sizeof(struct ocolos_where_opts); set by OCOLOS_OPTS */
	uint32_t window_ms; /* how long to sample. Default 500. */
	uint32_t sample_hz; /* samples per second per thread. Default 2000. */
};
#define ocolos_where_opts__last_field sample_hz

/* Where the process's threads run, by sample counts. */
struct ocolos_where_result {
	uint64_t samples;	/* all samples of the other threads */
	uint64_t in_original;	/* in the binary's original code (C0) */
	uint64_t in_optimized;	/* in the last round's optimized code (C1) */
	uint64_t elsewhere;	/* libraries, kernel-adjacent stubs, JITs */
};

/*
 * Sample every thread but the caller for a short window and report where
 * they run: the way to see that a round's code is in use (and that a
 * revert took effect). `opts` may be NULL.
 */
OCOLOS_API int ocolos_where_self(const struct ocolos_where_opts *opts,
				 struct ocolos_where_result *out);

/* ---- optimizing another process (supervisors, fleet agents) ---- */

/* Options of a context on another process. All fields default when zero. */
struct ocolos_pid_opts {
	size_t sz; /* sizeof(struct ocolos_pid_opts); set by OCOLOS_OPTS */
	uint32_t profile_ms;	  /* sampling window, ms. Default 4000. */
	uint32_t sample_hz;	  /* samples per second per thread. Default 10000. */
	const char *bolt_path;	  /* as in ocolos_self_opts */
	uint32_t bolt_timeout_ms; /* default 300000 */
	/* Give up stopping the target's threads after this (OCOLOS_ESTOP).
	 * Default 2000. */
	uint32_t stop_timeout_ms;
	/* Limit of a call injected into the target (registering C1's unwind
	 * tables with its libgcc); OCOLOS_ETIMEDOUT past it. Default 2000. */
	uint32_t call_timeout_ms;
	/* The target's binary. Default: the file behind /proc/PID/exe. */
	const char *binary_path;
	const char *tmp_dir;	  /* as in ocolos_self_opts */
	int keep_work_dir;
	ocolos_log_fn log_fn;
	void *log_user;
	const char *const *bolt_extra_args;
	/* Sampler (enum ocolos_sampler; sigprof is in-process only). Default
	 * OCOLOS_SAMPLER_AUTO. */
	int sampler;
	/* Edge inference for IP samples (enum ocolos_edges). Default AUTO. */
	int edges;
	int redirect_writable_slots; /* as in ocolos_self_opts */
};
#define ocolos_pid_opts__last_field redirect_writable_slots

/*
 * Open a context on process `pid`, which needs nothing from libocolos: no
 * linking, no preload (x86-64; elsewhere the rounds fail with
 * OCOLOS_ENOTSUP). Attaching happens only while a stage needs it
 * (ptrace; the caller must be allowed to trace the target). On success
 * *ctx must be closed with ocolos_close(). On failure *ctx is NULL and the
 * reason went to opts->log_fn.
 */
OCOLOS_API int ocolos_open_pid(pid_t pid, const struct ocolos_pid_opts *opts,
			       struct ocolos_ctx **ctx);

/*
 * The stages of a round, callable one by one (e.g. to profile while the
 * target is busy and replace when it is idle), or all at once with
 * ocolos_round(). Each fills `stats` (may be NULL) as far as the round got.
 *  profile:  check the binary, reserve C1's range, sample, write the profile
 *  optimize: run BOLT, compute the patches
 *  replace:  map C1, stop the world, redirect, resume
 * A failing stage abandons the round; the target keeps its original code.
 */
OCOLOS_API int ocolos_profile(struct ocolos_ctx *ctx, struct ocolos_stats *stats);
OCOLOS_API int ocolos_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *stats);
OCOLOS_API int ocolos_replace(struct ocolos_ctx *ctx, struct ocolos_stats *stats);
OCOLOS_API int ocolos_round(struct ocolos_ctx *ctx, struct ocolos_stats *stats);

/* Revert / re-apply the last round in the target (see ocolos_revert_self). */
OCOLOS_API int ocolos_revert(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats);
OCOLOS_API int ocolos_reapply(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats);

/* Where the target's threads run (see ocolos_where_self). */
OCOLOS_API int ocolos_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
			    struct ocolos_where_result *out);

/* Release the context. What was injected stays in the target, which keeps
 * running whatever code it runs now. NULL is fine. */
OCOLOS_API void ocolos_close(struct ocolos_ctx *ctx);

/* Detailed message of the last failed call on `ctx`, or on the calling
 * process's in-process context (pass NULL). Empty string if none. The pointer is
 * valid until the next call into the library on that context. */
OCOLOS_API const char *ocolos_last_error(const struct ocolos_ctx *ctx);

/* Library version string, "MAJOR.MINOR.PATCH". */
OCOLOS_API const char *ocolos_version(void);

#ifdef __cplusplus
}
#endif
#endif /* OCOLOS_OCOLOS_H */

/*
 * Sampler interface. A backend samples every thread of one process (threads
 * created during the window included) for a window and returns raw
 * instruction-pointer samples — and, for branch-stack backends, the taken
 * branches of each sample — as run-time addresses. Mapping addresses to the
 * binary (C0 function + offset) is the profile writer's job (infer/), not
 * the sampler's.
 *
 * Backends (one file each): perf_ip.c, perf_lbr.c, sigprof.c.
 */
#ifndef OCOLOS_SAMPLE_H
#define OCOLOS_SAMPLE_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"

enum sample_backend_kind {
	SAMPLE_PERF_IP = 0,  /* perf_event_open IP samples (cycles or cpu-clock) */
	SAMPLE_PERF_LBR = 1, /* perf_event_open branch stacks (LBR, BRS, BRBE) */
	SAMPLE_SIGPROF = 2,  /* in-process CPU-time timers; PC from the signal context */
};

/* One taken branch of a branch stack, run-time addresses. */
struct sample_branch {
	uint64_t from, to;
};

struct sample_config {
	enum sample_backend_kind backend;
	pid_t pid;	      /* process to sample (getpid() for self) */
	uint32_t hz;	      /* samples per second per thread */
	uint32_t window_ms;   /* how long to sample */
	pid_t exclude_tid;    /* thread not to sample (the optimizer's own), or 0 */
	/* Non-NULL: the window ends early once *cancel is non-zero
	 * (ocolos_cancel), and sample_collect returns OCOLOS_ECANCELED. */
	const atomic_int *cancel;
};

/* Samples of one window. Owned by the caller; free with sample_set_free(). */
struct sample_set {
	uint64_t *ips;	     /* user-mode instruction pointers, run-time addresses */
	size_t n;	     /* number of entries in ips */
	size_t cap;
	uint64_t lost;	     /* samples the kernel reported lost */
	uint32_t threads;    /* threads that had a sampler attached */
	const char *event;   /* event that was sampled ("cycles", "cpu-clock") */
	/* Branch stacks (perf-lbr only). Stack k is
	 * branches[stack_start[k] .. (k+1 < nstacks ? stack_start[k+1] : nbranches)),
	 * newest branch first, as the hardware records them. */
	struct sample_branch *branches;
	size_t nbranches, cap_branches;
	size_t *stack_start;
	size_t nstacks, cap_stacks;
};

/* Sample `cfg->pid` for `cfg->window_ms`, blocking the calling thread, and
 * append the samples to `out` (which may already hold samples). Returns 0 or
 * OCOLOS_EPERF / OCOLOS_ENOTSUP (backend unusable here) / OCOLOS_EBUSY /
 * OCOLOS_ENOMEM / OCOLOS_EINVAL / OCOLOS_ECANCELED (cfg->cancel was set
 * during the window; what was sampled is in `out`) with a message in `err`. */
int sample_collect(const struct sample_config *cfg, struct sample_set *out,
		   struct core_err *err);

/* The test of every backend's waiting loop: is the window that ends at
 * `end_ns` (core_now_ns() clock) over, or was the call canceled? One place,
 * so that every backend stops early the same way. */
int sample_window_over(const struct sample_config *cfg, uint64_t end_ns);

/* Call attach(user, tid) for every thread of `pid` but `exclude` for which
 * known(user, tid) is 0 (threads that appeared since the last call, when
 * `known` remembers attached ones). Returns how many attach calls failed,
 * or -1 if the thread list cannot be read (errno set). */
int sample_each_new_thread(pid_t pid, pid_t exclude, int (*known)(void *, pid_t),
			   int (*attach)(void *, pid_t), void *user);

/* Append one sample; returns 0 or OCOLOS_ENOMEM. */
int sample_set_push(struct sample_set *s, uint64_t ip);
/* Room for `stacks` more branch stacks holding `branches` more branches
 * (so that what follows cannot fail half-way). 0 or OCOLOS_ENOMEM. */
int sample_set_reserve(struct sample_set *s, size_t stacks, size_t branches);

void sample_set_free(struct sample_set *s);

/* ---- the window: how long, at what rate (window.c) ---- */

/* Why a window ended (the values of enum ocolos_profile_stop). */
enum sample_stop {
	SAMPLE_STOP_NONE = 0,
	SAMPLE_STOP_FIXED = 1,	   /* the fixed window's samples are in */
	SAMPLE_STOP_CONVERGED = 2, /* the distance fell below the threshold */
	SAMPLE_STOP_MAX = 3,	   /* max_ms (or max_rate_ms) passed first */
	SAMPLE_STOP_CANCELED = 4,  /* cfg->cancel */
};

/* How long to sample and how much it may cost. */
struct sample_policy {
	/* Non-zero: a fixed window of fixed_ms at cfg->hz. A rate lowered for
	 * the cost limit lengthens it to as many rate-milliseconds
	 * (sum of segment ms x rate / cfg->hz), up to max_ms. 0: converge. */
	uint32_t fixed_ms;
	/* Converge: stop once min_ms has passed and the distance is below
	 * converge_ppm; at max_ms at the latest (both modes). */
	uint32_t min_ms, max_ms, converge_ppm;
	/* Converge, non-zero: also stop after this many rate-milliseconds
	 * (as a fixed window counts them), so that a rate lowered for the
	 * cost limit buys the window the time to take the samples the asked
	 * rate would have (max_ms then caps the wall time). */
	uint32_t max_rate_ms;
	/* Sampling may cost the sampled threads at most this share of their
	 * CPU time (ppm); 0: no limit. */
	uint32_t max_overhead_ppm;
	/* The key of a sample for the distance (round.c: its 256-byte block
	 * of the binary's code, through BAT for optimized code). NULL:
	 * 256-byte blocks of the address. */
	uint64_t (*key)(void *user, uint64_t ip);
	void *key_user;
	/* The cost of one sample, ns, if known (e.g. a benchmark that
	 * measured it once); 0: measured before the window (sample_cost_probe). */
	uint32_t cost_ns;
};

/* What the window was. */
struct sample_window_result {
	enum sample_stop stop;
	uint32_t distance_ppm;	/* the last distance computed, UINT32_MAX: none */
	uint32_t hz_final;	/* the rate of the last segment */
	uint32_t overhead_ppm;	/* estimated cost, of the sampled threads' CPU time */
	uint32_t cost_ns;	/* per-sample cost from sample_cost_probe, 0: none */
	uint32_t segments;	/* sampling segments the window was made of */
	uint64_t elapsed_ns;	/* the window, from its first segment to its last */
	uint64_t sampled_cpu_ns; /* CPU time of the sampled threads in it */
	uint64_t sampler_cpu_ns; /* CPU time of the calling thread in it */
	uint32_t hot_keys;	/* keys carrying 90 % of the samples (the hot set) */
};

/* Sample as sample_collect does (cfg->hz the asked, highest rate;
 * cfg->window_ms ignored) for as long as `pol` says, in segments of
 * SAMPLE_SEGMENT_MS (longer at a lowered rate) when the window may end
 * early or the rate may change (one segment for a fixed window without a
 * cost limit). Fills
 * `res` also on error. Returns what sample_collect returns
 * (OCOLOS_ECANCELED: res->stop is SAMPLE_STOP_CANCELED). */
#define SAMPLE_SEGMENT_MS 250
int sample_collect_window(const struct sample_config *cfg, const struct sample_policy *pol,
			  struct sample_set *out, struct sample_window_result *res,
			  struct core_err *err);

/* Total variation distance (ppm, 0..1000000) between the distribution of
 * keys[0 .. n/2) and of keys[0 .. n): how much the profile of all the
 * samples differs from the profile of the first half of them. n < 2: 1e6. */
uint32_t sample_distance_ppm(const uint64_t *keys, size_t n);

/* How many distinct keys of keys[0 .. n) carry `permille` of them (the
 * most frequent first): the size of the hot set. 0 for n == 0. */
uint32_t sample_hot_keys(const uint64_t *keys, size_t n, uint32_t permille);

/* The cost of one sample of `kind` on this machine: the calling thread
 * runs the same work unsampled and sampled at a high rate (ABBA, ~20 ms
 * each) and the extra CPU time it took, per sample delivered, is the
 * answer (kernel interrupt and signal delivery included: they are charged
 * to the interrupted thread). ns; 0 if it cannot be measured (then the
 * cost of the window is only the calling thread's own CPU time). */
uint32_t sample_cost_probe(enum sample_backend_kind kind);
/* The measurement itself, for a backend that can sample the calling
 * thread: set(user, 1 / 0) starts / stops sampling it, count(user) says
 * how many samples were taken since the last call. 0 if unmeasurable. */
uint32_t sample_cost_abba(int (*set)(void *, int), uint64_t (*count)(void *), void *user);
uint32_t sample_perf_ip_cost_probe(void);

/* Has process `pid` exited (no thread of it left to signal)? */
int sample_process_gone(pid_t pid);

/* perf_event_open(pid) failed with ESRCH. It names the thread the event
 * was opened on (tid == pid): the process is gone only if no thread of it
 * answers either (OCOLOS_ENOPROC); a process whose main thread exited lives
 * on in its others, which the perf samplers cannot follow (OCOLOS_ENOTSUP,
 * naming sigprof). The error, set in `err`. */
int sample_perf_esrch(pid_t pid, struct core_err *err);

/* Can `kind` sample process `pid` here? 0, or OCOLOS_ENOTSUP / OCOLOS_EPERF
 * with the reason in `err` (e.g. "this CPU has no branch-stack sampling").
 * Cheap: opens and closes an event, samples nothing. */
int sample_probe(enum sample_backend_kind kind, pid_t pid, struct core_err *err);

/* Backend entry points (one file each). */
int sample_perf_ip_collect(const struct sample_config *cfg,
			   struct sample_set *out, struct core_err *err);
int sample_perf_ip_probe(pid_t pid, struct core_err *err);
int sample_perf_lbr_collect(const struct sample_config *cfg,
			    struct sample_set *out, struct core_err *err);
int sample_perf_lbr_probe(pid_t pid, struct core_err *err);
int sample_sigprof_collect(const struct sample_config *cfg,
			   struct sample_set *out, struct core_err *err);
int sample_sigprof_probe(pid_t pid, struct core_err *err);

#endif

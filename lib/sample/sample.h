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

void sample_set_free(struct sample_set *s);

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

/*
 * Sampler interface. A backend samples every thread of one process (threads
 * created during the window included) for a window and returns raw
 * instruction-pointer samples as run-time addresses. Mapping addresses to
 * the binary (C0 function + offset) is the profile writer's job, not the
 * sampler's.
 */
#ifndef OCOLOS_SAMPLE_H
#define OCOLOS_SAMPLE_H

#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"

enum sample_backend_kind {
	SAMPLE_PERF_IP = 0, /* perf_event_open IP samples (cycles or cpu-clock) */
};

struct sample_config {
	enum sample_backend_kind backend;
	pid_t pid;	      /* process to sample (getpid() for self) */
	uint32_t hz;	      /* samples per second per thread */
	uint32_t window_ms;   /* how long to sample */
	pid_t exclude_tid;    /* thread not to sample (the optimizer's own), or 0 */
};

/* Samples of one window. Owned by the caller; free with sample_set_free(). */
struct sample_set {
	uint64_t *ips;	     /* user-mode instruction pointers, run-time addresses */
	size_t n;	     /* number of entries in ips */
	size_t cap;
	uint64_t lost;	     /* samples the kernel reported lost */
	uint32_t threads;    /* threads that had a sampler attached */
	const char *event;   /* event that was sampled ("cycles", "cpu-clock") */
};

/* Sample `cfg->pid` for `cfg->window_ms`, blocking the calling thread, and
 * append the samples to `out` (which may already hold samples). Returns 0 or
 * OCOLOS_EPERF / OCOLOS_ENOMEM / OCOLOS_EINVAL with a message in `err`. */
int sample_collect(const struct sample_config *cfg, struct sample_set *out,
		   struct core_err *err);

/* Append one sample; returns 0 or OCOLOS_ENOMEM. */
int sample_set_push(struct sample_set *s, uint64_t ip);

void sample_set_free(struct sample_set *s);

/* Backend entry points (one file each). */
int sample_perf_ip_collect(const struct sample_config *cfg,
			   struct sample_set *out, struct core_err *err);

#endif

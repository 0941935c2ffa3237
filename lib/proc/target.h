/*
 * A target process, as the round sees it: the few operations that differ
 * between optimizing the calling process (target_self.c: plain system
 * calls, signals to stop threads) and another process (target_ptrace.c:
 * system calls and calls injected with ptrace). Everything else — what to
 * reserve, map and patch — is computed once, in core/ and inject/, from
 * the binary model and BOLT's output.
 */
#ifndef OCOLOS_INJECT_TARGET_H
#define OCOLOS_INJECT_TARGET_H

#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"
#include "core/log.h"
#include "inject/inject.h"

struct proc_target;

struct proc_target_ops {
	const char *name;
	/* Map [addr, addr + size) PROT_NONE, failing (EEXIST-like, returned
	 * as 1) rather than replacing an existing mapping. 0, 1, or OCOLOS_E*. */
	int (*reserve_at)(struct proc_target *t, uint64_t addr, uint64_t size, struct core_err *err);
	void (*unmap)(struct proc_target *t, uint64_t addr, uint64_t size);
	/* Map C1's segments into the reservation; never writable and
	 * executable at once. */
	int (*map_c1)(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
		      struct inject_reservation *r, uint64_t *mapped, struct core_err *err);
	/* Register C1's .eh_frame (run-time address) with the target's
	 * unwinder, for the code in [lo, hi). May place a table in the
	 * reservation at r->addr + *used (advancing *used). *handle is for
	 * unregister. */
	int (*register_unwind)(struct proc_target *t, uint64_t eh_frame, uint64_t size,
			       uint64_t lo, uint64_t hi, struct inject_reservation *r,
			       uint64_t *used, uint64_t *handle, struct core_err *err);
	void (*unregister_unwind)(struct proc_target *t, uint64_t handle);
	/* Stop every thread, write `plan` forward or backward, resume. */
	int (*switch_plan)(struct proc_target *t, struct inject_plan *plan, int forward,
			   uint32_t *threads, uint64_t *pause_ns, struct inject_apply_result *res,
			   struct core_err *err);
};

struct proc_target {
	const struct proc_target_ops *ops;
	pid_t pid;
	int memfd;		 /* /proc/PID/mem, read-write */
	int stop_signal;	 /* self: the parking signal */
	uint32_t stop_timeout_ms;
	uint32_t call_timeout_ms; /* ptrace: limit of an injected call */
	const struct core_log *log;
	uint64_t stub;		 /* ptrace: the injection stub in the target */
	/* ptrace: C0 ranges of moved functions; if set, the next switch counts
	 * the stack frames in them (stack_threads, stack_frames, stack_ns). */
	const uint64_t (*moved)[2];
	size_t nmoved;
	uint32_t stack_threads, stack_frames;
	uint64_t stack_ns;
};

/* Open a target for `pid` (getpid(): in-process). Fills *t. */
int proc_target_open(struct proc_target *t, pid_t pid, const struct core_log *log, struct core_err *err);
void proc_target_close(struct proc_target *t);

/* Entry patches (inject/entry.c) at a forward switch, for both targets:
 * prepare before the stop (allocates), check while stopped, release after. */
struct stack_snapshot;
struct inject_thread_state;
int proc_target_prepare_entries(struct proc_target *t, const struct inject_plan *plan, int forward,
			   struct stack_snapshot **ss, uint64_t **scratch, struct core_err *err);
void proc_target_check_entries(struct inject_plan *plan, const struct inject_thread_state *ts, size_t n,
			  struct stack_snapshot *ss, uint64_t *scratch);
void proc_target_release_entries(struct stack_snapshot *ss, uint64_t *scratch);

extern const struct proc_target_ops proc_target_self_ops;
extern const struct proc_target_ops proc_target_ptrace_ops;

#endif

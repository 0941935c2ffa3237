/* ptrace injector primitives (see ptrace.c for the protocol). */
#ifndef OCOLOS_PROC_PTRACE_H
#define OCOLOS_PROC_PTRACE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"
#include "core/procmaps.h"
#include "proc/target.h"

struct proc_ptrace_thread {
	pid_t tid;
	int seized, stopped, gone;
	int pending_sig;	/* signal that arrived while we held the thread */
	/* The PTRACE_EVENT_* stop it is held at (0: none). At such a stop
	 * (e.g. inside clone3, the child already made) the system call's
	 * result is written only when the thread goes on: its registers are
	 * not ones to resume with as they are (ptrace_stub.c). */
	int event;
};

struct proc_ptrace {
	pid_t pid;
	struct proc_ptrace_thread *t;
	size_t n, cap;
	/* Set by a call past its time limit, left to finish (run_stub):
	 * proc_target.call_left takes it over. */
	struct proc_call_left left;
};

/* Seize and stop every thread of `pid` (all = 1), or one (all = 0).
 * OCOLOS_EATTACH (not permitted), OCOLOS_ENOPROC (gone), OCOLOS_ESTOP. On
 * error nothing stays attached. */
int proc_ptrace_stop(pid_t pid, int all, uint32_t timeout_ms,
		       struct proc_ptrace **out, struct core_err *err);
/* Detach every thread (delivering signals that arrived meanwhile). */
void proc_ptrace_resume(struct proc_ptrace *pt, uint64_t *released_ns);

/* Run system call `nr`, or call fn(arg), in a stopped thread, through the
 * stub at `stub` (proc_ptrace_place_stub): the thread is released at once
 * and completes and resumes by itself even if this process dies meanwhile.
 * OCOLOS_ETIMEDOUT if it does not return in time: a system call is then
 * abandoned (the thread put back where it was); a function call is left to
 * finish by itself, its result unknown (a library function cut short would
 * keep the locks it holds). */
int proc_ptrace_syscall(struct proc_ptrace *pt, int memfd, uint64_t stub, long nr,
			  const uint64_t args[6], int64_t *ret, struct core_err *err);
int proc_ptrace_call(struct proc_ptrace *pt, int memfd, uint64_t stub, uint64_t fn,
		       const uint64_t args[6], uint32_t timeout_ms, uint64_t *ret,
		       struct core_err *err);
/* PC and SP of every stopped thread (at most `max`); returns how many. */
size_t proc_ptrace_states(const struct proc_ptrace *pt, struct proc_thread_state *out,
			    size_t max);

/* Load libunwind-ptrace now (dlopen; slow the first time): do it before a
 * stop. 0, or -1 if it is not installed. */
int proc_stacks_load(void);
/* Walk the stack of every stopped thread of `pt` (libunwind-ptrace) and
 * count the threads with, and the frames at, an IP inside one of the
 * `nranges` [lo, hi) ranges. -1 if libunwind is not available. */
int proc_stacks_count(const struct proc_ptrace *pt, const uint64_t (*ranges)[2],
			size_t nranges, uint32_t *threads_in, uint32_t *frames_in);

/* Hold one thread `tid` of `pid` (seize + interrupt) until `deadline`
 * (core_now_ns); NULL if that fails. Release with proc_ptrace_resume. */
struct proc_ptrace *proc_ptrace_hold_one(pid_t pid, pid_t tid, uint64_t deadline);

/* The injection stub's machine code (ptrace_x86.c, ptrace_a64.c): its
 * length, and in *code (may be NULL) the bytes. */
size_t proc_ptrace_stub_bytes(const uint8_t **code);
/* The stub's instruction-cache maintenance routine, for the stub placed at
 * `stub`: called with (lo, hi) it makes [lo, hi) visible to instruction
 * fetch, with (list, -n) each of the n addresses in the words at `list`.
 * 0 where the architecture needs none (x86-64) or there is no stub. */
uint64_t proc_ptrace_icache_routine(uint64_t stub);

/* Write the injection stub into the target (or find it there); its
 * address, or 0 if no executable mapping has room for it (stub_place.c). */
uint64_t proc_ptrace_place_stub(pid_t pid, const struct procmaps *m, int memfd);

#endif

/*
 * Process-control primitives the targets are built from: the threads of a
 * process, its memory through /proc/PID/mem, and the in-process
 * stop-the-world. (ptrace's are in ptrace.h.)
 */
#ifndef OCOLOS_PROC_PROC_H
#define OCOLOS_PROC_PROC_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"
#include "proc/target.h"

struct procmaps;

/* ---- threads (threads.c) ---- */

/* Call fn(user, tid) for every thread listed in /proc/PID/task, until fn
 * returns non-zero (which is returned). -1 (errno set) if the list cannot
 * be read. Allocates nothing (getdents64 into a stack buffer), so it may
 * run while other threads of this process are parked holding the
 * allocator's locks. */
int proc_threads_each(pid_t pid, int (*fn)(void *user, pid_t tid), void *user);

/* ---- memory through /proc/PID/mem (mem.c) ---- */

/* /proc/PID/mem writes go through the kernel's FOLL_FORCE path: they change
 * read-only text and RELRO pages (copy-on-write, as a debugger's breakpoint
 * does) without the pages ever becoming writable in the process. */
int proc_mem_open(pid_t pid, int *fd, struct core_err *err);
int proc_mem_write(int fd, uint64_t addr, const void *buf, size_t len);
int proc_mem_read(int fd, uint64_t addr, void *buf, size_t len);
/* Before a stop: make the copy-on-write copies of the pages of the spans
 * now, by writing their bytes back unchanged (one per page), so the stop
 * does not copy pages. PROC_SPAN_DATA is skipped: the program may write it
 * at any moment, and writing back a value read a moment earlier would
 * undo its write. */
void proc_mem_prefault(int fd, const struct proc_span *spans, size_t n);

/* ---- where an injected library call may run (safe_point.c) ---- */

/* glibc's AArch64 pointer guard in `pid` (pointer_guard.c): the value of
 * the dynamic linker's __pointer_chk_guard, read through `t`. 0, or -1
 * (*guard 0) when it is not found (a static program, another libc). */
struct proc_target;
int proc_a64_pointer_guard(struct proc_target *t, pid_t pid, uint64_t *guard);

/* Call fn(user, name, run-time start, size, STT_ type) for each defined
 * .dynsym symbol of each shared library mapped in `pid` whose file name
 * (without directory) want_lib accepts; stops at fn's first non-zero
 * return, which it returns (OCOLOS_ENOPROC: no maps). */
int proc_lib_symbols(pid_t pid, int (*want_lib)(const char *base, void *user),
		     int (*fn)(void *user, const char *name, uint64_t start, uint64_t size, int type),
		     void *user);

/* ---- what retirement needs of a target's code (retire_code.c) ---- */

/* The code of process `pid`'s unwinder, as ranges [lo, hi): the
 * executable mappings of libgcc_s (or LLVM's libunwind) and of the dynamic
 * linker (lazy binding of __cxa_throw@plt), and the functions of the C++
 * runtime and glibc for which is_entry(name) is true (those a throw site
 * calls: __cxa_throw, std::__throw_*, pthread_exit...) or that run a throw
 * (the personality routine, glibc's cancellation unwinding); *out is
 * malloc'ed. NULL, 0 when no unwinder library is loaded: an unwinder
 * linked into the program is not known, so every thread counts as
 * unwinding. 0 or OCOLOS_ENOMEM. */
int proc_unwinder_ranges(pid_t pid, int (*is_entry)(const char *name), uint64_t (**out)[2],
			 size_t *nout);

/* x86-64: the addresses of process `pid`'s sigreturn trampolines (glibc's
 * __restore_rt, found by its bytes in libc's code, read through `memfd`):
 * the return address of every signal handler, at the bottom of its signal
 * frame. *out is malloc'ed (NULL, 0 elsewhere or when none is found). 0 or
 * OCOLOS_ENOMEM. */
int proc_sigreturn_trampolines(pid_t pid, int memfd, uint64_t **out, size_t *nout);

/* ---- (thread_stacks.c) ---- */

/* The mappings of `t` (as `m` lists them) that are stacks of threads that
 * have exited: glibc's cached stacks, whose descriptor says the thread is
 * gone; learned from the live threads `live` (thread_stacks.c says how).
 * No stopped thread's stack is among them. *out is malloc'ed (NULL, 0 when
 * none, or elsewhere than x86-64). 0 or OCOLOS_ENOMEM. */
int proc_dead_thread_stacks(struct proc_target *t, const struct procmaps *m,
			    const struct proc_live_thread *live, size_t nlive,
			    uint64_t (**out)[2], size_t *nout);
/* The calling thread as a live one, its stack pointer `sp`. */
struct proc_live_thread proc_self_thread(uint64_t sp);

/* ---- (safe_point.c) ---- */

/* The exported library function of `pid` containing `addr`, as
 * "name+0xoff" in name[len]; 0, or -1 (name "") when none does. For
 * messages: a call that does not return says where it waits. */
int proc_symbol_at(pid_t pid, uint64_t addr, char *name, size_t len);
/* The same for n addresses in one pass over the libraries: names[i] ""
 * where none is found. Returns how many were named. */
#define PROC_SYMBOL_LEN 112
size_t proc_symbols_at(pid_t pid, const uint64_t *addrs, size_t n, char (*names)[PROC_SYMBOL_LEN]);

/* The code ranges [lo, hi) of the functions of process `pid`'s glibc and
 * libgcc_s that hold the locks an injected libgcc call needs (fork, malloc,
 * the unwinder, the dynamic linker's lists); *out is malloc'ed (NULL, 0
 * when none can be read). 0 or OCOLOS_ENOMEM. */
int proc_lock_holder_ranges(pid_t pid, uint64_t (**out)[2], size_t *nout);
/* Is a thread stopped at `pc` with stack pointer `sp` inside one of them
 * (its PC, or a word of the top 4 KiB of its stack)? */
int proc_at_lock_holder(int memfd, uint64_t pc, uint64_t sp, const uint64_t (*r)[2], size_t n);
/* The lock word of the malloc arena libgcc's __deregister_frame_info will
 * take (free of the sorted FDE array) for its struct object at `obj` in
 * process `pid`, read through `memfd`; 0 when not known (safe_point.c says
 * when). */
uint64_t proc_free_lock(pid_t pid, int memfd, uint64_t obj);

/* ---- the stopping thread's priority during a stop (boost.c) ---- */

/* What proc_boost changed, for proc_unboost; owned by the stop. */
struct proc_boost {
	int boosted;			/* 1: the old policy is to be restored */
	pid_t tid;			/* the thread raised */
	int old_policy;			/* sched_getscheduler's, flags included */
	struct sched_param old_param;
};

/* Make the calling thread SCHED_FIFO priority 1 (| SCHED_RESET_ON_FORK
 * where it has CAP_SYS_NICE) if it is SCHED_OTHER and may be (boost.c says
 * why); otherwise, or if that fails, change nothing (b->boosted 0). Never
 * fails. */
void proc_boost(struct proc_boost *b);
/* Give the thread that called proc_boost (by its tid, whichever thread
 * calls this) back the policy and parameters it had — keeping
 * SCHED_RESET_ON_FORK only if CAP_SYS_NICE went away meanwhile and the
 * kernel refuses to clear it —; nothing if it was not boosted.
 * Idempotent. */
void proc_unboost(struct proc_boost *b);

/* ---- stop-the-world in this process (stop_self.c) ---- */

struct proc_self_stop; /* lives for one stop */

/* Park every thread of this process but the caller in a signal handler
 * (threads in system calls and threads created meanwhile included). The
 * caller runs real-time from the first signal until proc_resume_self
 * wakes the threads (proc_boost), or until this fails; the parked threads'
 * scheduling is untouched. Resume from the thread that stopped.
 * OCOLOS_ESTOP after timeout_ms (e.g. a thread blocks `sig`): then nothing
 * stays parked. */
int proc_stop_self(int sig, uint32_t timeout_ms, struct proc_self_stop **out,
		   uint32_t *threads, struct core_err *err);
/* Where each parked thread was stopped (PC, SP); valid until resume. */
const struct proc_thread_state *proc_stop_states(const struct proc_self_stop *s, size_t *n);
/* Let every parked thread run again; `released_ns` (may be NULL) gets the
 * time they were woken, before this waits for them to leave the handler. */
void proc_resume_self(struct proc_self_stop *s, uint64_t *released_ns);

#endif

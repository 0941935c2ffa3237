/*
 * A target process, as the layers above see it: the few operations that
 * differ between the calling process (target_self.c: plain system calls,
 * signals to stop threads, its own memory) and another process
 * (target_ptrace.c: system calls and calls injected with ptrace, its
 * memory through /proc/PID/mem). What to reserve, map and patch is
 * computed once, above (inject/, api/), from the binary model and BOLT's
 * output; this interface only moves bytes and stops threads.
 */
#ifndef OCOLOS_PROC_TARGET_H
#define OCOLOS_PROC_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "core/err.h"
#include "core/log.h"

struct proc_target;
struct proc_stop; /* a stopped world, between stop and resume */

/* Where a stopped thread is, and its general registers (any of which may
 * hold a code address: a return address not yet pushed, a function
 * pointer being called). */
struct proc_thread_state {
	uint64_t pc, sp;
	uint64_t regs[32];
	uint32_t nregs;
	uint32_t tid;
	uint64_t tp;		/* thread pointer (x86-64: fs base), 0 if not known */
};

/* The name of regs[r] ("rax", "x19"), or NULL past the last one: x86-64
 * reports rax, rbx, rcx, rdx, rsi, rdi, rbp, r8–r15 and the fs base;
 * AArch64 x0–x30. */
const char *proc_reg_name(unsigned r);

/* What a memory scan after a stop needs of each thread stopped there. */
struct proc_live_thread {
	uint64_t sp, tp;
	uint32_t tid;
};

/* A range of the target that the next stop will write, and what it holds. */
enum proc_span_kind {
	PROC_SPAN_CODE = 1,	/* instructions */
	PROC_SPAN_RODATA = 2,	/* data the program cannot write (RELRO, .rodata) */
	PROC_SPAN_DATA = 3,	/* data the program may write at any moment */
};
struct proc_span {
	uint64_t addr;
	uint32_t len;
	uint8_t kind;	/* enum proc_span_kind */
};

#define PROC_CALL_NOT_MADE 2 /* call_lib: not started, see below */

struct proc_target_ops {
	const char *name;
	/* Map [addr, addr + size) PROT_NONE, failing (EEXIST-like, returned
	 * as 1) rather than replacing an existing mapping. 0, 1, or OCOLOS_E*. */
	int (*reserve_at)(struct proc_target *t, uint64_t addr, uint64_t size, struct core_err *err);
	void (*unmap)(struct proc_target *t, uint64_t addr, uint64_t size);
	/* Map [addr, addr + size) with protection `prot` (PROT_*), its first
	 * `len` bytes from `bytes`, over what is there (a part of a
	 * reservation), named `name` in /proc/PID/maps ("/memfd:NAME
	 * (deleted)": a private mapping of a memfd the bytes were written to
	 * through its file descriptor, so the mapping is never writable, let
	 * alone writable and executable; private, so a forked child keeps its
	 * own copy of what later rounds patch). Code is made visible to
	 * instruction fetch. */
	int (*map_fill)(struct proc_target *t, uint64_t addr, uint64_t size, int prot,
			const void *bytes, size_t len, const char *name, struct core_err *err);
	/* Call `sym`(arg, arg2) of the target's loaded library whose file name
	 * starts with `lib` (e.g. "libgcc_s.so"); a function of one argument
	 * ignores the second. 1 if the target has no such library or symbol,
	 * PROC_CALL_NOT_MADE (err says why) if no thread could run it safely
	 * in time — nothing was done, try again later — 0, or OCOLOS_E* (a
	 * call that did not return in time may or may not have done its
	 * work). */
	int (*call_lib)(struct proc_target *t, const char *lib, const char *sym, uint64_t arg,
			uint64_t arg2, struct core_err *err);
	/* Stop every thread (of the calling process: every other one). */
	int (*stop)(struct proc_target *t, struct proc_stop **out, uint32_t *threads,
		    struct core_err *err);
	/* Where each stopped thread is; valid until resume. */
	const struct proc_thread_state *(*states)(const struct proc_stop *s, size_t *n);
	/* Let every stopped thread run again; `released_ns` (may be NULL) gets
	 * the time they were let go. */
	void (*resume)(struct proc_target *t, struct proc_stop *s, uint64_t *released_ns);
	/* Before a stop that writes `spans`: what must not happen inside it
	 * (it may allocate, read /proc, copy pages). Undone by poke_done. */
	int (*poke_prepare)(struct proc_target *t, const struct proc_span *spans, size_t n,
			    struct core_err *err);
	void (*poke_done)(struct proc_target *t);
	/* Read / write target memory while the world is stopped; no allocation.
	 * A write of code is made visible to instruction fetch. 0 or -1. */
	int (*peek)(struct proc_target *t, uint64_t addr, void *buf, size_t len);
	int (*poke)(struct proc_target *t, uint64_t addr, const void *buf, size_t len, int code);
	/* Optional (NULL: a peek each): read n ranges `remote[i]` of the target
	 * into `local[i]` with as few accesses as it can, while stopped; ok[i]
	 * says whether range i was read whole. By pid a peek is a system call
	 * of several microseconds, and a switch reads hundreds of ranges. */
	void (*peek_many)(struct proc_target *t, const struct iovec *remote,
			  const struct iovec *local, size_t n, uint8_t *ok);
	/* While stopped: how many threads have stack frames (and how many
	 * frames) with an IP in one of the [lo, hi) `ranges`. -1 when this
	 * target cannot walk stacks (reported, never needed). */
	int (*count_frames)(struct proc_target *t, struct proc_stop *s, const uint64_t (*ranges)[2],
			    size_t n, uint32_t *threads, uint32_t *frames);
	/* Map the first page of the file at `path` (absolute, as the target
	 * sees it) read+execute, never writable, wherever the kernel puts it,
	 * and leave it mapped: the mmap event perf's jitdump support takes as
	 * the marker of a dump (api/debuginfo.c). 0 or OCOLOS_E*. */
	int (*map_marker)(struct proc_target *t, const char *path, struct core_err *err);
};

/* A function call injected into a thread (by pid) that did not return in
 * time and was left to finish by itself: until it returns, the thread's
 * own PC and registers are saved in the stub's frame (ptrace_stub.c), out
 * of sight of a stop. */
struct proc_call_left {
	pid_t tid;
	uint64_t base, token; /* the stub's frame, and the call's token */
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
	struct proc_call_left call_left; /* ptrace: tid 0 when none */
	/* ptrace, for the next call_lib only: a lock (a 32-bit word, 0 when
	 * free) the call will take; it is made only while the word reads 0
	 * with the thread that runs it stopped (proc_free_lock). 0: none. */
	uint64_t call_lock;
	void *poke_state;	 /* between poke_prepare and poke_done */
};

/* Is a call injected earlier (call_left) still running? Then nothing may
 * be retired — the thread may resume into any version — and no other
 * call is injected. Reads the target; 0 when none is (or, in-process,
 * ever). */
int proc_target_call_still_running(struct proc_target *t);

/* Open a target for `pid` (getpid(): in-process). Fills *t. */
int proc_target_open(struct proc_target *t, pid_t pid, const struct core_log *log,
		     struct core_err *err);
void proc_target_close(struct proc_target *t);

extern const struct proc_target_ops proc_target_self_ops;
extern const struct proc_target_ops proc_target_ptrace_ops;

#endif

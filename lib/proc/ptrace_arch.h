/*
 * The architecture-specific half of the ptrace injector: a stopped thread's
 * registers, the injection stub's machine code and the frame it runs on
 * (ptrace_x86.c, ptrace_a64.c). The protocol both follow — the thread is
 * let go inside the stub at once, the stub restores the thread by itself,
 * the result is read while the stub waits for an acknowledgement — is
 * ptrace_stub.c's, which is written once for both.
 */
#ifndef OCOLOS_PROC_PTRACE_ARCH_H
#define OCOLOS_PROC_PTRACE_ARCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "proc/target.h"

/* The head of every stub frame, at the frame's base (the stub's stack
 * pointer when it starts): the same offsets on every architecture. */
#define PTRACE_FR_KIND 0	/* 0 system call, 1 call */
#define PTRACE_FR_FN 8		/* system call number or function */
#define PTRACE_FR_ARGS 16	/* 6 arguments */
#define PTRACE_FR_FULLMASK 64	/* the signal mask the stub runs with: all */
#define PTRACE_FR_OLDMASK 72	/* x86-64: the thread's own mask, saved by the stub */
#define PTRACE_FR_RESULT 80
#define PTRACE_FR_DONE 88	/* token: result published; ~token: abandoned */
#define PTRACE_FR_ACK 96	/* the agent writes the token here (a futex word) */
#define PTRACE_FR_TOKEN 104
#define PTRACE_FR_WAITS 112	/* bounded waits for the acknowledgement */
#define PTRACE_FR_RESTORE 120	/* where the stub finds the thread's own state */
#define PTRACE_FR_ARCH 128	/* one word for the architecture (x86-64: xsave) */
#define PTRACE_FR_TIMESPEC 136	/* one wait */
#define PTRACE_FR_HEAD 192	/* bytes of the head; 64-aligned */

/* Each wait for the acknowledgement; a stub whose tracer died waits
 * PTRACE_STUB_WAITS of these (about 200 ms) once, then runs on. */
#define PTRACE_STUB_WAIT_NS 20000000
#define PTRACE_STUB_WAITS 10

/* Everything needed to put a stopped thread back by hand: its registers
 * and vector state, read before it is sent into the stub. Opaque; made by
 * ptrace_arch_save, freed with ptrace_arch_saved_free. */
struct ptrace_arch_saved;

/* Read the registers and vector state of stopped thread `tid`. NULL if
 * the thread cannot be read (gone) or out of memory. */
struct ptrace_arch_saved *ptrace_arch_save(pid_t tid);
void ptrace_arch_saved_free(struct ptrace_arch_saved *s);
uint64_t ptrace_arch_pc(const struct ptrace_arch_saved *s);
uint64_t ptrace_arch_sp(const struct ptrace_arch_saved *s);

/* How well the thread whose state is `s` suits running the stub: 0 not at
 * all, higher is better (AArch64 prefers a thread that is not about to
 * restart a system call and whose vector state fits the frame). */
int ptrace_arch_fit(const struct ptrace_arch_saved *s, int memfd);

/* The frame the stub runs on, to be written below the thread's stack
 * pointer: its base (the stub's stack pointer, 64-aligned) and bytes
 * (malloc'ed, *len bytes from base). `head` holds PTRACE_FR_HEAD bytes
 * with every common field filled; the architecture adds PTRACE_FR_RESTORE
 * and PTRACE_FR_ARCH and the state the stub restores from. 0 or -1. */
int ptrace_arch_frame(const struct ptrace_arch_saved *s, const uint8_t *head, uint64_t *base,
		      uint8_t **frame, size_t *len);

/* Point the stopped thread at the stub (`stub`), on the frame at `base`.
 * 0 or -1. */
int ptrace_arch_enter(pid_t tid, const struct ptrace_arch_saved *s, uint64_t stub, uint64_t base);

/* The thread is held inside a system call that has done its work (a
 * clone/fork event stop): make `s` resume it as the call returning `v`.
 * 0, or -1 where this architecture's half does not do it (AArch64). */
int ptrace_arch_set_syscall_result(struct ptrace_arch_saved *s, uint64_t v);

/* Put the stopped thread back as `s` says (registers, vector state); the
 * signal mask is the caller's. 0 or -1. */
int ptrace_arch_restore(pid_t tid, const struct ptrace_arch_saved *s);

/* The stub's machine code: its length, and in *code (may be NULL) its
 * bytes. Position-independent: it works wherever it is copied. */
size_t ptrace_arch_stub(const uint8_t **code);

/* Offset in the stub of its instruction-cache maintenance routine, called
 * like a function with (lo, hi) — make [lo, hi) visible to instruction
 * fetch — or with (list, -n) — the n words at `list` each name a code
 * address to make visible. 0 where the architecture needs none (x86-64). */
uint64_t ptrace_arch_icache_entry(void);

/* PC, SP and general registers of stopped thread `tid`. 0 or -1. */
int ptrace_arch_state(pid_t tid, struct proc_thread_state *st);

#endif

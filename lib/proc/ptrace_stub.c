/*
 * Running a system call or a function call inside a stopped thread of
 * another process, through a stub that restores the thread by itself
 * (the protocol is in ptrace.c's opening comment and at run_stub()).
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "proc/proc.h"
#include "proc/ptrace.h"

#if !defined(__x86_64__)
/* Injecting system calls and calls is x86-64 only (registers, `syscall`
 * stub); proc_target_open() refuses other processes elsewhere. */
#define PTRACE_X86_ONLY(err)                                                   \
	core_errf(err, OCOLOS_ENOTSUP, "optimizing another process (ptrace injector) is "  \
		  "implemented for x86-64 only; on this machine link libocolos into the "  \
		  "program and call ocolos_optimize_self()")
int proc_ptrace_syscall(struct proc_ptrace *pt, int memfd, uint64_t stub, long nr,
			  const uint64_t args[6], int64_t *ret, struct core_err *err)
{
	(void)pt; (void)memfd; (void)stub; (void)nr; (void)args; (void)ret;
	return PTRACE_X86_ONLY(err);
}

int proc_ptrace_call(struct proc_ptrace *pt, int memfd, uint64_t stub, uint64_t fn,
		       uint64_t arg, uint32_t timeout_ms, uint64_t *ret, struct core_err *err)
{
	(void)pt; (void)memfd; (void)stub; (void)fn; (void)arg; (void)timeout_ms; (void)ret;
	return PTRACE_X86_ONLY(err);
}

size_t proc_ptrace_stub_bytes(const uint8_t **code)
{
	if (code)
		*code = NULL;
	return 0;
}
#else
#include <cpuid.h>

/* First stopped, live thread. */
static struct proc_ptrace_thread *worker(struct proc_ptrace *pt)
{
	for (size_t i = 0; i < pt->n; i++)
		if (pt->t[i].stopped && !pt->t[i].gone)
			return &pt->t[i];
	return NULL;
}

/*
 * Injected work runs through a stub, so that it stays correct if we die at
 * any moment (the kernel then detaches the thread and it simply runs on).
 * Registers alone cannot give that: a thread resumed in an injected state
 * runs on from wherever the tracer left it, and a thread left in a
 * signal-delivery-stop (the SIGTRAP of a single-step or of an int3) gets
 * that SIGTRAP when its tracer dies, which kills the process.
 *
 * So the thread, while in an interrupt stop (which delivers nothing when the
 * tracer goes), gets only rip = stub and rsp = a frame we wrote below its red
 * zone, and is let go at once. The stub blocks signals, saves the vector
 * state, does the system call or call the frame names, publishes the result
 * (done = a per-run token), waits a bounded time for our acknowledgement,
 * then restores everything from the frame and returns into the original code
 * with `ret $STUB_POP`. Whether or not we are still there, the thread ends
 * where it was, with its registers, vector state and signal mask.
 *
 * We read the result only while holding the thread inside that wait (its
 * frame is then still live), and acknowledge it there; if we are late, the
 * stub marks the result abandoned (done = ~token) before leaving.
 */
#define STUB_POP 256 /* bytes between the restore block and the original rsp */

/* Frame offsets (from the frame base, the stub's rsp; 64-aligned). */
#define FR_KIND 0	/* 0 system call, 1 call */
#define FR_FN 8		/* system call number or function */
#define FR_ARGS 16	/* 6 arguments */
#define FR_FULLMASK 64
#define FR_OLDMASK 72
#define FR_RESULT 80
#define FR_DONE 88
#define FR_ACK 96	/* futex word (low 32 bits) */
#define FR_TOKEN 104
#define FR_WAITS 112	/* bounded waits for the acknowledgement */
#define FR_RESTORE 120	/* address of the restore block */
#define FR_XSAVE 128	/* 1: xsave64, 0: fxsave64 */
#define FR_TIMESPEC 136 /* one wait */
#define FR_FPU 192	/* vector state, 64-aligned */

/* Each wait for the acknowledgement; a stub whose tracer died waits
 * STUB_WAITS of these (about 200 ms) once, then runs on. */
#define STUB_WAIT_NS 20000000
#define STUB_WAITS 10

/* The stub, position-independent (rsp-relative only). Kept as data here:
 * its bytes are copied into the target, never run in this process. */
__asm__(
	".pushsection .rodata\n"
	".balign 16\n"
	".globl ocolos_ptrace_stub\n"
	".hidden ocolos_ptrace_stub\n"
	".globl ocolos_ptrace_stub_end\n"
	".hidden ocolos_ptrace_stub_end\n"
	"ocolos_ptrace_stub:\n"
	"	mov $14, %eax\n"		/* rt_sigprocmask(SIG_SETMASK, full, old, 8) */
	"	mov $2, %edi\n"
	"	lea 64(%rsp), %rsi\n"
	"	lea 72(%rsp), %rdx\n"
	"	mov $8, %r10d\n"
	"	syscall\n"
	"	cmpq $0, 128(%rsp)\n"
	"	je 1f\n"
	"	mov $-1, %eax\n"
	"	mov $-1, %edx\n"
	"	xsave64 192(%rsp)\n"
	"	jmp 2f\n"
	"1:	fxsave64 192(%rsp)\n"
	"2:	mov 16(%rsp), %rdi\n"
	"	mov 24(%rsp), %rsi\n"
	"	mov 32(%rsp), %rdx\n"
	"	mov 40(%rsp), %r10\n"
	"	mov 48(%rsp), %r8\n"
	"	mov 56(%rsp), %r9\n"
	"	mov 8(%rsp), %rax\n"
	"	cmpq $0, 0(%rsp)\n"
	"	jne 3f\n"
	"	syscall\n"
	"	jmp 4f\n"
	"3:	mov %rsp, %rbx\n"		/* callee-saved: the frame */
	"	mov %r10, %rcx\n"
	"	mov %rax, %r11\n"
	"	xor %eax, %eax\n"
	"	call *%r11\n"			/* rsp is 16-aligned here, as the ABI wants */
	"	mov %rbx, %rsp\n"
	"4:	mov %rax, 80(%rsp)\n"
	"	mov 104(%rsp), %rax\n"
	"	mov %rax, 88(%rsp)\n"		/* done = token, after the result */
	"	mov 112(%rsp), %rbx\n"
	"5:	mov 104(%rsp), %rax\n"
	"	cmp 96(%rsp), %rax\n"
	"	je 6f\n"
	"	test %rbx, %rbx\n"
	"	jz 7f\n"
	"	dec %rbx\n"
	"	mov $202, %eax\n"		/* futex(&ack, FUTEX_WAIT_PRIVATE, 0, &ts) */
	"	lea 96(%rsp), %rdi\n"
	"	mov $128, %esi\n"
	"	xor %edx, %edx\n"
	"	lea 136(%rsp), %r10\n"
	"	xor %r8d, %r8d\n"
	"	xor %r9d, %r9d\n"
	"	syscall\n"
	"	jmp 5b\n"
	"7:	notq 88(%rsp)\n"		/* nobody acknowledged: abandoned */
	"6:	cmpq $0, 128(%rsp)\n"
	"	je 8f\n"
	"	mov $-1, %eax\n"
	"	mov $-1, %edx\n"
	"	xrstor64 192(%rsp)\n"
	"	jmp 9f\n"
	"8:	fxrstor64 192(%rsp)\n"
	"9:	mov $14, %eax\n"		/* rt_sigprocmask(SIG_SETMASK, old, NULL, 8) */
	"	mov $2, %edi\n"
	"	lea 72(%rsp), %rsi\n"
	"	xor %edx, %edx\n"
	"	mov $8, %r10d\n"
	"	syscall\n"
	"	mov 120(%rsp), %rsp\n"		/* the restore block: all data left is above rsp */
	"	pop %r15\n"
	"	pop %r14\n"
	"	pop %r13\n"
	"	pop %r12\n"
	"	pop %r11\n"
	"	pop %r10\n"
	"	pop %r9\n"
	"	pop %r8\n"
	"	pop %rbp\n"
	"	pop %rdi\n"
	"	pop %rsi\n"
	"	pop %rdx\n"
	"	pop %rcx\n"
	"	pop %rbx\n"
	"	pop %rax\n"
	"	popfq\n"
	"	ret $256\n"			/* STUB_POP */
	"ocolos_ptrace_stub_end:\n"
	".popsection\n");
extern const uint8_t ocolos_ptrace_stub[], ocolos_ptrace_stub_end[];

size_t proc_ptrace_stub_bytes(const uint8_t **code)
{
	if (code)
		*code = ocolos_ptrace_stub;
	return (size_t)(ocolos_ptrace_stub_end - ocolos_ptrace_stub);
}

/* Size of the vector state save area and whether xsave is usable. */
static size_t fpu_area(int *use_xsave)
{
	unsigned a, b, c, d;
	*use_xsave = 0;
	if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27)) && /* OSXSAVE */
	    __get_cpuid_count(0xd, 0, &a, &b, &c, &d) && b >= 576) {
		*use_xsave = 1;
		return (b + 63) & ~63u;
	}
	return 512;
}

/* The registers the thread must resume with. A thread stopped inside an
 * interrupted system call would have it restarted by the kernel as it
 * resumes; the stub resumes it from user space, so do that here. */
static void resume_regs(const struct user_regs_struct *s, struct user_regs_struct *out)
{
	*out = *s;
	if ((int64_t)s->orig_rax < 0)
		return;
	int64_t rv = (int64_t)s->rax;
	if (rv == -512 || rv == -513 || rv == -514) { /* ERESTARTSYS/NOINTR/NOHAND */
		out->rax = s->orig_rax;
		out->rip -= 2;
	} else if (rv == -516) { /* ERESTART_RESTARTBLOCK */
		out->rax = 219; /* restart_syscall */
		out->rip -= 2;
	}
}

static uint64_t make_token(pid_t tid)
{
	uint64_t x = core_now_ns() ^ ((uint64_t)tid << 32) ^ (uint64_t)(uintptr_t)&x;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x | 1; /* the futex compares the low half with 0 */
}

/*
 * Run the work in the first stopped thread of `pt` through the stub at
 * `stub`. The thread is let go as soon as its registers point at the stub;
 * it is held again only to read the result.
 */
static int run_stub(struct proc_ptrace *pt, int memfd, uint64_t stub, int kind, uint64_t fn,
		    const uint64_t args[6], uint32_t timeout_ms, int64_t *ret, struct core_err *err)
{
	struct proc_ptrace_thread *t = worker(pt);
	struct user_regs_struct saved, r;
	if (!t || ptrace(PTRACE_GETREGS, t->tid, 0, &saved) != 0)
		return core_errf(err, OCOLOS_ENOPROC, "no stopped thread to run %s in",
				 kind ? "a call" : "a system call");
	if (!stub)
		return core_errf(err, OCOLOS_ENOTSUP, "no room for the injection stub in process %d "
				 "(no executable mapping with a free tail)", (int)pt->pid);
	pid_t tid = t->tid;
	int use_xsave;
	size_t fpu = fpu_area(&use_xsave);
	struct user_regs_struct go;
	resume_regs(&saved, &go);
	/* Restore block, popped in the stub's order, then rip; `ret $STUB_POP`
	 * lands exactly on the original rsp. Below it, the frame; all of it
	 * below the original red zone. */
	uint64_t restore = saved.rsp - STUB_POP - 17 * 8;
	uint64_t base = (restore - FR_FPU - fpu) & ~63ull;
	size_t len = (size_t)(restore + 17 * 8 - base);
	uint8_t *fr = calloc(1, len);
	if (!fr)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	uint64_t token = make_token(tid);
	uint64_t head[FR_FPU / 8] = { 0 };
	head[FR_KIND / 8] = (uint64_t)kind;
	head[FR_FN / 8] = fn;
	for (int i = 0; i < 6; i++)
		head[FR_ARGS / 8 + i] = args[i];
	head[FR_FULLMASK / 8] = ~0ull;
	head[FR_TOKEN / 8] = token;
	head[FR_WAITS / 8] = STUB_WAITS;
	head[FR_RESTORE / 8] = restore;
	head[FR_XSAVE / 8] = (uint64_t)use_xsave;
	head[FR_TIMESPEC / 8 + 1] = STUB_WAIT_NS;
	memcpy(fr, head, sizeof(head));
	const uint64_t block[17] = { go.r15, go.r14, go.r13, go.r12, go.r11, go.r10, go.r9, go.r8,
				     go.rbp, go.rdi, go.rsi, go.rdx, go.rcx, go.rbx, go.rax,
				     go.eflags, go.rip };
	memcpy(fr + (restore - base), block, sizeof(block));
	int wrc = proc_mem_write(memfd, base, fr, len);
	free(fr);
	if (wrc)
		return core_errf(err, OCOLOS_EATTACH, "cannot write the stack of thread %d", (int)tid);
	/* Kept for an abandoned call: the state to put back by hand. */
	uint64_t sigmask = 0;
	int fpu_note = use_xsave ? NT_X86_XSTATE : NT_PRFPREG;
	uint8_t *fpu_saved = malloc(fpu);
	struct iovec fiov = { fpu_saved, fpu };
	int have_state = ptrace(PTRACE_GETSIGMASK, tid, (void *)8, &sigmask) == 0 && fpu_saved &&
			 ptrace(PTRACE_GETREGSET, tid, (void *)(long)fpu_note, &fiov) == 0;
	r = saved;
	r.rip = stub;
	r.rsp = base;
	r.orig_rax = (uint64_t)-1; /* no restart logic: resume_regs() did it */
	if (ptrace(PTRACE_SETREGS, tid, 0, &r) != 0) {
		free(fpu_saved);
		return core_errf(err, OCOLOS_EATTACH, "cannot set the registers of thread %d", (int)tid);
	}
	/* From here on the thread completes and resumes by itself. */
	ptrace(PTRACE_DETACH, tid, 0, (void *)(long)t->pending_sig);
	t->seized = 0;
	t->pending_sig = 0;

	uint64_t deadline = core_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint64_t done = 0;
	long nap = 10000;
	for (;;) {
		if (proc_mem_read(memfd, base + FR_DONE, &done, sizeof(done))) {
			free(fpu_saved);
			return core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)pt->pid);
		}
		if (done == token || done == ~token || core_now_ns() > deadline)
			break;
		struct timespec ts = { 0, nap };
		nanosleep(&ts, NULL);
		nap = nap < 1000000 ? nap * 2 : nap;
	}
	struct proc_ptrace *one = proc_ptrace_hold_one(pt->pid, tid, core_now_ns() + 1000000000ull);
	if (!one) {
		free(fpu_saved);
		return core_errf(err, OCOLOS_EATTACH, "thread %d could not be held again after %s "
				 "injected into it", (int)tid, kind ? "a call" : "a system call");
	}
	int rc = 0;
	uint64_t res[2] = { 0, 0 }; /* result, done */
	if (proc_mem_read(memfd, base + FR_RESULT, res, sizeof(res))) {
		rc = core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)pt->pid);
	} else if (res[1] == token) {
		/* Still inside the stub's wait: its frame is live. */
		*ret = (int64_t)res[0];
		if (proc_mem_write(memfd, base + FR_ACK, &token, sizeof(token)))
			rc = core_errf(err, OCOLOS_EIO, "cannot write the stack of thread %d", (int)tid);
	} else if (res[1] == ~token) {
		rc = core_errf(err, OCOLOS_ETIMEDOUT, "thread %d finished %s injected into it, but "
			       "this process was too slow to read its result (a loaded machine?); "
			       "retry", (int)tid, kind ? "a call" : "a system call");
	} else {
		/* Not done within the time limit (a call waiting for a lock the
		 * interrupted code holds, say). Put the thread back where it
		 * was, as the stub would have, so that it runs on; what the
		 * abandoned work did is left as it is. Only while it is still
		 * in the stub or below its frame: anywhere else it has left. */
		struct user_regs_struct now;
		uint64_t stub_len = (uint64_t)(ocolos_ptrace_stub_end - ocolos_ptrace_stub);
		if (have_state && ptrace(PTRACE_GETREGS, tid, 0, &now) == 0 &&
		    (now.rsp < base || (now.rip >= stub && now.rip < stub + stub_len))) {
			ptrace(PTRACE_SETREGSET, tid, (void *)(long)fpu_note, &fiov);
			ptrace(PTRACE_SETSIGMASK, tid, (void *)8, &sigmask);
			ptrace(PTRACE_SETREGS, tid, 0, &saved);
		}
		rc = core_errf(err, OCOLOS_ETIMEDOUT,
			       "%s injected into thread %d did not return within %u ms (a lock it "
			       "needs is held?); abandoned", kind ? "a call" : "a system call",
			       (int)tid, timeout_ms);
	}
	proc_ptrace_resume(one, NULL);
	free(fpu_saved);
	return rc;
}

int proc_ptrace_syscall(struct proc_ptrace *pt, int memfd, uint64_t stub, long nr,
			  const uint64_t args[6], int64_t *ret, struct core_err *err)
{
	return run_stub(pt, memfd, stub, 0, (uint64_t)nr, args, 2000, ret, err);
}

int proc_ptrace_call(struct proc_ptrace *pt, int memfd, uint64_t stub, uint64_t fn,
		       uint64_t arg, uint32_t timeout_ms, uint64_t *ret, struct core_err *err)
{
	const uint64_t args[6] = { arg, 0, 0, 0, 0, 0 };
	int64_t r = 0;
	int rc = run_stub(pt, memfd, stub, 1, fn, args, timeout_ms, &r, err);
	*ret = (uint64_t)r;
	return rc;
}

#endif /* __x86_64__ */

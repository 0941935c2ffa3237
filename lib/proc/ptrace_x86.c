/*
 * The ptrace injector on x86-64: registers (PTRACE_GETREGS, the vector
 * state through PTRACE_GETREGSET NT_X86_XSTATE or NT_PRFPREG), the stub and
 * its frame. The protocol is ptrace_stub.c's.
 *
 * The frame, from its base (the stub's rsp, 64-aligned) up: the common
 * head (ptrace_arch.h), the vector state area (xsave64 / fxsave64, written
 * by the stub), then the restore block the stub pops — r15 ... rax, rflags,
 * rip — and STUB_POP bytes up to the thread's own rsp, so that `ret
 * $STUB_POP` lands on it exactly. All of it lies below the thread's red
 * zone.
 */
#if defined(__x86_64__)
#include <cpuid.h>
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>

#include "proc/ptrace_arch.h"

#define STUB_POP 256 /* bytes between the restore block and the original rsp */
#define RESTORE_WORDS 17

/* The stub, position-independent (rsp-relative only). Kept as data here:
 * its bytes are copied into the target, never run in this process. Frame
 * offsets as in ptrace_arch.h (FR_ARCH: 1 xsave64, 0 fxsave64). */
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

_Static_assert(PTRACE_FR_HEAD == 192 && PTRACE_FR_ARCH == 128 && PTRACE_FR_RESTORE == 120 &&
	       PTRACE_FR_OLDMASK == 72 && PTRACE_FR_TIMESPEC == 136,
	       "the stub's offsets are written out above");

struct ptrace_arch_saved {
	struct user_regs_struct regs;
	int fp_note;		/* NT_X86_XSTATE or NT_PRFPREG */
	int use_xsave;
	size_t fp_len;
	int have_fp;
	uint8_t fp[];		/* fp_len bytes */
};

size_t ptrace_arch_stub(const uint8_t **code)
{
	if (code)
		*code = ocolos_ptrace_stub;
	return (size_t)(ocolos_ptrace_stub_end - ocolos_ptrace_stub);
}

uint64_t ptrace_arch_icache_entry(void)
{
	return 0; /* x86-64: instruction fetch is coherent with stores */
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

struct ptrace_arch_saved *ptrace_arch_save(pid_t tid)
{
	int use_xsave;
	size_t fp = fpu_area(&use_xsave);
	struct ptrace_arch_saved *s = calloc(1, sizeof(*s) + fp);
	if (!s)
		return NULL;
	if (ptrace(PTRACE_GETREGS, tid, 0, &s->regs) != 0) {
		free(s);
		return NULL;
	}
	s->use_xsave = use_xsave;
	s->fp_note = use_xsave ? NT_X86_XSTATE : NT_PRFPREG;
	s->fp_len = fp;
	struct iovec iov = { s->fp, fp };
	s->have_fp = ptrace(PTRACE_GETREGSET, tid, (void *)(long)s->fp_note, &iov) == 0;
	return s;
}

void ptrace_arch_saved_free(struct ptrace_arch_saved *s)
{
	free(s);
}

uint64_t ptrace_arch_pc(const struct ptrace_arch_saved *s)
{
	return s->regs.rip;
}

uint64_t ptrace_arch_sp(const struct ptrace_arch_saved *s)
{
	return s->regs.rsp;
}

int ptrace_arch_set_syscall_result(struct ptrace_arch_saved *s, uint64_t v)
{
	s->regs.rax = v; /* rip is past the syscall instruction already */
	return 0;
}

int ptrace_arch_fit(const struct ptrace_arch_saved *s, int memfd)
{
	(void)s; (void)memfd;
	return 2; /* any thread: resume_regs() restarts an interrupted system call */
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

int ptrace_arch_frame(const struct ptrace_arch_saved *s, const uint8_t *head, uint64_t *base,
		      uint8_t **frame, size_t *len)
{
	struct user_regs_struct go;
	resume_regs(&s->regs, &go);
	/* Restore block, popped in the stub's order, then rip; `ret $STUB_POP`
	 * lands exactly on the original rsp. Below it, the frame; all of it
	 * below the original red zone. */
	uint64_t restore = s->regs.rsp - STUB_POP - RESTORE_WORDS * 8;
	uint64_t b = (restore - PTRACE_FR_HEAD - s->fp_len) & ~63ull;
	size_t n = (size_t)(restore + RESTORE_WORDS * 8 - b);
	uint8_t *fr = calloc(1, n);
	if (!fr)
		return -1;
	memcpy(fr, head, PTRACE_FR_HEAD);
	uint64_t w = restore;
	memcpy(fr + PTRACE_FR_RESTORE, &w, 8);
	w = (uint64_t)s->use_xsave;
	memcpy(fr + PTRACE_FR_ARCH, &w, 8);
	const uint64_t block[RESTORE_WORDS] = { go.r15, go.r14, go.r13, go.r12, go.r11, go.r10,
		go.r9, go.r8, go.rbp, go.rdi, go.rsi, go.rdx, go.rcx, go.rbx, go.rax, go.eflags,
		go.rip };
	memcpy(fr + (restore - b), block, sizeof(block));
	*base = b;
	*frame = fr;
	*len = n;
	return 0;
}

int ptrace_arch_enter(pid_t tid, const struct ptrace_arch_saved *s, uint64_t stub, uint64_t base)
{
	struct user_regs_struct r = s->regs;
	r.rip = stub;
	r.rsp = base;
	r.orig_rax = (uint64_t)-1; /* no restart logic: resume_regs() did it */
	return ptrace(PTRACE_SETREGS, tid, 0, &r) == 0 ? 0 : -1;
}

int ptrace_arch_restore(pid_t tid, const struct ptrace_arch_saved *s)
{
	if (!s->have_fp)
		return -1;
	struct iovec iov = { (void *)s->fp, s->fp_len };
	if (ptrace(PTRACE_SETREGSET, tid, (void *)(long)s->fp_note, &iov) != 0)
		return -1;
	return ptrace(PTRACE_SETREGS, tid, 0, &s->regs) == 0 ? 0 : -1;
}

int ptrace_arch_state(pid_t tid, struct proc_thread_state *st)
{
	struct user_regs_struct r;
	if (ptrace(PTRACE_GETREGS, tid, 0, &r) != 0)
		return -1;
	*st = (struct proc_thread_state){ .pc = r.rip, .sp = r.rsp, .tid = (uint32_t)tid,
					  .tp = r.fs_base };
	/* fs_base last: switch.c reads glibc's pointer guard through it. */
	const uint64_t g[] = { r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9,
			       r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.fs_base };
	memcpy(st->regs, g, sizeof(g));
	st->nregs = sizeof(g) / sizeof(g[0]);
	return 0;
}
#endif /* __x86_64__ */

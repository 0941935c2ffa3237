/*
 * The ptrace injector on AArch64: registers through PTRACE_GETREGSET
 * (NT_PRSTATUS; NT_FPREGSET, and NT_ARM_SVE when a thread's SVE state is
 * live), the stub and the frame it runs on, and the stub's
 * instruction-cache maintenance routine. The protocol is ptrace_stub.c's.
 *
 * How the stub gives the thread back. AArch64 has no branch to a target
 * held in memory, so a stub cannot restore all 31 general registers and
 * then jump to the interrupted PC as the x86-64 stub does (`ret $n`): the
 * jump needs a register. Instead the frame holds a signal frame (struct
 * rt_sigframe: siginfo, then a ucontext whose mcontext has the thread's
 * x0-x30, sp, pc, pstate, and in its extension area an fpsimd_context —
 * and an sve_context when SVE state is live — then a terminator), and the
 * stub's last act is rt_sigreturn on it: the kernel restores every
 * register, the vector state, PSTATE (BTYPE included) and the signal mask
 * at once, as it does after any signal handler. Two fields only the thread
 * itself knows are filled by the stub before its work: uc_sigmask (its
 * rt_sigprocmask writes the old mask there) and uc_stack (sigaltstack(NULL,
 * &uc_stack)), since rt_sigreturn also re-installs the alternate signal
 * stack the frame names.
 *
 * The frame, from its base (the stub's sp, 64-aligned) up: the common head
 * (ptrace_arch.h), the signal frame, then GAP bytes up to the thread's own
 * sp. (AAPCS64 has no red zone; the gap is a margin.)
 *
 * Interrupted system calls. When a thread blocked in a system call is
 * interrupted to stop for us, the kernel has already rewound its PC to the
 * `svc` and put the first argument back in x0 before the stop ("so that a
 * debugger will see the already changed PC", arch/arm64/kernel/signal.c);
 * returning to that PC restarts the call. Only the restart of a call that
 * must resume with its remaining time (ERESTART_RESTARTBLOCK: nanosleep,
 * a futex wait with a timeout) cannot be told apart from the registers: it
 * restarts from the start, sleeping longer, never shorter. So a thread that
 * is not sitting on an `svc` is preferred for the stub (ptrace_arch_fit).
 * Threads in SME streaming mode are not considered (no such CPU here).
 */
#if defined(__aarch64__)
#include <asm/sigcontext.h>
#include <elf.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/ucontext.h>
#include <sys/uio.h>

#include "proc/proc.h"
#include "proc/ptrace_arch.h"

#define SIGINFO_BYTES 128 /* struct rt_sigframe: siginfo, then the ucontext */
#define FR_SIGFRAME PTRACE_FR_HEAD
#define FR_UC (FR_SIGFRAME + SIGINFO_BYTES)
#define FR_UC_STACK (FR_UC + 16)
#define FR_UC_SIGMASK (FR_UC + 40)
#define FRAME_BYTES (FR_UC + sizeof(ucontext_t))
#define GAP 128

_Static_assert(offsetof(ucontext_t, uc_stack) == 16 && offsetof(ucontext_t, uc_sigmask) == 40,
	       "the kernel's struct ucontext layout");
_Static_assert(FR_UC_SIGMASK < 4096 && FR_UC_STACK < 4096, "ADD immediates of the stub");
_Static_assert(FR_SIGFRAME % 16 == 0, "rt_sigreturn wants a 16-aligned sp");

#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * The stub, position-independent, entered with sp = the frame's base and
 * every other register as the thread had it. x19 holds the base across the
 * call (callee-saved); x20 counts the waits. Kept as data here: its bytes
 * are copied into the target, never run in this process.
 *
 * Then, at a fixed offset, the i-cache maintenance routine (an ordinary
 * function, called through the stub like any other): for every data-cache
 * line of the range or list `dc cvau` (clean to the point of
 * unification), `dsb ish`, for every instruction-cache line `ic ivau`
 * (invalidate, broadcast to the inner-shareable domain), `dsb ish`, `isb`
 * — the sequence the Arm ARM gives for making written instructions visible
 * to instruction fetch on every core; the other cores' threads then run
 * the new code after a context synchronization event (their return from
 * the ptrace stop, an exception return). Line sizes from CTR_EL0, which
 * Linux lets user space read. It starts with `bti c`, a NOP on cores
 * without BTI, in case the page the stub is placed on is BTI-guarded.
 */
__asm__(
	".pushsection .rodata\n"
	".balign 16\n"
	".globl ocolos_ptrace_stub\n"
	".hidden ocolos_ptrace_stub\n"
	".globl ocolos_ptrace_stub_end\n"
	".hidden ocolos_ptrace_stub_end\n"
	".globl ocolos_ptrace_icache\n"
	".hidden ocolos_ptrace_icache\n"
	"ocolos_ptrace_stub:\n"
	"	mov	x19, sp\n"
	"	mov	x0, #2\n"			/* rt_sigprocmask(SIG_SETMASK, full, */
	"	add	x1, x19, #64\n"			/*   &uc_sigmask, 8) */
	"	add	x2, x19, #" STR(FR_UC_SIGMASK) "\n"
	"	mov	x3, #8\n"
	"	mov	x8, #135\n"
	"	svc	#0\n"
	"	mov	x0, #0\n"			/* sigaltstack(NULL, &uc_stack) */
	"	add	x1, x19, #" STR(FR_UC_STACK) "\n"
	"	mov	x8, #132\n"
	"	svc	#0\n"
	"	ldp	x0, x1, [x19, #16]\n"
	"	ldp	x2, x3, [x19, #32]\n"
	"	ldp	x4, x5, [x19, #48]\n"
	"	ldr	x9, [x19, #8]\n"
	"	ldr	x10, [x19, #0]\n"
	"	cbnz	x10, 1f\n"
	"	mov	x8, x9\n"
	"	svc	#0\n"
	"	b	2f\n"
	"1:	blr	x9\n"				/* sp is 16-aligned, as the ABI wants */
	"2:	str	x0, [x19, #80]\n"
	"	ldr	x10, [x19, #104]\n"
	"	add	x11, x19, #88\n"
	"	stlr	x10, [x11]\n"			/* done = token, after the result */
	"	ldr	x20, [x19, #112]\n"
	"3:	ldr	x10, [x19, #104]\n"
	"	ldr	x11, [x19, #96]\n"
	"	cmp	x10, x11\n"
	"	b.eq	6f\n"
	"	cbz	x20, 7f\n"
	"	sub	x20, x20, #1\n"
	"	add	x0, x19, #96\n"			/* futex(&ack, FUTEX_WAIT_PRIVATE, 0, &ts) */
	"	mov	x1, #128\n"
	"	mov	x2, #0\n"
	"	add	x3, x19, #136\n"
	"	mov	x4, #0\n"
	"	mov	x5, #0\n"
	"	mov	x8, #98\n"
	"	svc	#0\n"
	"	b	3b\n"
	"7:	ldr	x10, [x19, #104]\n"		/* nobody acknowledged: abandoned */
	"	mvn	x10, x10\n"
	"	str	x10, [x19, #88]\n"
	"6:	ldr	x10, [x19, #120]\n"		/* the signal frame */
	"	mov	sp, x10\n"
	"	mov	x8, #139\n"			/* rt_sigreturn: the thread as it was */
	"	svc	#0\n"
	"	brk	#0\n"
	".balign 16\n"
	"ocolos_ptrace_icache:\n"			/* (lo, hi) or (list, -n) */
	"	hint	#34\n"				/* bti c */
	"	mrs	x9, ctr_el0\n"
	"	mov	x11, #4\n"
	"	ubfx	x10, x9, #16, #4\n"
	"	lsl	x10, x11, x10\n"		/* D-cache line bytes */
	"	and	x12, x9, #0xf\n"
	"	lsl	x12, x11, x12\n"		/* I-cache line bytes */
	"	tbnz	x1, #63, 5f\n"
	"	sub	x13, x10, #1\n"			/* range */
	"	bic	x14, x0, x13\n"
	"1:	cmp	x14, x1\n"
	"	b.hs	2f\n"
	"	dc	cvau, x14\n"
	"	add	x14, x14, x10\n"
	"	b	1b\n"
	"2:	dsb	ish\n"
	"	sub	x13, x12, #1\n"
	"	bic	x14, x0, x13\n"
	"3:	cmp	x14, x1\n"
	"	b.hs	4f\n"
	"	ic	ivau, x14\n"
	"	add	x14, x14, x12\n"
	"	b	3b\n"
	"4:	dsb	ish\n"
	"	isb\n"
	"	mov	x0, #0\n"
	"	ret\n"
	"5:	neg	x1, x1\n"			/* list of addresses */
	"	sub	x13, x10, #1\n"
	"	mov	x15, #0\n"
	"6:	cmp	x15, x1\n"
	"	b.hs	7f\n"
	"	ldr	x14, [x0, x15, lsl #3]\n"
	"	bic	x14, x14, x13\n"
	"	dc	cvau, x14\n"
	"	add	x15, x15, #1\n"
	"	b	6b\n"
	"7:	dsb	ish\n"
	"	sub	x13, x12, #1\n"
	"	mov	x15, #0\n"
	"8:	cmp	x15, x1\n"
	"	b.hs	9f\n"
	"	ldr	x14, [x0, x15, lsl #3]\n"
	"	bic	x14, x14, x13\n"
	"	ic	ivau, x14\n"
	"	add	x15, x15, #1\n"
	"	b	8b\n"
	"9:	dsb	ish\n"
	"	isb\n"
	"	mov	x0, #0\n"
	"	ret\n"
	"ocolos_ptrace_stub_end:\n"
	".popsection\n");
extern const uint8_t ocolos_ptrace_stub[], ocolos_ptrace_stub_end[], ocolos_ptrace_icache[];

_Static_assert(PTRACE_FR_RESTORE == 120 && PTRACE_FR_ACK == 96 && PTRACE_FR_TOKEN == 104 &&
	       PTRACE_FR_DONE == 88 && PTRACE_FR_RESULT == 80 && PTRACE_FR_WAITS == 112 &&
	       PTRACE_FR_TIMESPEC == 136 && PTRACE_FR_FULLMASK == 64,
	       "the stub's offsets are written out above");

/* The kernel's NT_ARM_SVE regset (arch/arm64/include/uapi/asm/ptrace.h,
 * not included: it clashes with <sys/ptrace.h>): a 16-byte header, the
 * registers from offset 16 in the signal frame's own layout. */
struct sve_header {
	uint32_t size, max_size;
	uint16_t vl, max_vl, flags, reserved;
};
#define SVE_HDR_REGS 16
#define SVE_FLAG_LIVE 1 /* SVE_PT_REGS_SVE: registers in SVE format */

struct a64_gp { uint64_t regs[31], sp, pc, pstate; }; /* NT_PRSTATUS: user_pt_regs */

struct ptrace_arch_saved {
	struct a64_gp gp;
	struct { __uint128_t v[32]; uint32_t fpsr, fpcr, res[2]; } fp; /* NT_FPREGSET */
	uint8_t *sve;		/* NT_ARM_SVE, when its state is live */
	size_t sve_len;
	uint32_t sve_record;	/* bytes of its sve_context in a frame (0: none) */
};

int ptrace_arch_set_syscall_result(struct ptrace_arch_saved *s, uint64_t v)
{
	(void)s; (void)v;
	return -1; /* not done: ptrace_arch_fit's restart rules would need it too */
}

size_t ptrace_arch_stub(const uint8_t **code)
{
	if (code)
		*code = ocolos_ptrace_stub;
	return (size_t)(ocolos_ptrace_stub_end - ocolos_ptrace_stub);
}

uint64_t ptrace_arch_icache_entry(void)
{
	return (uint64_t)(ocolos_ptrace_icache - ocolos_ptrace_stub);
}

static int getregset(pid_t tid, int note, void *buf, size_t len)
{
	struct iovec iov = { buf, len };
	return ptrace(PTRACE_GETREGSET, tid, (void *)(long)note, &iov) == 0 ? 0 : -1;
}

static int setregset(pid_t tid, int note, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };
	return ptrace(PTRACE_SETREGSET, tid, (void *)(long)note, &iov) == 0 ? 0 : -1;
}

/* The thread's SVE registers, if they are live (a thread that has run SVE
 * instructions since its last system call). No SVE: nothing. */
static void save_sve(pid_t tid, struct ptrace_arch_saved *s)
{
	struct sve_header h;
	if (getregset(tid, NT_ARM_SVE, &h, sizeof(h)) || (h.flags & SVE_FLAG_LIVE) == 0 ||
	    h.size <= SVE_HDR_REGS || !(s->sve = malloc(h.size)))
		return;
	if (getregset(tid, NT_ARM_SVE, s->sve, h.size)) {
		free(s->sve);
		s->sve = NULL;
		return;
	}
	s->sve_len = h.size;
	uint32_t vq = sve_vq_from_vl(h.vl);
	s->sve_record = (SVE_SIG_CONTEXT_SIZE(vq) + 15) & ~15u;
}

struct ptrace_arch_saved *ptrace_arch_save(pid_t tid)
{
	struct ptrace_arch_saved *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (getregset(tid, NT_PRSTATUS, &s->gp, sizeof(s->gp)) ||
	    getregset(tid, NT_FPREGSET, &s->fp, sizeof(s->fp))) {
		free(s);
		return NULL;
	}
	save_sve(tid, s);
	return s;
}

void ptrace_arch_saved_free(struct ptrace_arch_saved *s)
{
	if (s)
		free(s->sve);
	free(s);
}

uint64_t ptrace_arch_pc(const struct ptrace_arch_saved *s)
{
	return s->gp.pc;
}

uint64_t ptrace_arch_sp(const struct ptrace_arch_saved *s)
{
	return s->gp.sp;
}

/* Bytes the mcontext's extension area (__reserved) needs for `s`. */
static size_t ext_bytes(const struct ptrace_arch_saved *s)
{
	return sizeof(struct fpsimd_context) + s->sve_record + sizeof(struct _aarch64_ctx);
}

int ptrace_arch_fit(const struct ptrace_arch_saved *s, int memfd)
{
	if (ext_bytes(s) > sizeof(((mcontext_t *)0)->__reserved))
		return 0; /* SVE state too large for the frame: it would be lost */
	uint32_t insn = 0;
	if (proc_mem_read(memfd, s->gp.pc, &insn, 4) == 0 && insn == 0xd4000001u)
		return 1; /* on an svc: maybe a restart (see above) */
	return 2;
}

static void put_ctx(uint8_t *p, uint32_t magic, uint32_t size)
{
	struct _aarch64_ctx h = { .magic = magic, .size = size };
	memcpy(p, &h, sizeof(h));
}

int ptrace_arch_frame(const struct ptrace_arch_saved *s, const uint8_t *head, uint64_t *base,
		      uint8_t **frame, size_t *len)
{
	uint64_t b = (s->gp.sp - GAP - FRAME_BYTES) & ~63ull;
	size_t n = (size_t)(s->gp.sp - GAP - b);
	uint8_t *fr = calloc(1, n);
	if (!fr)
		return -1;
	memcpy(fr, head, PTRACE_FR_HEAD);
	uint64_t w = b + FR_SIGFRAME;
	memcpy(fr + PTRACE_FR_RESTORE, &w, 8);
	ucontext_t uc;
	memset(&uc, 0, sizeof(uc));
	uc.uc_stack.ss_flags = SS_DISABLE; /* overwritten by the stub */
	memcpy(uc.uc_mcontext.regs, s->gp.regs, sizeof(s->gp.regs));
	uc.uc_mcontext.sp = s->gp.sp;
	uc.uc_mcontext.pc = s->gp.pc;
	uc.uc_mcontext.pstate = s->gp.pstate;
	uint8_t *ext = (uint8_t *)uc.uc_mcontext.__reserved;
	struct fpsimd_context fc;
	memset(&fc, 0, sizeof(fc));
	fc.head.magic = FPSIMD_MAGIC;
	fc.head.size = sizeof(fc);
	fc.fpsr = s->fp.fpsr;
	fc.fpcr = s->fp.fpcr;
	memcpy(fc.vregs, s->fp.v, sizeof(fc.vregs));
	memcpy(ext, &fc, sizeof(fc));
	size_t off = sizeof(fc);
	if (s->sve && ext_bytes(s) <= sizeof(uc.uc_mcontext.__reserved)) {
		const struct sve_header *h = (const struct sve_header *)s->sve;
		uint32_t vq = sve_vq_from_vl(h->vl);
		size_t regs = SVE_SIG_REGS_SIZE(vq);
		put_ctx(ext + off, SVE_MAGIC, s->sve_record);
		uint16_t vl = h->vl;
		memcpy(ext + off + offsetof(struct sve_context, vl), &vl, 2);
		if (SVE_HDR_REGS + regs <= s->sve_len)
			memcpy(ext + off + SVE_SIG_REGS_OFFSET, s->sve + SVE_HDR_REGS, regs);
		off += s->sve_record;
	}
	put_ctx(ext + off, 0, 0); /* the terminator */
	memcpy(fr + FR_UC, &uc, sizeof(uc));
	*base = b;
	*frame = fr;
	*len = n;
	return 0;
}

int ptrace_arch_enter(pid_t tid, const struct ptrace_arch_saved *s, uint64_t stub, uint64_t base)
{
	struct a64_gp gp = s->gp;
	gp.pc = stub;
	gp.sp = base;
	/* BTYPE (PSTATE bits 11:10) from an indirect branch the thread was
	 * stopped right after must not apply to the stub's first
	 * instruction; rt_sigreturn puts the thread's own back. */
	gp.pstate &= ~(3ull << 10);
	return setregset(tid, NT_PRSTATUS, &gp, sizeof(gp));
}

int ptrace_arch_restore(pid_t tid, const struct ptrace_arch_saved *s)
{
	if (setregset(tid, NT_FPREGSET, &s->fp, sizeof(s->fp)))
		return -1;
	if (s->sve && setregset(tid, NT_ARM_SVE, s->sve, s->sve_len))
		return -1;
	return setregset(tid, NT_PRSTATUS, &s->gp, sizeof(s->gp));
}

int ptrace_arch_state(pid_t tid, struct proc_thread_state *st)
{
	struct a64_gp gp;
	if (getregset(tid, NT_PRSTATUS, &gp, sizeof(gp)))
		return -1;
	*st = (struct proc_thread_state){ .pc = gp.pc, .sp = gp.sp, .nregs = 31, .tid = (uint32_t)tid };
	memcpy(st->regs, gp.regs, sizeof(gp.regs));
	uint64_t tls[2] = { 0 }; /* tpidr_el0 (and tpidr2_el0 on newer kernels) */
	if (getregset(tid, NT_ARM_TLS, tls, sizeof(tls)) == 0)
		st->tp = tls[0];
	return 0;
}
#endif /* __aarch64__ */

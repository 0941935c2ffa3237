/*
 * Running a system call or a function call inside a stopped thread of
 * another process, through a stub that restores the thread by itself (the
 * protocol is in ptrace.c's opening comment and at run_stub(); the stub,
 * the frame it runs on and the registers are the architecture's:
 * ptrace_x86.c, ptrace_a64.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "proc/proc.h"
#include "proc/ptrace.h"
#include "proc/ptrace_arch.h"

/*
 * Injected work runs through a stub, so that it stays correct if we die at
 * any moment (the kernel then detaches the thread and it simply runs on).
 * Registers alone cannot give that: a thread resumed in an injected state
 * runs on from wherever the tracer left it, and a thread left in a
 * signal-delivery-stop (the SIGTRAP of a single-step or of a breakpoint)
 * gets that SIGTRAP when its tracer dies, which kills the process.
 *
 * So the thread, while in an interrupt stop (which delivers nothing when the
 * tracer goes), gets only its PC = the stub and its SP = a frame we wrote
 * below its stack pointer, and is let go at once. The stub blocks signals,
 * does the system call or call the frame names, publishes the result
 * (done = a per-run token), waits a bounded time for our acknowledgement,
 * then restores everything from the frame and returns into the original
 * code (x86-64: pops its registers and `ret`s; AArch64: rt_sigreturn from
 * a signal frame we built). Whether or not we are still there, the thread
 * ends where it was, with its registers, vector state and signal mask.
 *
 * We read the result only while holding the thread inside that wait (its
 * frame is then still live), and acknowledge it there; if we are late, the
 * stub marks the result abandoned (done = ~token) before leaving.
 */

/* The stopped, live thread best suited to run the stub (the first of the
 * best), with its state in *saved; NULL if none can be read. */
static struct proc_ptrace_thread *worker(struct proc_ptrace *pt, int memfd,
					 struct ptrace_arch_saved **saved)
{
	struct proc_ptrace_thread *best = NULL;
	int best_fit = -1;
	*saved = NULL;
	for (size_t i = 0; i < pt->n; i++) {
		struct proc_ptrace_thread *t = &pt->t[i];
		/* Not a thread held at an event stop, if another will do: its
		 * system call has done its work but not returned (rax reads the
		 * placeholder -ENOSYS); a stub run there and the thread put back
		 * as read makes clone3 "fail" with ENOSYS after creating the
		 * child, glibc retries it as clone(), and the new thread starts
		 * twice (found by bench/spawn_check.c under ocolos-agent --every). */
		if (!t->stopped || t->gone || !t->seized || t->event)
			continue;
		struct ptrace_arch_saved *s = ptrace_arch_save(t->tid);
		if (!s)
			continue;
		int fit = ptrace_arch_fit(s, memfd);
		if (fit > best_fit) {
			ptrace_arch_saved_free(*saved);
			*saved = s;
			best = t;
			best_fit = fit;
		} else {
			ptrace_arch_saved_free(s);
		}
		if (fit >= 2)
			break; /* as good as it gets */
	}
	/* Every thread is inside a clone or fork (a program that does little
	 * else): take one, and put it back returning what the kernel would
	 * have, the new thread's or process's id. */
	for (size_t i = 0; !best && i < pt->n; i++) {
		struct proc_ptrace_thread *t = &pt->t[i];
		unsigned long child;
		if (!t->stopped || t->gone || !t->seized ||
		    (t->event != PTRACE_EVENT_CLONE && t->event != PTRACE_EVENT_FORK &&
		     t->event != PTRACE_EVENT_VFORK) ||
		    ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &child) != 0)
			continue;
		struct ptrace_arch_saved *s = ptrace_arch_save(t->tid);
		if (s && ptrace_arch_fit(s, memfd) > 0 &&
		    ptrace_arch_set_syscall_result(s, (uint64_t)child) == 0) {
			*saved = s;
			best = t;
		} else {
			ptrace_arch_saved_free(s);
		}
	}
	return best;
}

size_t proc_ptrace_stub_bytes(const uint8_t **code)
{
	return ptrace_arch_stub(code);
}

uint64_t proc_ptrace_icache_routine(uint64_t stub)
{
	uint64_t off = ptrace_arch_icache_entry();
	return stub && off ? stub + off : 0;
}

size_t proc_ptrace_states(const struct proc_ptrace *pt, struct proc_thread_state *out,
			    size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < pt->n && n < max; i++)
		if (pt->t[i].stopped && !pt->t[i].gone && ptrace_arch_state(pt->t[i].tid, &out[n]) == 0)
			n++;
	return n;
}

static uint64_t make_token(pid_t tid)
{
	uint64_t x = core_now_ns() ^ ((uint64_t)tid << 32) ^ (uint64_t)(uintptr_t)&x;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x | 1; /* the futex compares the low half with 0 */
}

/* Send thread `t` (state `s`) into the stub with the frame for this work;
 * from the moment this returns 0 it completes and resumes by itself. */
static int launch(struct proc_ptrace *pt, struct proc_ptrace_thread *t,
		  const struct ptrace_arch_saved *s, int memfd, uint64_t stub, int kind,
		  uint64_t fn, const uint64_t args[6], uint64_t token, uint64_t *base,
		  struct core_err *err)
{
	uint64_t head[PTRACE_FR_HEAD / 8] = { 0 };
	head[PTRACE_FR_KIND / 8] = (uint64_t)kind;
	head[PTRACE_FR_FN / 8] = fn;
	for (int i = 0; i < 6; i++)
		head[PTRACE_FR_ARGS / 8 + i] = args[i];
	head[PTRACE_FR_FULLMASK / 8] = ~0ull;
	head[PTRACE_FR_TOKEN / 8] = token;
	head[PTRACE_FR_WAITS / 8] = PTRACE_STUB_WAITS;
	head[PTRACE_FR_TIMESPEC / 8 + 1] = PTRACE_STUB_WAIT_NS;
	uint8_t *fr = NULL;
	size_t len = 0;
	if (ptrace_arch_frame(s, (const uint8_t *)head, base, &fr, &len))
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	int wrc = proc_mem_write(memfd, *base, fr, len);
	free(fr);
	if (wrc)
		return core_errf(err, OCOLOS_EATTACH, "cannot write the stack of thread %d", (int)t->tid);
	if (ptrace_arch_enter(t->tid, s, stub, *base))
		return core_errf(err, OCOLOS_EATTACH, "cannot set the registers of thread %d", (int)t->tid);
	/* From here on the thread completes and resumes by itself. */
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)t->pending_sig);
	t->seized = 0;
	t->pending_sig = 0;
	(void)pt;
	return 0;
}

/*
 * Run the work in a stopped thread of `pt` through the stub at `stub`. The
 * thread is let go as soon as its registers point at the stub; it is held
 * again only to read the result.
 */
static int run_stub(struct proc_ptrace *pt, int memfd, uint64_t stub, int kind, uint64_t fn,
		    const uint64_t args[6], uint32_t timeout_ms, int64_t *ret, struct core_err *err)
{
	struct ptrace_arch_saved *saved = NULL;
	struct proc_ptrace_thread *t = worker(pt, memfd, &saved);
	if (!t)
		return core_errf(err, OCOLOS_ENOPROC, "no stopped thread to run %s in",
				 kind ? "a call" : "a system call");
	if (!stub) {
		ptrace_arch_saved_free(saved);
		return core_errf(err, OCOLOS_ENOTSUP, "no room for the injection stub in process %d "
				 "(no executable mapping with a free tail)", (int)pt->pid);
	}
	pid_t tid = t->tid;
	uint64_t token = make_token(tid), base = 0;
	/* Where the thread was, for the message of a call that does not
	 * return: the code it was stopped in, and the first words of its
	 * stack (the frames it was in). */
	uint64_t from_pc = ptrace_arch_pc(saved), from_words[64] = { 0 };
	if (proc_mem_read(memfd, ptrace_arch_sp(saved), from_words, sizeof(from_words)))
		memset(from_words, 0, sizeof(from_words));
	/* Kept for an abandoned system call: the mask to put back by hand. */
	uint64_t sigmask = 0;
	int have_mask = ptrace(PTRACE_GETSIGMASK, tid, (void *)8, &sigmask) == 0;
	int rc = launch(pt, t, saved, memfd, stub, kind, fn, args, token, &base, err);
	if (rc) {
		ptrace_arch_saved_free(saved);
		return rc;
	}

	uint64_t deadline = core_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint64_t done = 0, left_pc = 0;
	long nap = 10000;
	for (;;) {
		if (proc_mem_read(memfd, base + PTRACE_FR_DONE, &done, sizeof(done))) {
			ptrace_arch_saved_free(saved);
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
		ptrace_arch_saved_free(saved);
		return core_errf(err, OCOLOS_EATTACH, "thread %d could not be held again after %s "
				 "injected into it", (int)tid, kind ? "a call" : "a system call");
	}
	uint64_t res[2] = { 0, 0 }; /* result, done */
	if (proc_mem_read(memfd, base + PTRACE_FR_RESULT, res, sizeof(res))) {
		rc = core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)pt->pid);
	} else if (res[1] == token) {
		/* Still inside the stub's wait: its frame is live. */
		*ret = (int64_t)res[0];
		if (proc_mem_write(memfd, base + PTRACE_FR_ACK, &token, sizeof(token)))
			rc = core_errf(err, OCOLOS_EIO, "cannot write the stack of thread %d", (int)tid);
	} else if (res[1] == ~token) {
		rc = core_errf(err, OCOLOS_ETIMEDOUT, "thread %d finished %s injected into it, but "
			       "this process was too slow to read its result (a loaded machine?); "
			       "retry", (int)tid, kind ? "a call" : "a system call");
	} else if (kind) {
		/* A function call not done within the time limit: it is left
		 * to finish by itself (the stub then restores the thread), never
		 * cut short. A library function stopped halfway keeps what it
		 * held: libgcc's object mutex, taken by __deregister_frame_info
		 * and released only on its return, stayed owned by a thread that
		 * had been put back in its own code, and every later throw in the
		 * program waited for it (the 1,000-round soak, round 921). A call
		 * that is only slow (a lock another running thread holds for a
		 * while) completes; its result is unknown to us. */
		struct ptrace_arch_saved *now = ptrace_arch_save(tid);
		left_pc = now ? ptrace_arch_pc(now) : 0;
		ptrace_arch_saved_free(now);
		pt->left = (struct proc_call_left){ tid, base, token };
		rc = OCOLOS_ETIMEDOUT; /* the message once the thread runs again */
	} else {
		/* A system call not done within the time limit. Put the thread
		 * back where it was, as the stub would have, so that it runs on;
		 * what the system call did is left as it is. Only while it is
		 * still in the stub or below its frame: anywhere else it has left. */
		struct ptrace_arch_saved *now = ptrace_arch_save(tid);
		uint64_t stub_len = ptrace_arch_stub(NULL);
		if (now && have_mask &&
		    (ptrace_arch_sp(now) < base ||
		     (ptrace_arch_pc(now) >= stub && ptrace_arch_pc(now) < stub + stub_len)) &&
		    ptrace_arch_restore(tid, saved) == 0)
			ptrace(PTRACE_SETSIGMASK, tid, (void *)8, &sigmask);
		ptrace_arch_saved_free(now);
		rc = core_errf(err, OCOLOS_ETIMEDOUT,
			       "a system call injected into thread %d did not return within %u ms; "
			       "abandoned", (int)tid, timeout_ms);
	}
	proc_ptrace_resume(one, NULL);
	ptrace_arch_saved_free(saved);
	if (pt->left.tid == tid && pt->left.token == token) {
		/* Named after the thread is let go: reading the libraries'
		 * symbols takes a while, and it may hold a lock others wait for. */
		/* One pass over the libraries' symbols (each pass reads their
		 * files): where it is now, where it was, and the library
		 * functions its stack's first words name — the frames it was
		 * in, when they are libc's or libgcc's. */
		uint64_t addrs[2 + 64];
		char (*names)[PROC_SYMBOL_LEN] = calloc(2 + 64, sizeof(*names));
		char frames[480] = "";
		addrs[0] = left_pc;
		addrs[1] = from_pc;
		memcpy(addrs + 2, from_words, sizeof(from_words));
		size_t len = 0, named = 0;
		if (names)
			proc_symbols_at(pt->pid, addrs, 2 + 64, names);
		for (size_t i = 2; names && i < 2 + 64 && named < 4 && len + 1 < sizeof(frames); i++) {
			/* A return address is never a function's first byte. */
			if (names[i][0] && !strstr(names[i], "+0x0")) {
				int k = snprintf(frames + len, sizeof(frames) - len, "%s%s", named ? ", " : "",
						 names[i]);
				len += k > 0 ? (size_t)k : 0;
				named++;
			}
		}
		const char *where = names ? names[0] : "", *from = names && names[1][0] ? names[1]
										     : "(no library function)";
		rc = core_errf(err, OCOLOS_ETIMEDOUT,
			       "a call injected into thread %d did not return within %u ms (now at "
			       "0x%llx %s; a lock it needs is held?); it is left to finish by itself "
			       "and its result is unknown (the thread had been stopped at 0x%llx %s%s%s)",
			       (int)tid, timeout_ms, (unsigned long long)left_pc, where,
			       (unsigned long long)from_pc, from, named ? "; its stack names " : "", frames);
		free(names);
	}
	return rc;
}

int proc_ptrace_syscall(struct proc_ptrace *pt, int memfd, uint64_t stub, long nr,
			  const uint64_t args[6], int64_t *ret, struct core_err *err)
{
	return run_stub(pt, memfd, stub, 0, (uint64_t)nr, args, 2000, ret, err);
}

int proc_ptrace_call(struct proc_ptrace *pt, int memfd, uint64_t stub, uint64_t fn,
		       const uint64_t args[6], uint32_t timeout_ms, uint64_t *ret,
		       struct core_err *err)
{
	int64_t r = 0;
	int rc = run_stub(pt, memfd, stub, 1, fn, args, timeout_ms, &r, err);
	*ret = (uint64_t)r;
	return rc;
}

/*
 * ptrace injector primitives, for a process that was not built against
 * libocolos: stopping all or one of its threads, running a system call or a
 * function call in a stopped thread, and letting everything go again.
 *
 * Protocol. PTRACE_SEIZE (not ATTACH: no SIGSTOP is sent, so the target's
 * job control and its parent see nothing) with PTRACE_O_TRACECLONE, then
 * PTRACE_INTERRUPT each thread and wait for its stop. A thread that clones
 * meanwhile reports PTRACE_EVENT_CLONE and its child starts attached and
 * stopped; /proc/PID/task is re-read until a pass finds nothing new, so no
 * thread created during the stop runs user code. A thread that receives a
 * signal while we hold it reports a signal-delivery-stop; the signal is
 * remembered and delivered when the thread is detached.
 *
 * If the tracer dies, the kernel detaches its tracees, which then resume:
 * the target cannot stay stopped because of us. (A tracer killed in the
 * middle of a remote call leaves that one thread with our registers: the
 * window is microseconds and exists only before the world is stopped.)
 *
 * Injected system calls and calls run in a thread whose registers are saved
 * first and restored exactly after. If the thread was stopped inside an
 * interrupted system call, the kernel decides whether to restart it only
 * when the thread resumes, from the registers it then has — the restored
 * originals — so the interrupted call restarts as if nothing happened.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "inject/ptrace.h"

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

static int find_tid(const struct inject_ptrace *pt, pid_t tid)
{
	for (size_t i = 0; i < pt->n; i++)
		if (pt->t[i].tid == tid)
			return (int)i;
	return -1;
}

static int add_thread(struct inject_ptrace *pt, pid_t tid, int seized)
{
	if (core_grow((void **)&pt->t, &pt->cap, pt->n, sizeof(*pt->t)))
		return -1;
	pt->t[pt->n++] = (struct inject_ptrace_thread){ .tid = tid, .seized = seized };
	return 0;
}

/* A thread that has exited but is not reaped yet (state Z or X). */
static int thread_dead(pid_t pid, pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* the name may contain anything */
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

/* Seize and interrupt one thread. 0, 1 if it is gone, -1 on error. */
static int seize(struct inject_ptrace *pt, pid_t tid, struct core_err *err)
{
	if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(long)PTRACE_O_TRACECLONE) != 0) {
		/* EPERM is also what a zombie gives: it exited, it is not refusing. */
		if (errno == ESRCH || thread_dead(pt->pid, tid))
			return 1;
		int e = errno;
		core_errf(err, OCOLOS_EATTACH,
			  "cannot ptrace thread %d of process %d: %s; run as the same user with "
			  "ptrace allowed (kernel.yama.ptrace_scope=0, or CAP_SYS_PTRACE), and make "
			  "sure no debugger is attached", (int)tid, (int)pt->pid, strerror(e));
		return -1;
	}
	if (add_thread(pt, tid, 1)) {
		ptrace(PTRACE_DETACH, tid, 0, 0);
		core_errf(err, OCOLOS_ENOMEM, "out of memory");
		return -1;
	}
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0 && errno != ESRCH) {
		core_errf(err, OCOLOS_EATTACH, "PTRACE_INTERRUPT of thread %d: %s", (int)tid, strerror(errno));
		return -1;
	}
	return 0;
}

/* Handle one wait status of a tracee. */
static void on_status(struct inject_ptrace *pt, pid_t tid, int status)
{
	int i = find_tid(pt, tid);
	if (i < 0) { /* a clone child reporting before its parent's event */
		if (add_thread(pt, tid, 1))
			return;
		i = (int)pt->n - 1;
	}
	struct inject_ptrace_thread *t = &pt->t[i];
	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		t->gone = 1;
		return;
	}
	if (!WIFSTOPPED(status))
		return;
	int sig = WSTOPSIG(status), event = status >> 16;
	t->stopped = 1;
	if (event == PTRACE_EVENT_CLONE) {
		unsigned long child;
		if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) == 0 && find_tid(pt, (pid_t)child) < 0)
			add_thread(pt, (pid_t)child, 1); /* attached by the kernel; stops by itself */
	} else if (event == 0 && sig != SIGTRAP && sig != SIGSTOP) {
		t->pending_sig = sig; /* a signal for the target: deliver it on detach */
	}
}

/* Wait until every known thread is stopped or gone, or the deadline. Waits
 * name each thread: waitpid(-1) would reap the host program's own children
 * (a supervisor's target among them). */
static int wait_all_stopped(struct inject_ptrace *pt, uint64_t deadline)
{
	for (;;) {
		int all = 1, progress = 0;
		for (size_t i = 0; i < pt->n; i++) {
			struct inject_ptrace_thread *t = &pt->t[i];
			if (t->stopped || t->gone)
				continue;
			int status;
			pid_t w = waitpid(t->tid, &status, __WALL | WNOHANG);
			if (w == t->tid) {
				on_status(pt, w, status); /* may append to pt->t */
				progress = 1;
			} else if (w < 0 && errno == ECHILD) {
				pt->t[i].gone = 1; /* exited and reaped, or never ours */
			}
			all &= pt->t[i].stopped || pt->t[i].gone;
		}
		if (all)
			return 0;
		if (core_now_ns() > deadline)
			return -1;
		if (!progress) {
			struct timespec ts = { 0, 50000 };
			nanosleep(&ts, NULL);
		}
	}
}

/* Seize threads not known yet. Returns how many were new, or -1. */
static int seize_new(struct inject_ptrace *pt, int only_one, struct core_err *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pt->pid);
	DIR *d = opendir(path);
	if (!d)
		return core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)pt->pid), -1;
	int added = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0 || find_tid(pt, tid) >= 0)
			continue;
		int rc = seize(pt, tid, err);
		if (rc < 0) {
			closedir(d);
			return -1;
		}
		added += rc == 0;
		if (only_one && added)
			break;
	}
	closedir(d);
	return added;
}

int inject_ptrace_stop(pid_t pid, int all, uint32_t timeout_ms,
		       struct inject_ptrace **out, struct core_err *err)
{
	*out = NULL;
	struct inject_ptrace *pt = calloc(1, sizeof(*pt));
	if (!pt)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	pt->pid = pid;
	uint64_t deadline = core_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int rc = 0;
	for (;;) {
		int added = seize_new(pt, !all, err);
		if (added < 0) {
			rc = err && err->code ? err->code : OCOLOS_EATTACH;
			break;
		}
		if (wait_all_stopped(pt, deadline)) {
			rc = core_errf(err, OCOLOS_ESTOP, "threads of process %d did not stop within %u ms",
				       (int)pid, timeout_ms);
			break;
		}
		if (!all || added == 0)
			break;
	}
	size_t live = 0;
	for (size_t i = 0; i < pt->n; i++)
		live += !pt->t[i].gone;
	if (!rc && !live)
		rc = core_errf(err, OCOLOS_ENOPROC, "process %d exited", (int)pid);
	if (rc) {
		inject_ptrace_resume(pt, NULL);
		return rc;
	}
	*out = pt;
	return 0;
}

void inject_ptrace_resume(struct inject_ptrace *pt, uint64_t *released_ns)
{
	if (!pt)
		return;
	if (released_ns)
		*released_ns = core_now_ns();
	for (size_t i = 0; i < pt->n; i++) {
		struct inject_ptrace_thread *t = &pt->t[i];
		if (!t->seized || t->gone)
			continue;
		if (ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)t->pending_sig) != 0 && errno == ESRCH &&
		    !t->stopped) {
			/* Not in a ptrace stop yet (a thread still running towards
			 * its first stop): wait for that stop, then detach. */
			int status;
			uint64_t deadline = core_now_ns() + 1000000000ull;
			pid_t w;
			while ((w = waitpid(t->tid, &status, __WALL | WNOHANG)) == 0 &&
			       core_now_ns() < deadline) {
				struct timespec ts = { 0, 100000 };
				nanosleep(&ts, NULL);
			}
			if (w == t->tid && WIFSTOPPED(status))
				ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)t->pending_sig);
		}
	}
	free(pt->t);
	free(pt);
}

#if !defined(__x86_64__)
/* Injecting system calls and calls is x86-64 only (registers, `syscall`
 * gadget, int3); target_open() refuses other processes elsewhere. */
#define PTRACE_X86_ONLY(err)                                                   \
	core_errf(err, OCOLOS_ENOTSUP, "optimizing another process (ptrace injector) is "  \
		  "implemented for x86-64 only; on this machine link libocolos into the "  \
		  "program and call ocolos_optimize_self()")
int inject_ptrace_syscall(struct inject_ptrace *pt, uint64_t gadget, long nr,
			  const uint64_t args[6], int64_t *ret, struct core_err *err)
{
	(void)pt; (void)gadget; (void)nr; (void)args; (void)ret;
	return PTRACE_X86_ONLY(err);
}

int inject_ptrace_call(struct inject_ptrace *pt, int memfd, uint64_t fn, uint64_t arg,
		       uint64_t trap, uint32_t timeout_ms, uint64_t *ret, struct core_err *err)
{
	(void)pt; (void)memfd; (void)fn; (void)arg; (void)trap; (void)timeout_ms; (void)ret;
	return PTRACE_X86_ONLY(err);
}

size_t inject_ptrace_states(const struct inject_ptrace *pt, struct inject_thread_state *out,
			    size_t max)
{
	(void)pt; (void)out; (void)max;
	return 0; /* nothing known: no entry may be patched */
}
#else
size_t inject_ptrace_states(const struct inject_ptrace *pt, struct inject_thread_state *out,
			    size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < pt->n && n < max; i++) {
		struct user_regs_struct r;
		if (!pt->t[i].stopped || pt->t[i].gone ||
		    ptrace(PTRACE_GETREGS, pt->t[i].tid, 0, &r) != 0)
			continue;
		out[n++] = (struct inject_thread_state){ r.rip, r.rsp };
	}
	return n;
}

/* First stopped, live thread. */
static struct inject_ptrace_thread *worker(struct inject_ptrace *pt)
{
	for (size_t i = 0; i < pt->n; i++)
		if (pt->t[i].stopped && !pt->t[i].gone)
			return &pt->t[i];
	return NULL;
}

/* Resume `t` with `req` (PTRACE_SINGLESTEP / PTRACE_CONT) until it stops
 * with SIGTRAP. Other signals are kept for delivery on detach; a fault
 * (SIGSEGV, SIGBUS, SIGILL, SIGFPE) is returned as -sig. */
static int run_until_trap(struct inject_ptrace *pt, struct inject_ptrace_thread *t, int req,
			  uint64_t deadline)
{
	if (ptrace(req, t->tid, 0, 0) != 0)
		return -1;
	for (;;) {
		int status;
		pid_t w = waitpid(t->tid, &status, __WALL | WNOHANG);
		if (w == 0) {
			if (core_now_ns() > deadline) {
				ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
				waitpid(t->tid, &status, __WALL);
				return -2;
			}
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
			continue;
		}
		if (w < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
			t->gone = 1;
			return -1;
		}
		int sig = WSTOPSIG(status);
		if (sig == SIGTRAP && (status >> 16) == 0)
			return 0;
		if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE)
			return -sig;
		if ((status >> 16) == 0 && sig != SIGSTOP)
			t->pending_sig = sig;
		if (ptrace(req == PTRACE_SINGLESTEP ? PTRACE_SINGLESTEP : PTRACE_CONT, t->tid, 0, 0) != 0)
			return -1;
	}
}

int inject_ptrace_syscall(struct inject_ptrace *pt, uint64_t gadget, long nr,
			  const uint64_t args[6], int64_t *ret, struct core_err *err)
{
	struct inject_ptrace_thread *t = worker(pt);
	struct user_regs_struct saved, r;
	if (!t || ptrace(PTRACE_GETREGS, t->tid, 0, &saved) != 0)
		return core_errf(err, OCOLOS_ENOPROC, "no stopped thread to run a system call in");
	r = saved;
	r.rip = gadget;
	r.rax = (uint64_t)nr;
	r.orig_rax = (uint64_t)-1;
	r.rdi = args[0]; r.rsi = args[1]; r.rdx = args[2];
	r.r10 = args[3]; r.r8 = args[4]; r.r9 = args[5];
	int rc = ptrace(PTRACE_SETREGS, t->tid, 0, &r);
	if (!rc)
		rc = run_until_trap(pt, t, PTRACE_SINGLESTEP, core_now_ns() + 2000000000ull);
	if (!rc && ptrace(PTRACE_GETREGS, t->tid, 0, &r) == 0)
		*ret = (int64_t)r.rax;
	ptrace(PTRACE_SETREGS, t->tid, 0, &saved);
	if (rc)
		return core_errf(err, OCOLOS_EATTACH, "system call %ld injected into thread %d failed (%d)",
				 nr, (int)t->tid, rc);
	return 0;
}

int inject_ptrace_call(struct inject_ptrace *pt, int memfd, uint64_t fn, uint64_t arg,
		       uint64_t trap, uint32_t timeout_ms, uint64_t *ret, struct core_err *err)
{
	struct inject_ptrace_thread *t = worker(pt);
	struct user_regs_struct saved, r;
	if (!t || ptrace(PTRACE_GETREGS, t->tid, 0, &saved) != 0)
		return core_errf(err, OCOLOS_ENOPROC, "no stopped thread to run a call in");
	r = saved;
	/* Below the red zone, 16-aligned, then the return address: at entry
	 * rsp + 8 is 16-aligned as the ABI wants. */
	uint64_t sp = ((saved.rsp - 1024) & ~15ull) - 8;
	if (inject_mem_write(memfd, sp, &trap, sizeof(trap)))
		return core_errf(err, OCOLOS_EATTACH, "cannot write the stack of thread %d", (int)t->tid);
	r.rsp = sp;
	r.rip = fn;
	r.rdi = arg;
	r.rax = 0;
	r.orig_rax = (uint64_t)-1; /* not in a system call: no restart logic */
	int rc = ptrace(PTRACE_SETREGS, t->tid, 0, &r);
	if (!rc)
		rc = run_until_trap(pt, t, PTRACE_CONT, core_now_ns() + (uint64_t)timeout_ms * 1000000ull);
	if (!rc && ptrace(PTRACE_GETREGS, t->tid, 0, &r) == 0) {
		*ret = r.rax;
		if (r.rip != trap + 1) /* int3 reports rip after itself */
			rc = -3;
	}
	ptrace(PTRACE_SETREGS, t->tid, 0, &saved);
	if (rc == -2)
		return core_errf(err, OCOLOS_ETIMEDOUT,
				 "a call injected into thread %d did not return within %u ms (a lock it "
				 "needs is held?); abandoned", (int)t->tid, timeout_ms);
	if (rc)
		return core_errf(err, OCOLOS_EATTACH, "a call injected into thread %d failed (%d)",
				 (int)t->tid, rc);
	return 0;
}

#endif /* __x86_64__ */

uint64_t inject_ptrace_find_gadget(pid_t pid, const struct procmaps *m, int memfd)
{
	/* Any `syscall` (0f 05) in an executable mapping; the vdso is first
	 * choice (tiny, always present), then the rest (libc has many). */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < m->n; i++) {
			const struct procmaps_entry *e = &m->v[i];
			if (e->perms[2] != 'x' || e->end - e->start > (64ull << 20))
				continue;
			if ((pass == 0) != (strcmp(e->path, "[vdso]") == 0))
				continue;
			for (uint64_t a = e->start; a < e->end; a += 4096) {
				uint8_t buf[4096 + 1];
				if (inject_mem_read(memfd, a, buf, 4096))
					break;
				buf[4096] = 0;
				for (int k = 0; k < 4096; k++)
					if (buf[k] == 0x0f && buf[k + 1] == 0x05)
						return a + (uint64_t)k;
			}
		}
	}
	(void)pid;
	return 0;
}

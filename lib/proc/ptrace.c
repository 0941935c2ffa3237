/*
 * ptrace injector primitives, for a process that was not built against
 * libocolos: stopping all or one of its threads, running a system call or a
 * function call in a stopped thread (ptrace_stub.c; the stub's placement:
 * stub_place.c), and letting everything go again.
 *
 * Protocol. PTRACE_SEIZE (not ATTACH: no SIGSTOP is sent, so the target's
 * job control and its parent see nothing) — with PTRACE_O_TRACECLONE when
 * every thread is to stop, not when one is held — then PTRACE_INTERRUPT
 * each thread and wait for its stop. A thread that clones
 * meanwhile reports PTRACE_EVENT_CLONE and its child starts attached and
 * stopped; /proc/PID/task is re-read until a pass finds nothing new, so no
 * thread created during the stop runs user code. A thread that receives a
 * signal while we hold it reports a signal-delivery-stop; the signal is
 * remembered and delivered when the thread is detached.
 *
 * If the tracer dies, the kernel detaches its tracees, which then resume:
 * the target cannot stay stopped because of us. What we changed stays, so
 * a thread may never be left in a state it cannot resume from: injected
 * system calls and calls run through a stub that restores the thread by
 * itself (see ptrace_stub.c), and nothing single-steps or stops on a
 * breakpoint (a SIGTRAP stop delivers that SIGTRAP when the tracer dies).
 *
 * A thread stopped inside an interrupted system call gets it restarted as
 * the kernel would have, so the call restarts as if nothing happened
 * (x86-64: resume_regs() in ptrace_x86.c; AArch64: the kernel rewinds the
 * PC before the stop, see ptrace_a64.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "proc/proc.h"
#include "proc/ptrace.h"

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

static int find_tid(const struct proc_ptrace *pt, pid_t tid)
{
	for (size_t i = 0; i < pt->n; i++)
		if (pt->t[i].tid == tid)
			return (int)i;
	return -1;
}

static int add_thread(struct proc_ptrace *pt, pid_t tid, int seized)
{
	if (core_grow((void **)&pt->t, &pt->cap, pt->n, sizeof(*pt->t)))
		return -1;
	pt->t[pt->n++] = (struct proc_ptrace_thread){ .tid = tid, .seized = seized };
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

/* Seize and interrupt one thread; with `follow`, the threads it creates
 * are attached too (a stop of every thread must hold those). Holding one
 * thread only, they must not be: a thread seized, let go and seized again
 * while it creates threads (the retries of target_ptrace.c's library
 * calls) would leave each one it created attached. 0, 1 if it is gone, -1
 * on error. */
static int seize(struct proc_ptrace *pt, pid_t tid, int follow, struct core_err *err)
{
	if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(long)(follow ? PTRACE_O_TRACECLONE : 0)) != 0) {
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
static void on_status(struct proc_ptrace *pt, pid_t tid, int status)
{
	int i = find_tid(pt, tid);
	if (i < 0) { /* a clone child reporting before its parent's event */
		if (add_thread(pt, tid, 1))
			return;
		i = (int)pt->n - 1;
	}
	struct proc_ptrace_thread *t = &pt->t[i];
	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		t->gone = 1;
		return;
	}
	if (!WIFSTOPPED(status))
		return;
	int sig = WSTOPSIG(status), event = status >> 16;
	t->stopped = 1;
	/* PTRACE_EVENT_STOP is how PTRACE_INTERRUPT's stop reports: no
	 * system call half done there. */
	t->event = event == PTRACE_EVENT_STOP ? 0 : event;
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
static int wait_all_stopped(struct proc_ptrace *pt, uint64_t deadline)
{
	for (;;) {
		int all = 1, progress = 0;
		for (size_t i = 0; i < pt->n; i++) {
			struct proc_ptrace_thread *t = &pt->t[i];
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

struct seize_pass {
	struct proc_ptrace *pt;
	int only_one, added;
	struct core_err *err;
};

static int seize_if_new(void *user, pid_t tid)
{
	struct seize_pass *p = user;
	if (find_tid(p->pt, tid) >= 0)
		return 0;
	int rc = seize(p->pt, tid, !p->only_one, p->err);
	if (rc < 0)
		return -2;
	p->added += rc == 0;
	return p->only_one && p->added ? 1 : 0;
}

/* Seize threads not known yet. Returns how many were new, or -1. */
static int seize_new(struct proc_ptrace *pt, int only_one, struct core_err *err)
{
	struct seize_pass p = { pt, only_one, 0, err };
	int rc = proc_threads_each(pt->pid, seize_if_new, &p);
	if (rc == -1)
		return core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)pt->pid), -1;
	return rc == -2 ? -1 : p.added;
}

int proc_ptrace_stop(pid_t pid, int all, uint32_t timeout_ms,
		       struct proc_ptrace **out, struct core_err *err)
{
	*out = NULL;
	struct proc_ptrace *pt = calloc(1, sizeof(*pt));
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
		proc_ptrace_resume(pt, NULL);
		return rc;
	}
	*out = pt;
	return 0;
}

void proc_ptrace_resume(struct proc_ptrace *pt, uint64_t *released_ns)
{
	if (!pt)
		return;
	if (released_ns)
		*released_ns = core_now_ns();
	for (size_t i = 0; i < pt->n; i++) {
		struct proc_ptrace_thread *t = &pt->t[i];
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

/* Hold thread `tid` (seize + interrupt); NULL if that fails. */
struct proc_ptrace *proc_ptrace_hold_one(pid_t pid, pid_t tid, uint64_t deadline)
{
	struct proc_ptrace *one = calloc(1, sizeof(*one));
	struct core_err ignore = { 0 };
	if (!one)
		return NULL;
	one->pid = pid;
	if (seize(one, tid, 0, &ignore) != 0 || wait_all_stopped(one, deadline) || !one->n ||
	    one->t[0].gone) {
		proc_ptrace_resume(one, NULL);
		return NULL;
	}
	return one;
}

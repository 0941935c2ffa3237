/*
 * The priority of the thread that stops the world, while it is stopped:
 * both targets' stops (target_ptrace.c by pid, stop_self.c in-process)
 * raise the calling thread to real-time here and put it back. Not the
 * stopped threads: their scheduling is never touched.
 *
 * Why. Stopping every thread is a wait for each thread to stop — by pid one
 * PTRACE_INTERRUPT each and a wait for its stop; in-process a signal each
 * and a wait for it to park in the handler — and the threads stop at once
 * once they run, but the stopping thread competes for a CPU with the ones
 * still running and with other processes: where there are more busy
 * threads than CPUs, each of its waits can cost a scheduler time slice, and
 * so can each preemption while it writes the patches. Measured on fe by pid
 * with 8 busy threads on 2 CPUs: stopping took 0.4–17 ms (median 6) as a
 * normal thread, 0.25–0.46 ms as a real-time one; in-process, as a normal
 * thread under load from other jobs, pauses reached 10–14 ms where the
 * quiet median is ~1.8 ms. So the stopping thread runs SCHED_FIFO (the lowest real-time
 * priority; reset in any child it might fork) from just before the stop
 * until the threads are let go — a few milliseconds — where it is allowed
 * to (root, CAP_SYS_NICE or RLIMIT_RTPRIO, and a cgroup with real-time
 * runtime); elsewhere it stays as it was, only slower to stop. Only a
 * SCHED_OTHER thread is raised: one already real-time (whatever its
 * priority), SCHED_BATCH or SCHED_IDLE is left alone.
 *
 * The stopped threads are not raised. In-process they would have to raise
 * themselves in the handler, and a thread that blocks the stop signal would
 * then take it late and run user code as real-time for as long as the stop
 * waited; by pid they are another process's threads.
 *
 * Hazard: a real-time thread that waits for normal threads by spinning or
 * by sched_yield() (which returns at once when no other real-time task
 * wants its CPU) starves a normal thread sharing its CPU (one CPU, or
 * affinity: a livelock until the kernel's real-time throttling). Every
 * wait of a stop sleeps (futex, nanosleep, waitpid), and the priority is
 * put back as soon as the threads are let go. It is put back on the thread
 * that was raised (its tid), whichever thread calls proc_unboost.
 */
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc/proc.h"

void proc_boost(struct proc_boost *b)
{
	b->boosted = 0;
	b->tid = (pid_t)syscall(SYS_gettid);
	int pol = sched_getscheduler(b->tid);
	if (pol < 0 || (pol & ~SCHED_RESET_ON_FORK) != SCHED_OTHER ||
	    sched_getparam(b->tid, &b->old_param) != 0)
		return;
	struct sched_param rt = { .sched_priority = 1 };
	if (sched_setscheduler(b->tid, SCHED_FIFO | SCHED_RESET_ON_FORK, &rt) == 0) {
		b->boosted = 1;
		b->old_policy = pol; /* with its own SCHED_RESET_ON_FORK, if set */
	}
}

void proc_unboost(struct proc_boost *b)
{
	if (!b->boosted)
		return;
	b->boosted = 0;
	if (sched_setscheduler(b->tid, b->old_policy, &b->old_param) == 0)
		return;
	/* Without CAP_SYS_NICE (real-time allowed by RLIMIT_RTPRIO alone) the
	 * kernel refuses to clear SCHED_RESET_ON_FORK: go back to the old
	 * policy keeping the flag, which only means a child forked later
	 * starts as SCHED_OTHER at nice >= 0. */
	sched_setscheduler(b->tid, b->old_policy | SCHED_RESET_ON_FORK, &b->old_param);
}

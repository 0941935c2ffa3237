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
 * normal thread, 0.25–0.46 ms as a real-time one; in-process on fe with two
 * busy loops of other processes beside it, pause median 5.8 ms and max
 * 14.8 ms as a normal thread, 4.1 and 9.7 ms real-time (40 rounds each,
 * bench/pause_load.sh). So the stopping thread runs SCHED_FIFO (the lowest
 * real-time priority) from just before the stop until the threads are let
 * go — a few milliseconds — where it is allowed to (root, CAP_SYS_NICE or
 * RLIMIT_RTPRIO, and a cgroup with real-time runtime); elsewhere it stays
 * as it was, only slower to stop. Only a SCHED_OTHER thread is raised: one
 * already real-time (whatever its priority), SCHED_BATCH or SCHED_IDLE is
 * left alone. With CAP_SYS_NICE it is raised with SCHED_RESET_ON_FORK (a
 * child it might fork starts normal); without it, not: the kernel lets
 * only CAP_SYS_NICE clear that flag, and the thread, often the
 * application's own, must get back exactly what it had. (Should the
 * capability go in between, the flag is kept rather than the thread left
 * real-time.)
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
#include <linux/capability.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc/proc.h"

/* Has this thread CAP_SYS_NICE in its effective set? */
static int may_clear_reset_on_fork(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	return syscall(SYS_capget, &h, d) == 0 &&
	       (d[CAP_TO_INDEX(CAP_SYS_NICE)].effective & CAP_TO_MASK(CAP_SYS_NICE));
}

void proc_boost(struct proc_boost *b)
{
	b->boosted = 0;
	b->tid = (pid_t)syscall(SYS_gettid);
	int pol = sched_getscheduler(b->tid);
	if (pol < 0 || (pol & ~SCHED_RESET_ON_FORK) != SCHED_OTHER ||
	    sched_getparam(b->tid, &b->old_param) != 0)
		return;
	struct sched_param rt = { .sched_priority = 1 };
	int reset = may_clear_reset_on_fork() ? SCHED_RESET_ON_FORK : 0;
	if (sched_setscheduler(b->tid, SCHED_FIFO | reset, &rt) == 0) {
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
	/* CAP_SYS_NICE gone since the boost: the kernel refuses to clear
	 * SCHED_RESET_ON_FORK. Go back to the old policy keeping the flag
	 * rather than stay real-time. */
	sched_setscheduler(b->tid, b->old_policy | SCHED_RESET_ON_FORK, &b->old_param);
}

/*
 * sigprof sampler backend: in-process CPU-time sampling without perf_event.
 *
 * Responsible for: one POSIX CPU-time timer per thread of the calling
 * process (timer_create on the thread's CPU clock, SIGEV_THREAD_ID so the
 * signal goes to that very thread), a signal handler that reads the
 * interrupted PC from the signal context into a preallocated buffer, a
 * re-scan of /proc/self/task every POLL_MS so threads created during the
 * window are sampled too, and tearing all of it down again. Works wherever
 * timer_create works: containers, VMs without a PMU, qemu-user.
 * Not responsible for: other processes (a per-thread CPU clock of another
 * thread group cannot be armed; use perf-ip), mapping PCs to functions.
 *
 * Rate: the kernel checks CPU-time timers on its scheduler tick, so a
 * thread gets at most CONFIG_HZ signals per second of CPU time (250 on the
 * machines this was written on) whatever `hz` asks; the extra expiries are
 * reported by the kernel as timer overruns and not turned into samples.
 *
 * Handler protocol (the only state a handler can reach is static):
 *  - `active` points to the run's buffer while a collection runs, NULL
 *    otherwise; a handler that finds NULL, or a signal from another run's
 *    timer (sigev value != run generation), returns without doing anything.
 *  - A handler counts itself in `inside` before it loads `active`. The
 *    collector clears `active`, then waits for `inside` to drop to 0 before
 *    it reads or frees the buffer: a handler that loaded the old pointer has
 *    finished with it, a later one sees NULL (both sequentially consistent).
 *  - Slots are claimed with one atomic fetch-add on the buffer's index:
 *    lock-free, no allocation, async-signal-safe. A claim past the end
 *    counts a dropped sample instead. The buffer is sized from the most CPU
 *    time the process can burn in the window (window x CPUs x hz), so it
 *    only fills if the kernel delivers more than that.
 *  - Signal disposition: installed with SA_RESTART (a thread interrupted
 *    in a blocking call resumes it), and left installed after the run: it
 *    ignores signals when no collection is active. The previous
 *    disposition can only have been SIG_DFL or SIG_IGN (install_handler
 *    refuses a signal the program handles), and restoring SIG_DFL is what
 *    is not safe: a timer signal already queued but not yet delivered
 *    would then kill the process. The kernel shows such a signal in
 *    /proc/self/task/<tid>/status, but qemu-user queues guest signals
 *    itself, and an AArch64 test under qemu was killed that way (exit 170:
 *    host signal 42) after a check of /proc found nothing pending.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/util.h"
#include "sample/sample.h"

#define POLL_MS 20		/* re-scan of /proc/self/task */
#define MAX_BUF_PCS (1u << 24)	/* 128 MiB of PCs at most */
#define SIGPROF_SIG (SIGRTMIN + 6) /* SIGRTMIN+7 is the stop-the-world signal */

_Static_assert(ATOMIC_LONG_LOCK_FREE == 2, "the handler needs lock-free atomics");

/* The run's PC buffer: written by handlers, read by the collector only
 * after every handler has left (see the protocol above). */
struct sigprof_buf {
	int gen;		  /* sigev value of this run's timers */
	uint64_t *pcs;
	size_t cap;
	_Atomic size_t next;	  /* slots claimed so far (may exceed cap) */
};

/* One armed timer. Collector-only, so a growing array is fine. */
struct sigprof_timer {
	pid_t tid;
	timer_t id;
};

struct sigprof_run {
	const struct sample_config *cfg;
	struct sigprof_buf buf;
	struct sigprof_timer *timers;
	size_t n, cap;
	int last_errno;		  /* of the last failed timer_create */
};

static struct sigprof_buf *_Atomic active;
static _Atomic int inside;
static _Atomic int generation;

static uint64_t context_pc(const void *ucv)
{
	const ucontext_t *uc = ucv;
#if defined(__x86_64__)
	return (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uint64_t)uc->uc_mcontext.pc;
#else
#error "sigprof: add the PC register of this architecture's ucontext"
#endif
}

static void sigprof_handler(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	int saved = errno; /* the interrupted code may be between a call and its errno check */
	atomic_fetch_add(&inside, 1);
	struct sigprof_buf *b = atomic_load(&active);
	if (b && si->si_code == SI_TIMER && si->si_value.sival_int == b->gen) {
		size_t slot = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
		if (slot < b->cap)
			b->pcs[slot] = context_pc(ucv);
	}
	atomic_fetch_sub(&inside, 1);
	errno = saved;
}

/* Kernel encoding of a thread's CPU clock: MAKE_THREAD_CPUCLOCK(tid,
 * CPUCLOCK_SCHED), what pthread_getcpuclockid() returns for a pthread_t,
 * computed from a tid because we only know the other threads by tid. */
static clockid_t thread_cpu_clock(pid_t tid)
{
	return (clockid_t)((~(unsigned)tid << 3) | 6u);
}

/* Create (not arm) a timer on `tid`'s CPU clock that sends SIGPROF_SIG,
 * carrying `gen`, to that thread. 0 or -1 with errno. */
static int timer_for_thread(pid_t tid, int gen, timer_t *id)
{
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGPROF_SIG;
	sev.sigev_value.sival_int = gen;
	sev._sigev_un._tid = tid;
	return timer_create(thread_cpu_clock(tid), &sev, id);
}

static int known_thread(void *user, pid_t tid)
{
	const struct sigprof_run *r = user;
	for (size_t i = 0; i < r->n; i++)
		if (r->timers[i].tid == tid)
			return 1;
	return 0;
}

/* Arm a timer on one thread. A thread that exited meanwhile (EINVAL: its
 * clock no longer exists) is not a failure. 0 or -1. */
static int attach_thread(void *user, pid_t tid)
{
	struct sigprof_run *r = user;
	if (core_grow((void **)&r->timers, &r->cap, r->n, sizeof(*r->timers))) {
		r->last_errno = ENOMEM;
		return -1;
	}
	timer_t id;
	if (timer_for_thread(tid, r->buf.gen, &id)) {
		r->last_errno = errno;
		return errno == EINVAL || errno == ESRCH ? 0 : -1;
	}
	long period_ns = 1000000000L / (long)r->cfg->hz;
	struct itimerspec its = {
		.it_interval = { period_ns / 1000000000L, period_ns % 1000000000L },
		.it_value = { period_ns / 1000000000L, period_ns % 1000000000L },
	};
	if (timer_settime(id, 0, &its, NULL)) {
		r->last_errno = errno;
		timer_delete(id);
		return -1;
	}
	r->timers[r->n++] = (struct sigprof_timer){ tid, id };
	return 0;
}

/* Arm timers on threads not seen yet (a tid reused within the window by a
 * new thread is taken for the old one and missed). Returns failures. */
static int scan_threads(struct sigprof_run *r)
{
	int failures = sample_each_new_thread(getpid(), r->cfg->exclude_tid, known_thread,
					      attach_thread, r);
	if (failures < 0) {
		r->last_errno = errno;
		return 1;
	}
	return failures;
}

/* Install the handler. Refuses a signal the program handles itself. */
static int install_handler(struct sigaction *old, struct core_err *err)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigprof_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPROF_SIG, NULL, old))
		return core_errf(err, OCOLOS_EINVAL, "cannot read the disposition of signal %d",
				 SIGPROF_SIG);
	int theirs = (old->sa_flags & SA_SIGINFO) ? old->sa_sigaction != sigprof_handler
						 : old->sa_handler != SIG_DFL &&
						   old->sa_handler != SIG_IGN;
	if (theirs)
		return core_errf(err, OCOLOS_ENOTSUP,
				 "signal SIGRTMIN+%d, which the sigprof sampler uses, has a handler "
				 "of the program's; use the perf-ip sampler", SIGPROF_SIG - SIGRTMIN);
	if (sigaction(SIGPROF_SIG, &sa, NULL))
		return core_errf(err, OCOLOS_EINVAL, "cannot install a handler for signal %d: %s",
				 SIGPROF_SIG, strerror(errno));
	return 0;
}

/* Claim the static state for this run, allocate and publish its buffer. */
static int start_run(struct sigprof_run *r, struct core_err *err)
{
	long cpus = sysconf(_SC_NPROCESSORS_CONF);
	uint64_t want = (uint64_t)r->cfg->hz * r->cfg->window_ms / 1000u *
			(uint64_t)(cpus > 0 ? cpus : 1) * 5 / 4 + 4096;
	r->buf.cap = want < MAX_BUF_PCS ? (size_t)want : MAX_BUF_PCS;
	r->buf.pcs = malloc(r->buf.cap * sizeof(*r->buf.pcs));
	if (!r->buf.pcs)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory for %zu samples", r->buf.cap);
	r->buf.gen = atomic_fetch_add(&generation, 1) + 1;
	atomic_store(&r->buf.next, 0);
	struct sigprof_buf *none = NULL;
	if (!atomic_compare_exchange_strong(&active, &none, &r->buf)) {
		free(r->buf.pcs);
		r->buf.pcs = NULL;
		return core_errf(err, OCOLOS_EBUSY,
				 "another sigprof collection is running in this process");
	}
	return 0;
}

/* Delete the timers, unpublish the buffer and wait for handlers to leave
 * it. The handler stays installed (see the protocol above). */
static void stop_run(struct sigprof_run *r)
{
	for (size_t i = 0; i < r->n; i++)
		timer_delete(r->timers[i].id);
	atomic_store(&active, NULL);
	while (atomic_load(&inside) > 0)
		sched_yield();
}

/* Move the collected PCs into `out`. 0 or OCOLOS_ENOMEM. */
static int copy_samples(struct sigprof_run *r, struct sample_set *out, struct core_err *err)
{
	size_t claimed = atomic_load(&r->buf.next);
	size_t n = claimed < r->buf.cap ? claimed : r->buf.cap;
	out->lost += claimed - n;
	out->threads += (uint32_t)r->n;
	out->event = "cpu-time";
	for (size_t i = 0; i < n; i++)
		if (sample_set_push(out, r->buf.pcs[i]))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory storing samples");
	return 0;
}

static int wrong_process(pid_t pid, struct core_err *err)
{
	return core_errf(err, OCOLOS_ENOTSUP,
			 "the sigprof sampler samples only the calling process (asked for pid %d, "
			 "this is %d); use perf-ip or perf-lbr for another process",
			 (int)pid, (int)getpid());
}

int sample_sigprof_probe(pid_t pid, struct core_err *err)
{
	if (pid != getpid())
		return wrong_process(pid, err);
	timer_t id;
	if (timer_for_thread((pid_t)syscall(SYS_gettid), 0, &id))
		return core_errf(err, OCOLOS_ENOTSUP,
				 "timer_create on a thread CPU clock failed: %s; this kernel or "
				 "emulator lacks per-thread CPU timers, use perf-ip", strerror(errno));
	timer_delete(id); /* never armed: no signal can come from it */
	return 0;
}

int sample_sigprof_collect(const struct sample_config *cfg,
			   struct sample_set *out, struct core_err *err)
{
	if (cfg->pid != getpid())
		return wrong_process(cfg->pid, err);
	if (!cfg->hz || cfg->hz > 1000000000u)
		return core_errf(err, OCOLOS_EINVAL, "sigprof rate %u Hz is out of range", cfg->hz);
	struct sigprof_run r = { .cfg = cfg };
	struct sigaction old;
	int rc = install_handler(&old, err);
	if (rc)
		return rc;
	rc = start_run(&r, err);
	if (rc) {
		sigaction(SIGPROF_SIG, &old, NULL);
		return rc;
	}
	uint64_t end = core_now_ns() + (uint64_t)cfg->window_ms * 1000000ull;
	scan_threads(&r);
	for (uint64_t now = core_now_ns(); r.n && !sample_window_over(cfg, end); now = core_now_ns()) {
		uint64_t left_ms = (end - now + 999999) / 1000000;
		poll(NULL, 0, (int)(left_ms < POLL_MS ? left_ms : POLL_MS));
		scan_threads(&r);
	}
	stop_run(&r);
	if (!r.n)
		rc = core_errf(err, OCOLOS_ENOTSUP,
			       "timer_create failed for every thread: %s; use perf-ip",
			       strerror(r.last_errno));
	else
		rc = copy_samples(&r, out, err);
	core_free_clear(r.buf.pcs, r.buf.cap * sizeof(*r.buf.pcs)); /* PCs: core/util.c says why */
	free(r.timers);
	return rc;
}

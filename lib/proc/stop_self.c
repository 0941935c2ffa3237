/*
 * In-process stop-the-world.
 *
 * Protocol: the optimizing thread installs a handler for a real-time signal,
 * sends it with tgkill() to every other thread listed in /proc/self/task,
 * and waits until each has entered the handler, where it marks itself
 * parked and sleeps on a futex. It then lists the threads again: a thread
 * created before the first listing but not yet visible, or created by a
 * thread before that thread parked, shows up now and is signalled too.
 * When a listing finds no thread that is neither parked nor gone, no thread
 * can run user code (parked threads cannot create threads), and the world
 * is stopped. A thread in a blocking system call is interrupted by the
 * signal; the handler is installed with SA_RESTART so the call resumes.
 *
 * The stopping thread runs real-time (proc_boost, boost.c) from just before
 * the first signal until resume has woken the parked threads, so that on a
 * busy machine it is not preempted while it waits for them to park and
 * while it writes the patches. It is put back right after the wake, and
 * its wait for them to leave the handler sleeps rather than yields: a
 * real-time thread's sched_yield() returns at once when no other real-time
 * task wants its CPU, so a yielding real-time waiter (boosted, or a caller
 * real-time of its own) would keep a woken thread sharing its CPU from
 * ever leaving (a livelock until real-time throttling). The parked threads are not raised: one that blocks the
 * signal would take it late and run user code real-time for the whole
 * timeout.
 *
 * Resume wakes the futex and waits until every parked thread has left the
 * handler before the shared state is freed (if a thread never parked, the
 * state and the inert handler are kept, see proc_resume_self). The state is reached from the
 * handler through one static pointer: a signal handler has no other way in,
 * and only one stop can be in progress per process (the caller holds the
 * context's round lock).
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <ucontext.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "proc/proc.h"

#define MAX_THREADS 65536

struct proc_self_stop {
	int sig;
	struct sigaction old;
	pid_t self;
	pid_t *tids;		  /* signalled threads */
	_Atomic int *parked;	  /* per tids[i]: 1 once in the handler */
	_Atomic int *gone;	  /* per tids[i]: 1 if it exited before parking */
	struct proc_thread_state *state; /* per tids[i]: where it was stopped */
	size_t n, cap;
	_Atomic uint32_t release; /* futex word: 1 = resume */
	_Atomic int inside;	  /* threads currently in the handler */
	_Atomic uint32_t arrivals; /* futex word: bumped by each parking thread */
	struct proc_boost boost;  /* the stopping thread's, until the wake */
	struct proc_self_stop *next_stranded;
};

static struct proc_self_stop *_Atomic active_stop;
/* Stops given up on while a thread still had the signal pending (see
 * proc_resume_self): kept, and kept reachable, for the life of the process. */
static struct proc_self_stop *stranded;

static void park_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	int saved = errno;
	struct proc_self_stop *s = atomic_load(&active_stop);
	if (!s || si->si_code != SI_TKILL || si->si_pid != getpid()) {
		errno = saved;
		return; /* not ours (a stale or foreign signal): ignore */
	}
	atomic_fetch_add(&s->inside, 1);
	pid_t me = (pid_t)syscall(SYS_gettid);
	const ucontext_t *ctx = uc;
	for (size_t i = 0; i < s->n; i++)
		if (s->tids[i] == me) {
#if defined(__x86_64__)
			s->state[i].pc = (uint64_t)ctx->uc_mcontext.gregs[REG_RIP];
			s->state[i].sp = (uint64_t)ctx->uc_mcontext.gregs[REG_RSP];
			/* The order ptrace_x86.c reports (proc_reg_name names
			 * them), fs base last. */
			static const int order[] = { REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI,
						     REG_RDI, REG_RBP, REG_R8,	REG_R9,	 REG_R10,
						     REG_R11, REG_R12, REG_R13, REG_R14, REG_R15 };
			for (size_t r = 0; r < sizeof(order) / sizeof(order[0]); r++)
				s->state[i].regs[r] = (uint64_t)ctx->uc_mcontext.gregs[order[r]];
			uint64_t tp;
			__asm__("mov %%fs:0, %0" : "=r"(tp));
			s->state[i].regs[15] = tp;
			s->state[i].nregs = 16;
			s->state[i].tp = tp;
#elif defined(__aarch64__)
			s->state[i].pc = ctx->uc_mcontext.pc;
			s->state[i].sp = ctx->uc_mcontext.sp;
			for (int r = 0; r < 31; r++)
				s->state[i].regs[r] = ctx->uc_mcontext.regs[r];
			s->state[i].nregs = 31;
			uint64_t tp;
			__asm__("mrs %0, tpidr_el0" : "=r"(tp));
			s->state[i].tp = tp;
#endif
			s->state[i].tid = (uint32_t)me;
			atomic_store(&s->parked[i], 1); /* publishes the state too */
		}
	atomic_fetch_add(&s->arrivals, 1);
	syscall(SYS_futex, &s->arrivals, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	while (!atomic_load(&s->release))
		syscall(SYS_futex, &s->release, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	atomic_fetch_sub(&s->inside, 1);
	errno = saved;
}

static int thread_exists(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
	return access(path, F_OK) == 0;
}

static int known(const struct proc_self_stop *s, pid_t tid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->tids[i] == tid)
			return 1;
	return 0;
}

#if defined(__aarch64__)
/* Under qemu-user, /proc/self/task also lists qemu's own helper thread
 * (its RCU thread), which runs no guest code and blocks every host signal
 * but the synchronous ones, so it can never park. It is recognized by the
 * process being qemu (comm "qemu-*") and its host signal mask blocking all
 * real-time signals; guest threads have an empty host mask under qemu. */
static int qemu_helper_thread(pid_t tid)
{
	char path[64], line[128];
	FILE *f = fopen("/proc/self/comm", "re");
	int qemu = f && fgets(line, sizeof(line), f) && !strncmp(line, "qemu-", 5);
	if (f)
		fclose(f);
	if (!qemu)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	unsigned long long blk = 0;
	int found = 0;
	if ((f = fopen(path, "re"))) {
		while (!found && fgets(line, sizeof(line), f))
			found = sscanf(line, "SigBlk: %llx", &blk) == 1;
		fclose(f);
	}
	return found && (blk >> 34) == (~0ull >> 34);
}
#else
static int qemu_helper_thread(pid_t tid)
{
	(void)tid;
	return 0;
}
#endif

struct signal_pass {
	struct proc_self_stop *s;
	int added;
};

static int signal_one(void *user, pid_t tid)
{
	struct signal_pass *pass = user;
	struct proc_self_stop *s = pass->s;
	if (tid == s->self || known(s, tid) || qemu_helper_thread(tid))
		return 0;
	if (s->n == s->cap) /* arrays are preallocated: no realloc under handlers */
		return -1;
	s->tids[s->n] = tid;
	atomic_store(&s->parked[s->n], 0);
	atomic_store(&s->gone[s->n], 0);
	s->n++; /* publish after the slot is filled; the handler scans [0,n) */
	if (syscall(SYS_tgkill, getpid(), tid, s->sig) != 0)
		atomic_store(&s->gone[s->n - 1], 1);
	pass->added++;
	return 0;
}

/* Signal threads not seen before. Returns how many were new, or -1. */
static int signal_new_threads(struct proc_self_stop *s)
{
	struct signal_pass pass = { s, 0 };
	return proc_threads_each(getpid(), signal_one, &pass) ? -1 : pass.added;
}

/* 1 when every signalled thread is parked or gone. */
static int all_parked(struct proc_self_stop *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if (atomic_load(&s->parked[i]) || atomic_load(&s->gone[i]))
			continue;
		if (!thread_exists(s->tids[i])) {
			atomic_store(&s->gone[i], 1);
			continue;
		}
		return 0;
	}
	return 1;
}

/* The per-thread arrays are sized for MAX_THREADS, since threads created
 * during the stop must find a slot without an allocation; mapped rather
 * than malloc'ed, so only the pages of threads that exist are ever
 * touched, and unmapped after: the states hold the threads' PCs and
 * registers, which must not linger in the heap (a later retirement scan
 * would take them for references to old code, see inject/scan.c). */
static void *table(size_t n, size_t elem)
{
	void *p = mmap(NULL, n * elem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void untable(void *p, size_t n, size_t elem)
{
	if (p)
		munmap(p, n * elem);
}

static void stop_free(struct proc_self_stop *s)
{
	untable(s->tids, s->cap, sizeof(*s->tids));
	untable(s->state, s->cap, sizeof(*s->state));
	untable((void *)s->parked, s->cap, sizeof(*s->parked));
	untable((void *)s->gone, s->cap, sizeof(*s->gone));
	free(s);
}

int proc_stop_self(int sig, uint32_t timeout_ms, struct proc_self_stop **out,
		     uint32_t *threads, struct core_err *err)
{
	*out = NULL;
	struct proc_self_stop *s = calloc(1, sizeof(*s));
	if (!s)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	s->sig = sig;
	s->self = (pid_t)syscall(SYS_gettid);
	s->cap = MAX_THREADS;
	s->tids = table(s->cap, sizeof(*s->tids));
	s->parked = table(s->cap, sizeof(*s->parked));
	s->gone = table(s->cap, sizeof(*s->gone));
	s->state = table(s->cap, sizeof(*s->state));
	if (!s->tids || !s->parked || !s->gone || !s->state) {
		stop_free(s);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = park_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask); /* nothing else runs on a parked thread */
	atomic_store(&active_stop, s);
	if (sigaction(sig, &sa, &s->old) != 0) {
		atomic_store(&active_stop, NULL);
		stop_free(s);
		return core_errf(err, OCOLOS_EINVAL, "cannot install a handler for signal %d", sig);
	}
	/* From here every way out goes through proc_resume_self, which puts
	 * the priority back. */
	proc_boost(&s->boost);
	uint64_t deadline = core_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		int added = signal_new_threads(s);
		if (added < 0) {
			proc_resume_self(s, NULL);
			return core_errf(err, OCOLOS_ESTOP, "cannot list or track the process's threads");
		}
		/* Sleep rather than spin: on a busy machine the threads we wait
		 * for may need this very CPU to reach their handler. */
		for (;;) {
			uint32_t seen = atomic_load(&s->arrivals);
			if (all_parked(s) || core_now_ns() >= deadline)
				break;
			struct timespec ts = { 0, 500000 };
			syscall(SYS_futex, &s->arrivals, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
		}
		if (!all_parked(s)) {
			pid_t stuck = 0;
			for (size_t i = 0; i < s->n && !stuck; i++)
				if (!atomic_load(&s->parked[i]) && !atomic_load(&s->gone[i]))
					stuck = s->tids[i];
			proc_resume_self(s, NULL);
			return core_errf(err, OCOLOS_ESTOP,
					 "thread %d did not stop within %u ms (does it block signal %d?); "
					 "unblock it, pick another opts.stop_signal, or raise opts.stop_timeout_ms",
					 (int)stuck, timeout_ms, sig);
		}
		if (added == 0)
			break; /* a full listing found nothing new: stopped */
	}
	uint32_t parked = 0;
	for (size_t i = 0; i < s->n; i++)
		parked += (uint32_t)atomic_load(&s->parked[i]);
	*threads = parked;
	*out = s;
	return 0;
}

const struct proc_thread_state *proc_stop_states(const struct proc_self_stop *s, size_t *n)
{
	*n = s->n; /* entries of threads that never parked are zero: harmless */
	return s->state;
}

void proc_resume_self(struct proc_self_stop *s, uint64_t *released_ns)
{
	if (!s)
		return;
	atomic_store(&s->release, 1);
	if (released_ns) /* before the wake: woken threads may preempt us */
		*released_ns = core_now_ns();
	syscall(SYS_futex, &s->release, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
	proc_unboost(&s->boost);
	/* Sleep, not yield: a caller that is real-time (boosted or its own)
	 * would, by yielding, keep a woken thread sharing its CPU from ever
	 * leaving the handler. */
	while (atomic_load(&s->inside) > 0) {
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
	}
	if (!all_parked(s)) {
		/* Error path: some thread still has our signal pending (it blocks
		 * it). Keep our handler, which ignores signals once no stop is
		 * active, so the pending signal cannot kill the process later, and
		 * keep the state: that thread may yet read it. */
		atomic_store(&active_stop, NULL);
		s->next_stranded = stranded;
		stranded = s;
		return;
	}
	sigaction(s->sig, &s->old, NULL);
	atomic_store(&active_stop, NULL);
	stop_free(s);
}

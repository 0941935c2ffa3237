/*
 * sigprof sampler: busy threads are sampled and their PCs land in the
 * functions they run; a thread created during the window is sampled too;
 * the excluded thread is not; a thread blocked in read() is not disturbed
 * (its read still returns the data); other processes are refused; the
 * probe succeeds here; the signal's handler stays installed, inert, so a
 * late signal, or one left pending on a thread that blocks it, is harmless.
 * The perf probes of a process that exited say OCOLOS_ENOPROC, so a round
 * whose target dies says it is gone, not that no sampler fits.
 *
 * Each spin function lives in its own section so the linker's
 * __start_/__stop_ symbols give its exact address range.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sample/sample.h"
#include "check.h"

#define HZ 1000
#define WINDOW_MS 500
#define LATE_AFTER_MS 150

static atomic_int stop;
static atomic_int late_started;
static int pipefd[2];

/* Busy loop that calls nothing, so every sample taken while it runs has a
 * PC inside its own section. */
#define SPIN_FN(name)                                                          \
	__attribute__((noinline, section("sigprof_" #name)))                   \
	static uint64_t name(void)                                             \
	{                                                                      \
		uint64_t x = 88172645463325252ull;                              \
		while (!atomic_load_explicit(&stop, memory_order_relaxed)) {   \
			x ^= x << 13;                                          \
			x ^= x >> 7;                                           \
			x ^= x << 17;                                          \
		}                                                              \
		return x;                                                      \
	}
SPIN_FN(spin_a)
SPIN_FN(spin_b)
SPIN_FN(spin_late)
SPIN_FN(spin_main)

extern const char __start_sigprof_spin_a[], __stop_sigprof_spin_a[];
extern const char __start_sigprof_spin_b[], __stop_sigprof_spin_b[];
extern const char __start_sigprof_spin_late[], __stop_sigprof_spin_late[];
extern const char __start_sigprof_spin_main[], __stop_sigprof_spin_main[];

static volatile uint64_t sink;

static void *run_a(void *arg) { sink = spin_a(); return NULL; }
static void *run_b(void *arg) { sink = spin_b(); return NULL; }
static void *run_late(void *arg) { atomic_store(&late_started, 1); sink = spin_late(); return NULL; }

/* Starts the late thread while the window runs (sleeping: uses no CPU). */
static void *spawner(void *arg)
{
	struct timespec ts = { 0, LATE_AFTER_MS * 1000000L };
	nanosleep(&ts, NULL);
	pthread_create(arg, NULL, run_late, NULL);
	return NULL;
}

static void *reader(void *arg)
{
	char buf[8];
	ssize_t n = read(pipefd[0], buf, sizeof(buf)); /* blocks through the window */
	return (void *)(intptr_t)n;
}

struct collect_job {
	struct sample_config cfg;
	struct sample_set set;
	struct core_err err;
	int rc;
	clockid_t clock_a, clock_b; /* CPU clocks of the spin_a/spin_b threads */
	double cpu_ab_s;	    /* CPU seconds they got during the window */
};

static double cpu_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Collects on its own thread, so the main thread can spin (excluded). */
static void *collector(void *arg)
{
	struct collect_job *j = arg;
	double before = cpu_s(j->clock_a) + cpu_s(j->clock_b);
	j->rc = sample_collect(&j->cfg, &j->set, &j->err);
	j->cpu_ab_s = cpu_s(j->clock_a) + cpu_s(j->clock_b) - before;
	atomic_store(&stop, 1);
	return NULL;
}

static int in(uint64_t pc, const char *lo, const char *hi)
{
	return pc >= (uintptr_t)lo && pc < (uintptr_t)hi;
}

static void check_samples(const struct collect_job *j)
{
	size_t a = 0, b = 0, late = 0, main_fn = 0;
	for (size_t i = 0; i < j->set.n; i++) {
		uint64_t pc = j->set.ips[i];
		a += in(pc, __start_sigprof_spin_a, __stop_sigprof_spin_a);
		b += in(pc, __start_sigprof_spin_b, __stop_sigprof_spin_b);
		late += in(pc, __start_sigprof_spin_late, __stop_sigprof_spin_late);
		main_fn += in(pc, __start_sigprof_spin_main, __stop_sigprof_spin_main);
	}
	fprintf(stderr, "samples=%zu spin_a=%zu spin_b=%zu spin_late=%zu spin_main=%zu "
		"threads=%u lost=%llu cpu_a+b=%.3fs\n", j->set.n, a, b, late, main_fn,
		j->set.threads, (unsigned long long)j->set.lost, j->cpu_ab_s);
	/* The kernel checks CPU timers on its tick, so a thread gets
	 * min(HZ, CONFIG_HZ) samples per CPU second (CONFIG_HZ: 100..1000).
	 * Measured against the CPU time spin_a and spin_b really got (4 threads
	 * spin, and other load may share the CPUs), ask for half of what the
	 * lowest common tick, 100 Hz, would give. */
	expect(a + b >= 5 && (double)(a + b) >= j->cpu_ab_s * 100 / 2,
	       "spin_a+spin_b got %zu samples in %.3f CPU s", a + b, j->cpu_ab_s);
	expect(a > 0 && b > 0, "spin_a %zu, spin_b %zu", a, b);
	expect(a + b + late >= j->set.n * 8 / 10, "only %zu of %zu samples in the spin loops",
	       a + b + late, j->set.n);
	expect(late > 0, "the thread created during the window got no sample");
	expect(main_fn == 0, "the excluded thread got %zu samples", main_fn);
	expect(!strcmp(j->set.event, "cpu-time"), "event %s", j->set.event);
	expect(j->set.threads >= 4, "only %u threads sampled", j->set.threads);
}

static void test_window(void)
{
	expect(pipe(pipefd) == 0, "pipe");
	pthread_t ta, tb, tr, ts, tl, tc;
	static struct collect_job job;
	job.cfg = (struct sample_config){ .backend = SAMPLE_SIGPROF, .pid = getpid(), .hz = HZ,
					   .window_ms = WINDOW_MS,
					   .exclude_tid = (pid_t)syscall(SYS_gettid) };
	pthread_create(&ta, NULL, run_a, NULL);
	pthread_create(&tb, NULL, run_b, NULL);
	pthread_getcpuclockid(ta, &job.clock_a);
	pthread_getcpuclockid(tb, &job.clock_b);
	pthread_create(&tr, NULL, reader, NULL);
	usleep(20000); /* the reader is in read() before the window opens */
	pthread_create(&tc, NULL, collector, &job);
	pthread_create(&ts, NULL, spawner, &tl);
	sink = spin_main(); /* until the collector is done */
	pthread_join(tc, NULL);
	pthread_join(ts, NULL);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	expect(atomic_load(&late_started), "late thread did not start");
	pthread_join(tl, NULL);

	expect(job.rc == 0, "collect: %d %s", job.rc, job.err.msg);
	if (job.rc == 0)
		check_samples(&job);
	sample_set_free(&job.set);

	expect(write(pipefd[1], "ping", 4) == 4, "write");
	void *got;
	pthread_join(tr, &got);
	expect((intptr_t)got == 4, "blocked read returned %ld", (long)(intptr_t)got);
	close(pipefd[0]);
	close(pipefd[1]);

	/* The sampler's handler stays, inert: a timer signal that arrives
	 * after the window (qemu-user delivers its own queue late) is
	 * harmless. Under SIG_DFL this raise would kill the test. */
	struct sigaction sa;
	sigaction(SIGRTMIN + 6, NULL, &sa);
	expect((sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction != NULL,
	       "the sampler's inert handler is not installed after the run");
	expect(raise(SIGRTMIN + 6) == 0, "raise");
}

/* Spins with the sampling signal blocked, so a timer signal stays pending
 * past the window; unblocks it when told to. */
static atomic_int blocker_phase;
static void *blocker(void *arg)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 6);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	atomic_store(&blocker_phase, 1);
	while (atomic_load(&blocker_phase) == 1)
		;
	pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* a pending signal arrives now */
	atomic_store(&blocker_phase, 3);
	return NULL;
}

/* A signal still pending after the window must not kill the process when
 * it is finally delivered. */
static void test_late_signal(void)
{
	pthread_t t;
	pthread_create(&t, NULL, blocker, NULL);
	while (!atomic_load(&blocker_phase))
		usleep(1000);
	struct core_err err = { 0 };
	struct sample_set set = { 0 };
	struct sample_config cfg = { .backend = SAMPLE_SIGPROF, .pid = getpid(), .hz = HZ,
				     .window_ms = 100 };
	int rc = sample_collect(&cfg, &set, &err);
	expect(rc == 0, "collect: %d %s", rc, err.msg);
	sample_set_free(&set);
	struct sigaction sa;
	sigaction(SIGRTMIN + 6, NULL, &sa);
	fprintf(stderr, "after a blocked thread: handler %s\n",
		(sa.sa_flags & SA_SIGINFO) ? "kept installed" : "restored");
	atomic_store(&blocker_phase, 2);
	pthread_join(t, NULL);
	expect(atomic_load(&blocker_phase) == 3, "blocker did not finish");
}

static void test_refusals(void)
{
	struct core_err err = { 0 };
	struct sample_set set = { 0 };
	struct sample_config cfg = { .backend = SAMPLE_SIGPROF, .pid = getppid(), .hz = HZ,
				     .window_ms = 10 };
	int rc = sample_collect(&cfg, &set, &err);
	expect(rc == OCOLOS_ENOTSUP, "other pid: %d", rc);
	expect(strstr(err.msg, "only the calling process"), "message: %s", err.msg);
	expect(set.n == 0, "samples from a refused collection");

	memset(&err, 0, sizeof(err));
	rc = sample_probe(SAMPLE_SIGPROF, getpid(), &err);
	expect(rc == 0, "probe self: %d %s", rc, err.msg);
	rc = sample_probe(SAMPLE_SIGPROF, getppid(), &err);
	expect(rc == OCOLOS_ENOTSUP, "probe other: %d", rc);
}

static void *linger(void *arg)
{
	(void)arg;
	sleep(3);
	return NULL;
}

/* Three children: one that exited and was reaped (its pid names nothing
 * until reused, which takes a whole pid_max cycle), one that exited and
 * is not reaped yet (a zombie), and one whose main thread exited while
 * another thread lives on (its leader is a zombie too, the process is
 * not gone). */
static void test_probe_gone(void)
{
	pid_t reaped = fork();
	if (reaped == 0)
		_exit(0);
	expect(reaped > 0 && waitpid(reaped, NULL, 0) == reaped, "fork/wait");
	pid_t zombie = fork();
	if (zombie == 0)
		_exit(0);
	pid_t headless = fork();
	if (headless == 0) {
		pthread_t t;
		pthread_create(&t, NULL, linger, NULL);
		pthread_exit(NULL);
	}
	expect(zombie > 0 && headless > 0, "fork");
	usleep(300000); /* both have exited their main thread by now */
	expect(sample_process_gone(reaped), "reaped child %d not gone", (int)reaped);
	expect(sample_process_gone(zombie), "zombie child %d not gone", (int)zombie);
	expect(!sample_process_gone(headless), "child %d with a live thread called gone",
	       (int)headless);
	expect(!sample_process_gone(getpid()), "this process called gone");

	struct core_err err = { 0 };
	if (sample_probe(SAMPLE_PERF_IP, getpid(), &err)) {
		fprintf(stderr, "perf_event_open unusable here (%s): probe checks skipped\n",
			err.msg);
	} else {
		static const enum sample_backend_kind perf[] = { SAMPLE_PERF_IP, SAMPLE_PERF_LBR };
		for (size_t i = 0; i < 2; i++) {
			const pid_t gone[] = { reaped, zombie };
			for (size_t k = 0; k < 2; k++) {
				memset(&err, 0, sizeof(err));
				int rc = sample_probe(perf[i], gone[k], &err);
				/* A zombie still has a task: without a PMU the
				 * branch-stack event fails (ENOENT) before the
				 * kernel sees that it exited. */
				int no_pmu = perf[i] == SAMPLE_PERF_LBR && gone[k] == zombie &&
					     rc == OCOLOS_ENOTSUP;
				expect(rc == OCOLOS_ENOPROC || no_pmu, "probe %d of exited pid %d: "
				       "%d %s", (int)perf[i], (int)gone[k], rc, err.msg);
			}
			/* The live process whose main thread exited: not "gone". */
			memset(&err, 0, sizeof(err));
			int rc = sample_probe(perf[i], headless, &err);
			expect(rc != OCOLOS_ENOPROC, "probe %d of pid %d, alive without its main "
			       "thread: ENOPROC (%s)", (int)perf[i], (int)headless, err.msg);
		}
	}
	waitpid(zombie, NULL, 0);
	kill(headless, SIGKILL);
	waitpid(headless, NULL, 0);
}

int main(void)
{
	test_refusals();
	test_probe_gone();
	test_window();
	test_late_signal();
	test_done();
}

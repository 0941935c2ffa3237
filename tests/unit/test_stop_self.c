/*
 * In-process stop-the-world: while stopped, no other thread runs (busy
 * threads, a thread blocked in read(), threads being created all the time);
 * after resume all run again and the blocked read() still completes.
 * A thread that blocks the stop signal makes the stop fail with ESTOP in
 * time, leaves nothing parked, and its pending signal is harmless later.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proc/proc.h"
#include "unit.h"

#define NBUSY 3
static atomic_long counters[NBUSY];
static atomic_long spawned;
static atomic_int quit;
static int pipefd[2];

static void *busy(void *arg)
{
	atomic_long *c = arg;
	while (!atomic_load(&quit))
		atomic_fetch_add(c, 1);
	return NULL;
}

static void *reader(void *arg)
{
	char buf[8];
	ssize_t n = read(pipefd[0], buf, sizeof(buf)); /* blocks through the stop */
	return (void *)(intptr_t)n;
}

static void *child(void *arg) { atomic_fetch_add(&spawned, 1); return NULL; }

static void *spawner(void *arg)
{
	while (!atomic_load(&quit)) {
		pthread_t t;
		if (pthread_create(&t, NULL, child, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

static atomic_int blocker_ready;
static void *blocker(void *arg)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 7);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	atomic_store(&blocker_ready, 1);
	while (atomic_load(&blocker_ready) != 2)
		usleep(1000);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* the pending signal arrives now */
	return NULL;
}

/* Wait up to 5 s for every busy thread to count past `a` (a loaded
 * machine may take a while to schedule them all). */
static int all_advanced(const long *a)
{
	for (int tries = 0; tries < 500; tries++) {
		int ok = 1;
		for (int i = 0; i < NBUSY; i++)
			ok &= atomic_load(&counters[i]) > a[i];
		if (ok)
			return 1;
		usleep(10000);
	}
	return 0;
}

static void snapshot(long *v)
{
	for (int i = 0; i < NBUSY; i++)
		v[i] = atomic_load(&counters[i]);
	v[NBUSY] = atomic_load(&spawned);
}

int main(void)
{
	pthread_t t[NBUSY + 2];
	expect(pipe(pipefd) == 0, "pipe");
	for (int i = 0; i < NBUSY; i++)
		pthread_create(&t[i], NULL, busy, &counters[i]);
	pthread_create(&t[NBUSY], NULL, reader, NULL);
	pthread_create(&t[NBUSY + 1], NULL, spawner, NULL);
	usleep(100000);

	for (int round = 0; round < 20; round++) {
		struct proc_self_stop *s;
		struct core_err err = { 0 };
		uint32_t n = 0;
		expect(proc_stop_self(SIGRTMIN + 7, 2000, &s, &n, &err) == 0, "stop: %s", err.msg);
		if (!s)
			break;
		expect(n >= NBUSY + 2, "only %u threads parked", n);
		long a[NBUSY + 1], b[NBUSY + 1];
		snapshot(a);
		usleep(20000);
		snapshot(b);
		expect(!memcmp(a, b, sizeof(a)), "a thread ran while the world was stopped (round %d)", round);
		uint64_t released;
		proc_resume_self(s, &released);
		expect(all_advanced(a), "a busy thread did not resume (round %d)", round);
	}
	expect(write(pipefd[1], "x", 1) == 1, "write");
	void *got;
	pthread_join(t[NBUSY], &got);
	expect((intptr_t)got == 1, "read() across stops returned %ld", (long)(intptr_t)got);

	/* A thread that blocks the signal: ESTOP, within the time limit. */
	pthread_t bt;
	pthread_create(&bt, NULL, blocker, NULL);
	while (!atomic_load(&blocker_ready))
		usleep(1000);
	struct proc_self_stop *s = NULL;
	struct core_err err = { 0 };
	uint32_t n;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = proc_stop_self(SIGRTMIN + 7, 300, &s, &n, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	expect(rc == OCOLOS_ESTOP && !s, "blocked signal: rc %d", rc);
	expect(strstr(err.msg, "opts.stop_signal") != NULL, "message: %s", err.msg);
	expect(secs < 2.0, "ESTOP took %.2f s", secs);
	long a[NBUSY + 1];
	snapshot(a);
	expect(all_advanced(a), "a busy thread stayed parked after ESTOP");
	atomic_store(&blocker_ready, 2); /* unblock: the late signal must not kill us */
	pthread_join(bt, NULL);

	atomic_store(&quit, 1);
	for (int i = 0; i < NBUSY; i++)
		pthread_join(t[i], NULL);
	pthread_join(t[NBUSY + 1], NULL);
	unit_done();
}

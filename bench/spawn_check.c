/*
 * Thread-creation check for rounds by pid (a reproducer, not a benchmark).
 *
 * Responsible for: creating and joining one short thread after another in
 * the main thread, as fast as it can, while a second thread spins (so that
 * the sampler has something to see), and reporting at once when more
 * threads started than pthread_create() calls returned: a thread started
 * twice. Not responsible for anything else; it links nothing from
 * libocolos.
 *
 *   gcc -O2 -pthread -Wl,--emit-relocs bench/spawn_check.c -o spawn_check
 *   ./spawn_check 60 & build/tools/ocolos-agent --pid $! --every 0.05 \
 *       --rounds 15 --profile 0.2 --json -q
 *
 * Prints "MISMATCH created N started N+1" for the first five checks that
 * failed, and
 * at the end (after SECS, or at SIGTERM) "created N started M"; exit 0 when
 * they were equal throughout
 * (a crash ends it with the signal). See docs/benchmarks.md, "Continuous
 * optimization" (a thread started twice when the stub ran in a thread
 * held at its PTRACE_EVENT_CLONE stop).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_long starts;
static volatile sig_atomic_t stop; /* SIGTERM: end now, report as at the end */

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}
static volatile unsigned long sink;

static void *short_thread(void *p)
{
	(void)p;
	atomic_fetch_add(&starts, 1);
	for (int i = 0; i < 20000; i++)
		sink += (unsigned long)i;
	return NULL;
}

static void *spin(void *p)
{
	(void)p;
	for (;;)
		for (int i = 0; i < 1000000; i++)
			sink += (unsigned long)i * 3;
	return NULL;
}

int main(int argc, char **argv)
{
	long secs = argc > 1 ? atol(argv[1]) : 60, created = 0, bad = 0;
	pthread_t s;
	if (pthread_create(&s, NULL, spin, NULL))
		return 1;
	signal(SIGTERM, on_term);
	time_t end = time(NULL) + secs;
	while (!stop && time(NULL) < end) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_thread, NULL) == 0) {
			created++;
			pthread_join(t, NULL);
		}
		long st = atomic_load(&starts);
		if (st != created && bad++ < 5) { /* the first five */
			printf("MISMATCH created %ld started %ld\n", created, st);
			fflush(stdout);
		}
	}
	printf("created %ld started %ld\n", created, atomic_load(&starts));
	return bad != 0;
}

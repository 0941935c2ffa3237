/*
 * Integration test: a code version a thread will resume into from a signal
 * handler is not retired (in-process, three rounds; x86-64 and AArch64).
 *
 *   it_signal_retire plain   the same work, no round
 *   it_signal_retire round   the rounds and the checks below
 *
 * Threads S and W run spinner(), a leaf loop, almost all the time. Round 1 moves
 * spinner() into C1. Then S gets a signal whose handler, when it finds S
 * interrupted inside C1, waits there: S's PC and registers are the
 * handler's (in C0), and the only trace of C1 is the PC saved in the
 * signal frame on its stack — in the middle of spinner's loop, not a
 * return site. Round 2 maps C2: C1 must stay mapped (unmapped, S's
 * sigreturn would jump into nothing). S is let go, returns into C1 and
 * spins on; round 3 must find the program running.
 *
 * stdout: spinner's results (run_it.sh compares them with a plain run).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "common.h"

#define NOINLINE __attribute__((noinline))

/* ~50 µs of work; the loop is where a signal finds S. */
static NOINLINE uint64_t spinner(uint64_t x)
{
	for (unsigned i = 0; i < 20000; i++)
		x = (x ^ (x >> 29)) * 0x9e3779b97f4a7c15ull + i;
	return x;
}

static atomic_int quit;
static atomic_int s_state; /* 1 parked inside C1, 2 interrupted elsewhere */
static atomic_int s_hold;
static volatile uint64_t c1_lo, c1_hi, s_parked_off;
/* volatile: spinner() is pure, and its result is not printed (it depends
 * on how long S ran): the calls must not be optimized away. */
static volatile uint64_t s_result, laps_of[2]; /* S, W */

static void on_usr1(int sig, siginfo_t *si, void *uc_)
{
	(void)sig, (void)si;
	const ucontext_t *uc = uc_;
#if defined(__aarch64__)
	uint64_t rip = (uint64_t)uc->uc_mcontext.pc;
#else
	uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#endif
	if (rip < c1_lo || rip >= c1_hi) {
		atomic_store(&s_state, 2);
		return;
	}
	s_parked_off = rip - c1_lo; /* an offset: no word of C1 left in memory */
	atomic_store(&s_state, 1);
	while (atomic_load(&s_hold))
		test_sleep_ms(2);
}

static void *s_main(void *arg)
{
	volatile uint64_t *laps = arg;
	uint64_t x = 1;
	while (!atomic_load(&quit)) {
		x = spinner(x);
		s_result = x;
		(*laps)++;
	}
	s_result = x;
	return NULL;
}

int main(int argc, char **argv)
{
	check(argc >= 2 && (!strcmp(argv[1], "plain") || !strcmp(argv[1], "round")),
	      "usage: %s plain|round", argv[0]);
	int round = !strcmp(argv[1], "round");
	test_watchdog(90);
	if (round)
		test_require_perf();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	check(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
	/* S, and W, which keeps spinner() hot while S waits. */
	pthread_t s, w;
	check(pthread_create(&s, NULL, s_main, (void *)&laps_of[0]) == 0 &&
		      pthread_create(&w, NULL, s_main, (void *)&laps_of[1]) == 0, "pthread_create");
	test_sleep_ms(200);
	OCOLOS_OPTS(ocolos_stats, st);
	if (round) {
		uint64_t lo, hi;
		unsigned c1 = test_retire_first(&st, &lo, &hi);
		c1_lo = lo;
		c1_hi = hi;
		/* Until the signal finds S inside C1 (spinner's copy). */
		atomic_store(&s_hold, 1);
		unsigned tries = 0;
		while (atomic_load(&s_state) != 1 && tries < 2000) {
			atomic_store(&s_state, 0);
			check(pthread_kill(s, SIGUSR1) == 0, "pthread_kill");
			while (atomic_load(&s_state) == 0)
				test_sleep_ms(1);
			tries++;
		}
		check(atomic_load(&s_state) == 1, "S was never interrupted inside C1 in %u tries "
		      "(spinner() not moved?)", tries);
		fprintf(stderr, "S parked in its handler, interrupted at C%u+0x%llx (%u tries)\n", c1,
			(unsigned long long)s_parked_off, tries);
		test_retire_round(2, 600, &st);
		check(st.generation > c1, "round 2 mapped no newer version than C%u: nothing "
		      "to retire, nothing tested", c1);
		check(test_version_range(c1, &lo, &hi), "C%u was retired while a thread in a signal "
		      "handler was to resume in it", c1);
		/* S resumes in C1 and spins on; round 3 may retire C1 (or keep
		 * it for a word of the program's that looks like one of its
		 * return sites: not checked). */
		uint64_t laps = laps_of[0];
		atomic_store(&s_hold, 0);
		test_sleep_ms(300);
		test_retire_round(3, 600, &st);
		check(laps_of[0] > laps, "S did not run on after its handler");
		fprintf(stderr, "C%u %s after round 3\n", c1,
			test_version_range(c1, &lo, &hi) ? "still mapped" : "retired");
	} else {
		test_sleep_ms(1500);
	}
	atomic_store(&quit, 1);
	check(pthread_join(s, NULL) == 0 && pthread_join(w, NULL) == 0, "pthread_join");
	/* What spinner computes, not how long S ran. */
	printf("spinner(7) = %016llx\nS ran: %d\n", (unsigned long long)spinner(7),
	       laps_of[0] > 0 && laps_of[1] > 0);
	return 0;
}

/*
 * Integration test: a code version a thread will return into from a callee
 * is not retired, also when the return address on its stack is signed
 * (AArch64 pointer authentication, -mbranch-protection=pac-ret: a frame
 * saves x30 with a PAC in its top bits). In-process, three rounds.
 *
 *   it_frame_retire plain   the same work, no round
 *   it_frame_retire round   the rounds and the checks below
 *
 * Threads P and W run hot() almost all the time. Round 1 moves hot() into
 * C1. Then P is told to park: its next hot(), in C1, calls parker(), which
 * waits. The only trace of C1 is the return address parker()'s frame
 * saved (signed, where the build and the CPU sign it). Round 2 maps C2: C1
 * must stay mapped (unmapped, parker() would return into nothing). P is
 * let go, returns into C1 and runs on; round 3 must find the program
 * running.
 *
 * stdout: hot()'s results (the runner compares them with a plain run).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define NOINLINE __attribute__((noinline))

static atomic_int quit, p_go, p_state; /* p_state: 1 parked from C1, 2 from elsewhere */
static atomic_int p_hold;
static volatile uint64_t c1_lo, c1_hi;
static volatile uint64_t laps_of[2]; /* P, W */

/* Where P waits: a frame of its own, which saves the return address. */
static NOINLINE uint64_t parker(uint64_t x)
{
	uint64_t ra = (uint64_t)__builtin_extract_return_addr(__builtin_return_address(0));
	if (ra < c1_lo || ra >= c1_hi) {
		atomic_store(&p_state, 2);
		return x & 1;
	}
	atomic_store(&p_state, 1);
	while (atomic_load(&p_hold))
		test_sleep_ms(2);
	return x & 1;
}

/* ~10 µs of work, then parker() when asked. */
static NOINLINE uint64_t hot(uint64_t x, int park)
{
	for (unsigned i = 0; i < 4000; i++)
		x = (x ^ (x >> 29)) * 0x9e3779b97f4a7c15ull + i;
	if (park)
		x += parker(x);
	return x;
}

static void *p_main(void *arg)
{
	volatile uint64_t *laps = arg;
	uint64_t x = 1;
	while (!atomic_load(&quit)) {
		int park = laps == &laps_of[0] && atomic_exchange(&p_go, 0);
		x = hot(x, park);
		(*laps)++;
	}
	return (void *)(uintptr_t)(x & 1);
}

int main(int argc, char **argv)
{
	check(argc >= 2 && (!strcmp(argv[1], "plain") || !strcmp(argv[1], "round")),
	      "usage: %s plain|round", argv[0]);
	int round = !strcmp(argv[1], "round");
	test_watchdog(90);
	if (round)
		test_require_perf();
	pthread_t p, w;
	check(pthread_create(&p, NULL, p_main, (void *)&laps_of[0]) == 0 &&
		      pthread_create(&w, NULL, p_main, (void *)&laps_of[1]) == 0, "pthread_create");
	test_sleep_ms(200);
	OCOLOS_OPTS(ocolos_stats, st);
	if (round) {
		uint64_t lo, hi;
		unsigned c1 = test_retire_first(&st, &lo, &hi);
		c1_lo = lo;
		c1_hi = hi;
		/* Until P parks from hot()'s copy in C1. */
		atomic_store(&p_hold, 1);
		unsigned tries = 0;
		while (atomic_load(&p_state) != 1 && tries < 200) {
			atomic_store(&p_state, 0);
			atomic_store(&p_go, 1);
			while (atomic_load(&p_state) == 0)
				test_sleep_ms(1);
			tries++;
		}
		check(atomic_load(&p_state) == 1, "P never parked from C1 in %u tries (hot() not "
		      "moved?)", tries);
		fprintf(stderr, "P parked in parker(), called from C%u (%u tries)\n", c1, tries);
		test_retire_round(2, 600, &st);
		check(st.generation > c1, "round 2 mapped no newer version than C%u: nothing "
		      "to retire, nothing tested", c1);
		check(test_version_range(c1, &lo, &hi), "C%u was retired while a thread was to return "
		      "into it", c1);
		uint64_t laps = laps_of[0];
		atomic_store(&p_hold, 0);
		test_sleep_ms(300);
		test_retire_round(3, 600, &st);
		check(laps_of[0] > laps, "P did not run on after parker()");
		fprintf(stderr, "C%u %s after round 3\n", c1,
			test_version_range(c1, &lo, &hi) ? "still mapped" : "retired");
	} else {
		test_sleep_ms(1500);
	}
	atomic_store(&quit, 1);
	check(pthread_join(p, NULL) == 0 && pthread_join(w, NULL) == 0, "pthread_join");
	/* What hot() computes, not how long the threads ran. */
	printf("hot(7) = %016llx\nran: %d\n", (unsigned long long)hot(7, 0),
	       laps_of[0] > 0 && laps_of[1] > 0);
	return 0;
}

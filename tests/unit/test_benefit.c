/*
 * The benefit check (opts.work_fn): after the round switched, the library
 * alternates the original and the optimized code, measures the program's
 * work counter and keeps the optimized code only if its median ratio
 * reaches opts.benefit_min_ratio. Timing decides the ratio, so the test
 * decides nothing by it: a threshold no code can reach must end in
 * OCOLOS_ENOGAIN with the original code running (and re-apply working),
 * one every code reaches must keep the optimized code; either way the
 * pairs were measured. A counter that goes backwards is a named error and
 * leaves the original code. Options without a counter are refused.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"

typedef uint64_t (*step_fn)(uint64_t);
__attribute__((noinline)) static uint64_t b_mix(uint64_t x) { x ^= x >> 29; return x * 0xbf58476d1ce4e5b9ull; }
__attribute__((noinline)) static uint64_t b_rot(uint64_t x) { return (x << 17 | x >> 47) + 11; }
static const step_fn steps[] = { b_mix, b_rot };

static atomic_int quit;
static atomic_uint_fast64_t ops;
static void *worker(void *arg)
{
	uint64_t h = (uintptr_t)arg;
	while (!atomic_load(&quit)) {
		for (int i = 0; i < 1000; i++)
			h = steps[h & 1](h + (uint64_t)i);
		atomic_fetch_add(&ops, 1);
	}
	return (void *)(uintptr_t)h;
}

static uint64_t work(void *user)
{
	(void)user;
	return atomic_load(&ops);
}

static uint64_t backwards(void *user)
{
	uint64_t *n = user;
	return 1000000 - 1000 * ++*n;
}

static double in_c1(void)
{
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = 300);
	OCOLOS_OPTS(ocolos_where_result, w);
	check(ocolos_where_self(&wo, &w) == 0, "where: %s", ocolos_last_error(NULL));
	return w.samples ? (double)w.in_optimized / (double)w.samples : 0;
}

int main(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	usleep(200000);

	/* Refused before anything is done. */
	OCOLOS_OPTS(ocolos_opts, nofn, .benefit_pairs = 3);
	expect(ocolos_optimize_self(&nofn, NULL) == OCOLOS_EINVAL &&
	       strstr(ocolos_last_error(NULL), "work_fn"), "benefit_pairs without work_fn: %s",
	       ocolos_last_error(NULL));
	OCOLOS_OPTS(ocolos_opts, nan, .work_fn = work, .benefit_min_ratio = NAN);
	expect(ocolos_optimize_self(&nan, NULL) == OCOLOS_EINVAL, "NaN ratio accepted");

	/* Unreachable: reverted, OCOLOS_ENOGAIN, the ratio reported. */
	OCOLOS_OPTS(ocolos_opts, high, .profile_ms = 1500, .work_fn = work, .benefit_pairs = 3,
		    .benefit_window_ms = 150, .benefit_min_ratio = 50.0);
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = ocolos_optimize_self(&high, &st);
	fprintf(stderr, "ratio 50: rc %d (%s) ratio %.3f pairs %u in %.0f ms\n", rc,
		ocolos_last_error(NULL), st.benefit_ratio, st.benefit_pairs, st.benefit_ns / 1e6);
	check(rc == OCOLOS_ENOGAIN, "unreachable threshold: rc %d: %s", rc, ocolos_last_error(NULL));
	expect(strstr(ocolos_last_error(NULL), "benefit_min_ratio") != NULL, "message: %s",
	       ocolos_last_error(NULL));
	expect(st.benefit_pairs == 3 && st.benefit_ratio > 0 && st.benefit_ratio < 50,
	       "pairs %u ratio %f", st.benefit_pairs, st.benefit_ratio);
	expect(st.functions_moved > 0, "the round moved nothing");
	double share = in_c1();
	expect(share < 0.1, "after OCOLOS_ENOGAIN %.0f %% of samples in optimized code", 100 * share);
	expect(ocolos_reapply_self(NULL) == 0, "reapply: %s", ocolos_last_error(NULL));
	share = in_c1();
	expect(share > 0.5, "after reapply only %.0f %% in optimized code", 100 * share);

	/* Any code reaches it: kept (the next generation, continuous). */
	OCOLOS_OPTS(ocolos_opts, low, .profile_ms = 1500, .work_fn = work, .benefit_pairs = 3,
		    .benefit_window_ms = 150, .benefit_min_ratio = 0.01);
	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	rc = ocolos_optimize_self(&low, &st);
	fprintf(stderr, "ratio 0.01: rc %d (%s) ratio %.3f pairs %u generation %u\n", rc,
		rc ? ocolos_last_error(NULL) : "ok", st.benefit_ratio, st.benefit_pairs,
		st.generation);
	expect(rc == 0 && st.benefit_pairs == 3 && st.benefit_ratio > 0.01, "low threshold: rc %d %s",
	       rc, ocolos_last_error(NULL));
	share = in_c1();
	expect(share > 0.5, "kept, but only %.0f %% in optimized code", 100 * share);

	/* A counter going backwards: named, the original code runs. */
	uint64_t calls = 0;
	OCOLOS_OPTS(ocolos_opts, back, .profile_ms = 1500, .work_fn = backwards, .work_user = &calls,
		    .benefit_pairs = 2, .benefit_window_ms = 50);
	rc = ocolos_optimize_self(&back, NULL);
	expect(rc == OCOLOS_EINVAL && strstr(ocolos_last_error(NULL), "backwards"),
	       "backwards counter: rc %d: %s", rc, ocolos_last_error(NULL));
	share = in_c1();
	expect(share < 0.1, "after a bad counter %.0f %% in optimized code", 100 * share);

	atomic_store(&quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	test_done();
}

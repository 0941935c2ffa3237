/*
 * Integration test: one in-process round on a multi-threaded C program.
 *
 *   it_threads plain   run the workload, no round
 *   it_threads round   warm up, run ocolos_optimize_self() while 3 workers
 *                      keep running and a 4th thread sits in read(2), then
 *                      check where the workers now run
 *
 * stdout carries only the workload's checksums; run_it.sh requires it to be
 * identical in both modes. In `round` mode the program itself also checks
 * that the round succeeded and did something (common.c), that the const
 * function-pointer table now points into C1, that most of the workers'
 * samples in the binary land in C1 afterwards, and that every lap computed
 * during and after the switch matched the reference lap.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "work.h"

#define WORKERS 3
#define LAP_ITEMS 8000	     /* ~10 ms */
#define FINAL_ITEMS 800000   /* ~0.5 s CPU per worker */
#define MAIN_ITEMS 20000     /* the main thread's own check */
#define WARMUP_MS 1000
#if defined(__aarch64__) /* qemu-user, sigprof: see it_cxx.cpp */
#define PROFILE_MS 3000
#else
#define PROFILE_MS 1000
#endif
#define VERIFY_HZ 2000
#define VERIFY_MS 500
#define MIN_C1_SHARE 0.5

static void check_table_in_c1(const struct ocolos_stats *st)
{
	unsigned in_c1 = 0;

	for (unsigned k = 0; k < work_table_size(); k++) {
		uint64_t e = work_table_entry(k);

		fprintf(stderr, "work_table[%u] = 0x%llx%s\n", k,
			(unsigned long long)e, test_in_c1(st, e) ? " (C1)" : "");
		in_c1 += test_in_c1(st, e);
	}
	check(in_c1 > 0,
	      "no slot of the const function-pointer table points into C1");
}

static void do_round(void)
{
	OCOLOS_OPTS(ocolos_stats, st);
	double share;
	int rc;

	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = PROFILE_MS,
		    .log_fn = test_log, .log_user = (void *)"");
	rc = ocolos_optimize_self(&o, &st);
	test_check_round(rc, &st, WORKERS, 1);
	check_table_in_c1(&st);
	share = test_c1_share(&st, VERIFY_HZ, VERIFY_MS, 50);
	fprintf(stderr, "share of binary samples in C1: %.3f\n", share);
	check(share >= MIN_C1_SHARE,
	      "only %.1f%% of the samples in the binary land in C1 after the "
	      "round (want >= %.0f%%)",
	      share * 100, MIN_C1_SHARE * 100);
}

int main(int argc, char **argv)
{
	static struct work_pool pool;
	uint64_t total = 0, mine;
	int round;

	check(argc == 2 && (!strcmp(argv[1], "plain") ||
			    !strcmp(argv[1], "round")),
	      "usage: %s plain|round", argv[0]);
	round = !strcmp(argv[1], "round");
	test_watchdog(100);
	if (round)
		test_require_perf();

	test_blocker_start();
	work_pool_start(&pool, WORKERS, LAP_ITEMS, FINAL_ITEMS, !round);
	if (round) {
		test_sleep_ms(WARMUP_MS);
		do_round();
	}
	/* The main thread calls through the (possibly patched) call sites too. */
	mine = work_run(42, 0, MAIN_ITEMS);
	check(work_pool_stop(&pool) == 0,
	      "a lap computed a different checksum than the reference lap");

	for (unsigned i = 0; i < WORKERS; i++) {
		printf("worker %u: %016llx\n", i,
		       (unsigned long long)pool.w[i].result);
		total = total * 1000003 + pool.w[i].result;
	}
	printf("main: %016llx\n", (unsigned long long)mine);
	printf("blocker: %c\n", test_blocker_release());
	printf("total: %016llx\n", (unsigned long long)(total ^ mine));
	return 0;
}

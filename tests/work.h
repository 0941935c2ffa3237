/*
 * Deterministic CPU-bound workload of the C tests (it_threads, it_bad), and
 * a pool of worker threads that run it until told to stop.
 *
 * The hot code exercises what a round has to redirect: direct calls between
 * non-inlined functions, indirect calls through a const function-pointer
 * table (.data.rel.ro in PIE, .rodata otherwise: static pointer slots with
 * data relocations), and a setjmp/longjmp escape from a hot leaf two frames
 * down. Its results depend only on its inputs, never on timing, so a run
 * that crossed a round must produce the same numbers as one that did not.
 *
 * work.c is compiled into every test binary (not a library), so it gets that
 * binary's PIE / relocation flags and BOLT sees it as the binary's own code.
 */
#ifndef OCOLOS_TESTS_WORK_H
#define OCOLOS_TESTS_WORK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Order-dependent checksum of items [first, first + count) of stream
 * `seed`. About 1 µs per item at -O2 on a current x86-64 core. */
uint64_t work_run(uint64_t seed, uint64_t first, uint64_t count);

/* Entry `k` of the function-pointer table as currently stored in memory
 * (read at run time, so a patched slot shows its new target). */
uint64_t work_table_entry(unsigned k);
unsigned work_table_size(void);

#define WORK_MAX_THREADS 8

struct work_pool;

struct work_worker {
	pthread_t th;
	unsigned id;
	struct work_pool *pool;
	uint64_t laps;	     /* laps run in the first phase */
	uint64_t mismatches; /* laps whose checksum differed from lap 0's */
	uint64_t result;     /* checksum of the fixed final phase */
};

/*
 * Each worker computes a reference lap (work_run over `lap_items`), then
 * repeats the same lap, comparing each with the reference, until `stop` is
 * set; then it runs a fixed final phase of `final_items` and records its
 * checksum. The laps make the code hot while a round runs and check it stays
 * correct across the switch; the final phase runs after the round, entirely
 * on whatever code the round installed, and its result is timing-free.
 */
struct work_pool {
	unsigned n;
	atomic_int stop;
	uint64_t lap_items;
	uint64_t final_items;
	struct work_worker w[WORK_MAX_THREADS];
};

/* Start `n` workers. If `stop_now`, the stop flag is set before they start
 * (no extra laps: the "plain" run). */
void work_pool_start(struct work_pool *p, unsigned n, uint64_t lap_items,
		     uint64_t final_items, int stop_now);
/* Set the stop flag and join every worker. Returns the total number of lap
 * mismatches (0 when all is well). */
uint64_t work_pool_stop(struct work_pool *p);

#endif

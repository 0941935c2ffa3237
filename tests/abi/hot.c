/*
 * hot.h's workload. Built like every target of a round:
 * -O2 -fno-jump-tables, linked with -Wl,--emit-relocs.
 */
#include "hot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef uint64_t (*step_fn)(uint64_t);

__attribute__((noinline)) static uint64_t hot_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	return x ^ (x >> 29);
}
__attribute__((noinline)) static uint64_t hot_twist(uint64_t x)
{
	return hot_mix(x + 0x9e3779b97f4a7c15ull) ^ (x << 7);
}
__attribute__((noinline)) static uint64_t hot_fold(uint64_t x)
{
	return hot_mix(x) + hot_twist(x >> 3);
}
static const step_fn steps[] = { hot_mix, hot_twist, hot_fold };

__attribute__((noinline)) static uint64_t hot_batch(uint64_t k)
{
	uint64_t h = k;
	for (int i = 0; i < 2000; i++)
		h = steps[(h >> 7) % 3](h + (uint64_t)i);
	return h;
}

#define NK 32
static uint64_t expected[NK];
static atomic_int quit;
static atomic_long mismatches;
static pthread_t threads[4];
static unsigned nthreads;

static void *worker(void *arg)
{
	for (uint64_t k = (uintptr_t)arg; !atomic_load(&quit); k++)
		if (hot_batch(k % NK) != expected[k % NK])
			atomic_fetch_add(&mismatches, 1);
	return NULL;
}

void hot_start(unsigned n)
{
	for (unsigned k = 0; k < NK; k++)
		expected[k] = hot_batch(k);
	atomic_store(&quit, 0);
	for (nthreads = 0; nthreads < n && nthreads < 4; nthreads++)
		pthread_create(&threads[nthreads], NULL, worker, (void *)(uintptr_t)(nthreads * 7));
}

long hot_stop(void)
{
	atomic_store(&quit, 1);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	nthreads = 0;
	return atomic_load(&mismatches);
}

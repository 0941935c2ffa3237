/*
 * The C tests' deterministic workload (see work.h). Hot functions are
 * noinline on purpose: a round can only redirect calls that exist.
 */
#include "work.h"

#include <setjmp.h>
#include <stddef.h>

#include "common.h"

#define WORK_BUF 24

#define NOINLINE __attribute__((noinline))

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

static NOINLINE uint64_t hash_step(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

/* Insertion sort: our own, so the comparisons run in the binary (qsort's
 * comparator would be called through a pointer from libc). */
static NOINLINE void sort_u64(uint64_t *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t v = a[i];
		size_t j = i;

		while (j > 0 && a[j - 1] > v) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = v;
	}
}

/* The four mixers are reached only through work_table. */
static NOINLINE uint64_t mix_rot(uint64_t x)
{
	return rotl64(x, 17) ^ 0x5bd1e995u;
}

static NOINLINE uint64_t mix_mul(uint64_t x)
{
	return (x | 1) * 0xc4ceb9fe1a85ec53ULL;
}

static NOINLINE uint64_t mix_xs(uint64_t x)
{
	x ^= x >> 12;
	x ^= x << 25;
	return x ^ (x >> 27);
}

static NOINLINE uint64_t mix_add(uint64_t x)
{
	return hash_step(x, 0xabcdef) + 0x2545f4914f6cdd1dULL;
}

typedef uint64_t (*work_fn)(uint64_t);

static const work_fn work_table[4] = { mix_rot, mix_mul, mix_xs, mix_add };

/* Leaf of the setjmp path: escapes with longjmp on 1/16 of the inputs. */
static NOINLINE uint64_t risky_leaf(uint64_t x, jmp_buf *jb)
{
	x = hash_step(x, 0x1234);
	if ((x & 15) == 0)
		longjmp(*jb, (int)(x >> 56) | 1);
	return x;
}

static NOINLINE uint64_t risky_mid(uint64_t x, jmp_buf *jb)
{
	return risky_leaf(x ^ 0x55, jb) + 1;
}

static NOINLINE uint64_t guarded(uint64_t x)
{
	jmp_buf jb;
	int v = setjmp(jb);

	if (v != 0)
		return 0xdead0000u + (unsigned)v;
	return risky_mid(x, &jb);
}

static NOINLINE uint64_t work_item(uint64_t seed, uint64_t i)
{
	uint64_t buf[WORK_BUF];
	uint64_t h = hash_step(seed, i);
	uint64_t acc = seed;

	for (unsigned k = 0; k < WORK_BUF; k++) {
		h = hash_step(h, k);
		buf[k] = h;
	}
	sort_u64(buf, WORK_BUF);
	for (unsigned k = 0; k < WORK_BUF; k++)
		acc = work_table[(buf[k] >> 11) & 3](acc ^ buf[k]);
	return acc + guarded(acc);
}

NOINLINE uint64_t work_run(uint64_t seed, uint64_t first, uint64_t count)
{
	uint64_t sum = 0;

	for (uint64_t i = first; i < first + count; i++)
		sum = sum * 31 + work_item(seed, i);
	return sum;
}

/* noipa: no clone specialized on a constant `k` that could fold the load. */
__attribute__((noipa)) uint64_t work_table_entry(unsigned k)
{
	const work_fn *volatile table = work_table;

	return (uint64_t)(uintptr_t)table[k % 4];
}

unsigned work_table_size(void)
{
	return 4;
}

/* ---- worker pool ------------------------------------------------------ */

static uint64_t worker_seed(unsigned id)
{
	return 0x1000 + id;
}

static void *worker_main(void *arg)
{
	struct work_worker *w = arg;
	struct work_pool *p = w->pool;
	uint64_t ref = work_run(worker_seed(w->id), 0, p->lap_items);

	while (!atomic_load_explicit(&p->stop, memory_order_acquire)) {
		if (work_run(worker_seed(w->id), 0, p->lap_items) != ref)
			w->mismatches++;
		w->laps++;
	}
	w->result = work_run(worker_seed(w->id) * 7, 0, p->final_items);
	return NULL;
}

void work_pool_start(struct work_pool *p, unsigned n, uint64_t lap_items,
		     uint64_t final_items, int stop_now)
{
	check(n <= WORK_MAX_THREADS, "too many workers: %u", n);
	p->n = n;
	p->lap_items = lap_items;
	p->final_items = final_items;
	atomic_store(&p->stop, stop_now ? 1 : 0);
	for (unsigned i = 0; i < n; i++) {
		struct work_worker *w = &p->w[i];

		w->id = i;
		w->pool = p;
		w->laps = w->mismatches = w->result = 0;
		check(pthread_create(&w->th, NULL, worker_main, w) == 0,
		      "pthread_create worker %u", i);
	}
}

uint64_t work_pool_stop(struct work_pool *p)
{
	uint64_t mismatches = 0;

	atomic_store_explicit(&p->stop, 1, memory_order_release);
	for (unsigned i = 0; i < p->n; i++) {
		check(pthread_join(p->w[i].th, NULL) == 0, "pthread_join");
		fprintf(stderr, "worker %u: %llu laps, %llu mismatches\n", i,
			(unsigned long long)p->w[i].laps,
			(unsigned long long)p->w[i].mismatches);
		mismatches += p->w[i].mismatches;
	}
	return mismatches;
}

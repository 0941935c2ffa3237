/* Small helpers shared by every module: monotonic time, growing arrays. */
#ifndef OCOLOS_CORE_UTIL_H
#define OCOLOS_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t core_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Make room for one more element of `elem` bytes in *arr (which holds *n of
 * *cap). Returns 0 or -1 on allocation failure (then *arr is unchanged). */
int core_grow(void **arr, size_t *cap, size_t n, size_t elem);
/* The same for room for `want` elements in all (doubling). 0 or -1. */
int core_reserve(void **arr, size_t *cap, size_t want, size_t elem);

/* Clear `len` bytes at `p`, then free it (see util.c for why). NULL is fine. */
void core_free_clear(void *p, size_t len);

/* Tests only: SIGKILL the calling process the n-th time it reaches the
 * point named by OCOLOS_TEST_KILL_AT=POINT[:n] (n defaults to 1), to show
 * what the next context finds when an agent dies exactly there. Without
 * that variable (read the first time any point is reached), nothing. */
void core_test_kill_at(const char *point);

/* qsort comparator of uint64_t values, ascending. */
int core_cmp_u64(const void *a, const void *b);

/* Is `w` one of the `n` ascending values at `v`? (Binary search.) */
static inline int core_sorted_has(const uint64_t *v, size_t n, uint64_t w)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] < w)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo] == w;
}

#endif

/* Small helpers shared by every module (util.h). */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/*
 * Growing an array moves it; the block left behind is cleared first. Why:
 * in the calling process, retirement scans all writable memory for words
 * pointing into an old code version (inject/scan.c), and the library's own
 * freed buffers — samples taken in it, plans and tables naming its
 * addresses — would otherwise pin it forever. core_free_clear() does the
 * same for buffers freed outright.
 */
int core_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	return n < *cap ? 0 : core_reserve(arr, cap, n + 1, elem);
}

int core_reserve(void **arr, size_t *cap, size_t want, size_t elem)
{
	if (want <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2 / (elem ? elem : 1))
			return -1;
		ncap *= 2;
	}
	void *p = malloc(ncap * elem);
	if (!p)
		return -1;
	if (*arr) {
		memcpy(p, *arr, *cap * elem);
		core_free_clear(*arr, *cap * elem);
	}
	*arr = p;
	*cap = ncap;
	return 0;
}

void core_free_clear(void *p, size_t len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	free(p);
}

int core_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A process killed at a random moment (tests/pid: agent-kill) rarely dies
 * in the few instructions between two steps of a round that the state
 * record must cover together; naming the point makes each such moment a
 * test of its own (agent-die-at). The variable is read once per process
 * (tests set it before the process starts): one point sits inside the
 * stop-the-world pause, which should not walk the environment each round. */
void core_test_kill_at(const char *point)
{
	static const char *_Atomic want;
	static _Atomic int looked;
	static unsigned hits;
	if (!atomic_load(&looked)) {
		atomic_store(&want, getenv("OCOLOS_TEST_KILL_AT"));
		atomic_store(&looked, 1);
	}
	const char *w = atomic_load(&want);
	size_t len = strlen(point);
	if (!w || strncmp(w, point, len) || (w[len] != '\0' && w[len] != ':'))
		return;
	unsigned n = w[len] == ':' ? (unsigned)strtoul(w + len + 1, NULL, 10) : 1;
	if (__atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED) >= (n ? n : 1))
		raise(SIGKILL);
}

/*
 * Target of the pid-mode tests: a plain multi-threaded C program that knows
 * nothing of libocolos (it is built without it, only with -O2
 * -fno-jump-tables -Wl,--emit-relocs) and checks its own results.
 *
 *   pid_target [--threads N] [--exit-after MS] [--exit-code N] [--block-reserve]
 *              [--block-at OFF]
 *
 * Each worker computes a reference lap, then repeats the same lap until the
 * program is told to stop, counting laps whose checksum differs from the
 * reference (code that a round broke would show up here). When stopped
 * (SIGTERM/SIGINT, or --exit-after elapsed) each worker runs a fixed final
 * phase; stdout gets only timing-free lines (the final checksums and "ok"
 * or "MISMATCH n"), so every run prints the same text however long it ran
 * and whatever was done to it meanwhile. Lap counts go to stderr.
 *
 * --block-reserve maps PROT_NONE over every free page from the end of the
 * image to image start + 2 GiB, so no range within branch reach is left for
 * C1 (the OCOLOS_ERESERVE test). --block-at OFF (hex) maps 2 MiB PROT_NONE
 * at the image's first mapping + OFF (for PIE: the load bias + OFF), where
 * an artifact's code may have been built to go (the OCOLOS_ETAKEN test). Exit status: --exit-code (default 0) if no
 * lap mismatched, else 1.
 *
 * Not here: anything that depends on the library; the drivers observe this
 * program only from outside (/proc, its output, its exit status).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "crash_report.h"

#define NOINLINE __attribute__((noinline))
#define MAX_THREADS 8
#define LAP_ITEMS 3000	  /* a few ms: threads return to their loop often */
#define FINAL_ITEMS 40000 /* fixed work after the stop */
#define BUF 24

static atomic_int stop_flag;

static NOINLINE uint64_t hash_step(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

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

/* Reached only through `mixers`: a const table of function pointers, i.e.
 * static pointer slots with data relocations (.data.rel.ro when PIE). */
static NOINLINE uint64_t mix_rot(uint64_t x) { return (x << 17 | x >> 47) ^ 0x5bd1e995u; }
static NOINLINE uint64_t mix_mul(uint64_t x) { return x * 0xc2b2ae3d27d4eb4fULL + 1; }
static NOINLINE uint64_t mix_xor(uint64_t x) { return x ^ (x >> 29) ^ (x << 11); }
static NOINLINE uint64_t mix_add(uint64_t x) { return x + (x >> 7) + 0x165667b19e3779f9ULL; }

static uint64_t (*const mixers[4])(uint64_t) = { mix_rot, mix_mul, mix_xor, mix_add };

/* Recursion: a call chain BOLT may split across C0 and C1. */
static NOINLINE uint64_t fold(const uint64_t *a, size_t n)
{
	if (n <= 2)
		return n ? hash_step(a[0], n > 1 ? a[1] : 0) : 0;
	return hash_step(fold(a, n / 2), fold(a + n / 2, n - n / 2));
}

static NOINLINE uint64_t one_item(uint64_t seed, uint64_t i)
{
	uint64_t buf[BUF];
	uint64_t x = hash_step(seed, i);
	for (int k = 0; k < BUF; k++) {
		x = mixers[(x >> 7) & 3](x + (uint64_t)k);
		buf[k] = x;
	}
	sort_u64(buf, BUF);
	return fold(buf, BUF);
}

static NOINLINE uint64_t work_run(uint64_t seed, uint64_t first, uint64_t count)
{
	uint64_t h = seed;
	for (uint64_t i = first; i < first + count; i++)
		h = hash_step(h, one_item(seed, i));
	return h;
}

struct worker {
	pthread_t th;
	unsigned id;
	uint64_t laps, mismatches, result;
};

static void *worker_main(void *p)
{
	struct worker *w = p;
	uint64_t seed = 1000 + w->id;
	uint64_t ref = work_run(seed, 0, LAP_ITEMS);
	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		w->mismatches += work_run(seed, 0, LAP_ITEMS) != ref;
		w->laps++;
	}
	w->result = work_run(seed + 77, 0, FINAL_ITEMS);
	return NULL;
}

/* Fill every free page of [lo, hi) with PROT_NONE, as /proc/self/maps
 * shows it. Returns the bytes mapped. */
static uint64_t block_range(uint64_t lo, uint64_t hi)
{
	FILE *f = fopen("/proc/self/maps", "r");
	uint64_t cur = lo, total = 0;
	char line[512];
	uint64_t gaps[64][2];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f) && n < 63) {
		unsigned long long s, e;
		if (sscanf(line, "%llx-%llx", &s, &e) != 2 || e <= cur)
			continue;
		if (s >= hi)
			break;
		if (s > cur) {
			gaps[n][0] = cur;
			gaps[n++][1] = s;
		}
		cur = e;
	}
	fclose(f);
	if (cur < hi) {
		gaps[n][0] = cur;
		gaps[n++][1] = hi;
	}
	for (int i = 0; i < n; i++) {
		void *a = mmap((void *)gaps[i][0], gaps[i][1] - gaps[i][0], PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
		if (a != MAP_FAILED)
			total += gaps[i][1] - gaps[i][0];
	}
	return total;
}

/* The image: from the lowest to the highest mapping of our own file. */
static void image_bounds(uint64_t *lo, uint64_t *hi)
{
	char exe[4096], line[4096 + 128];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	FILE *f = fopen("/proc/self/maps", "r");
	*lo = *hi = 0;
	if (n <= 0 || !f) {
		if (f)
			fclose(f);
		return;
	}
	exe[n] = '\0';
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		char *path = strchr(line, '/');
		if (!path || sscanf(line, "%llx-%llx", &s, &e) != 2)
			continue;
		path[strcspn(path, "\n")] = '\0';
		if (strcmp(path, exe))
			continue;
		if (!*lo)
			*lo = s;
		*hi = e;
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	unsigned nthreads = 2;
	long exit_after_ms = -1;
	int exit_code = 0, block = 0;
	unsigned long long block_at = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			nthreads = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--exit-after") && i + 1 < argc)
			exit_after_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exit-code") && i + 1 < argc)
			exit_code = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--block-reserve"))
			block = 1;
		else if (!strcmp(argv[i], "--block-at") && i + 1 < argc)
			block_at = strtoull(argv[++i], NULL, 16);
		else {
			fprintf(stderr, "usage: %s [--threads N] [--exit-after MS] [--exit-code N] "
				"[--block-reserve] [--block-at OFF]\n", argv[0]);
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > MAX_THREADS)
		nthreads = 2;

	crash_report_install();
	/* Blocked before the workers start, so they inherit the mask and only
	 * the main thread's sigtimedwait() takes the stop signals. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (block) {
		uint64_t lo, hi;
		image_bounds(&lo, &hi);
		uint64_t got = lo ? block_range((hi + 4095) & ~4095ull, lo + (2ull << 30)) : 0;
		fprintf(stderr, "pid_target: blocked %llu MiB above the image\n",
			(unsigned long long)(got >> 20));
	}
	if (block_at) {
		uint64_t lo, hi;
		image_bounds(&lo, &hi);
		void *a = mmap((void *)(uintptr_t)(lo + block_at), 2ull << 20, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
		fprintf(stderr, "pid_target: 0x%llx %s\n", (unsigned long long)(lo + block_at),
			a == MAP_FAILED ? "could not be blocked" : "blocked");
	}

	static struct worker w[MAX_THREADS];
	for (unsigned i = 0; i < nthreads; i++) {
		w[i].id = i;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i])) {
			fprintf(stderr, "pid_target: pthread_create failed\n");
			return 1;
		}
	}

	struct timespec ts = { exit_after_ms / 1000, (exit_after_ms % 1000) * 1000000 };
	int sig;
	do
		sig = sigtimedwait(&set, NULL, exit_after_ms >= 0 ? &ts : NULL);
	while (sig < 0 && errno == EINTR);

	atomic_store(&stop_flag, 1);
	uint64_t laps = 0, bad = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(w[i].th, NULL);
		laps += w[i].laps;
		bad += w[i].mismatches;
		printf("worker %u final %016llx\n", i, (unsigned long long)w[i].result);
	}
	fprintf(stderr, "pid_target %d: %llu laps, %llu mismatched\n", (int)getpid(),
		(unsigned long long)laps, (unsigned long long)bad);
	if (bad)
		printf("MISMATCH %llu\n", (unsigned long long)bad);
	else
		printf("ok\n");
	return bad ? 1 : exit_code;
}

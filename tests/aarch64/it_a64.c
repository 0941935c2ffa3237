/*
 * AArch64 integration programs beyond the shared ones, from one source:
 *
 *   it_heap (-DIT_HEAP)  BOLT 19 places new code right after the image,
 *                        where the brk heap grows. The program grows its
 *                        heap by 64 MiB of small blocks before the round:
 *                        with the library's early reservation the heap
 *                        cannot take that range and the round succeeds
 *                        with C1 inside it; `noreserve` mode (early
 *                        reservation disabled) shows the heap really
 *                        grows through the range, and the round then
 *                        still succeeds: the library reserves a range
 *                        above the heap at round time and points BOLT 19
 *                        there (a copy of the binary with its last
 *                        segment extended); C1 must lie above the heap.
 *   it_far (-DIT_FAR)    a 200 MiB .bss puts BOLT's new code beyond BL
 *                        reach (+-128 MiB) of the code: call sites are
 *                        redirected through veneers, C1's calls to C0 go
 *                        through BOLT's stubs (BOLT runs unsplit there).
 *
 *   PROG plain | round | noreserve (it_heap only: a round, with
 *        OCOLOS_NO_EARLY_RESERVE=1 set for it and for its plain run)
 * stdout: only deterministic checksums (run_a64.sh compares plain/round).
 */
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "work.h"

#define WORKERS 3
#define LAP_ITEMS 4000
#define FINAL_ITEMS 200000
#define WARMUP_MS 1000
#define PROFILE_MS 1500

#ifdef IT_FAR
/* Pushes the end of the image 200 MiB up; global and read back, so the
 * compiler cannot drop it. */
char far_bss[200u << 20];
#endif

struct image { uint64_t text_lo, text_hi, end; };

static int image_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct image *im = data;
	(void)size;
	im->text_lo = UINT64_MAX;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if ((ph->p_flags & PF_X) && lo < im->text_lo)
			im->text_lo = lo;
		if ((ph->p_flags & PF_X) && hi > im->text_hi)
			im->text_hi = hi;
		if (hi > im->end)
			im->end = hi;
	}
	return 1; /* the executable only */
}

/* Start of the range BOLT 19 gives new code: the image end, 64 KiB-aligned. */
static uint64_t bolt_range_start(const struct image *im)
{
	return (im->end + 0xffff) & ~0xffffull;
}

#ifdef IT_HEAP
#define HEAP_BLOCKS 16384 /* x 4 KiB: 64 MiB, below the mmap threshold each */
static unsigned char *blocks[HEAP_BLOCKS];
static uint64_t heap_end; /* brk after growing */

/* Grow the heap; returns a checksum of what was written (deterministic). */
static uint64_t grow_heap(const struct image *im, int expect_through)
{
	uint64_t sum = 0;
	char *brk0 = sbrk(0);
	for (unsigned i = 0; i < HEAP_BLOCKS; i++) {
		blocks[i] = malloc(4000);
		check(blocks[i] != NULL, "malloc %u", i);
		memset(blocks[i], (int)(i & 0xff), 4000);
	}
	for (unsigned i = 0; i < HEAP_BLOCKS; i += 97)
		sum = sum * 31 + blocks[i][i % 4000];
	uint64_t brk1 = (uint64_t)(uintptr_t)sbrk(0), start = bolt_range_start(im);
	heap_end = brk1;
	fprintf(stderr, "heap: brk %p -> 0x%llx; BOLT's range starts at 0x%llx\n", (void *)brk0,
		(unsigned long long)brk1, (unsigned long long)start);
	if (expect_through)
		check(brk1 > start + (16u << 20),
		      "without the reservation the heap should grow through 0x%llx (brk 0x%llx)",
		      (unsigned long long)start, (unsigned long long)brk1);
	else
		check(brk1 <= start || (uint64_t)(uintptr_t)brk0 > start,
		      "the heap grew into BOLT's range at 0x%llx (brk 0x%llx)",
		      (unsigned long long)start, (unsigned long long)brk1);
	for (unsigned i = 0; i < HEAP_BLOCKS; i++)
		check(!blocks[i] || (blocks[i] + 4000 <= (unsigned char *)(uintptr_t)start ||
				     (uint64_t)(uintptr_t)blocks[i] >= start + (16u << 20)) ||
			      expect_through,
		      "heap block %u at %p lies in BOLT's range", i, (void *)blocks[i]);
	return sum;
}
#endif

static void round_checks(int rc, const struct ocolos_stats *st, const struct image *im)
{
	test_print_stats(rc, st);
	check(rc == 0, "round: %s: %s", ocolos_strerror(rc), ocolos_last_error(NULL));
	check(st->functions_moved > 0 && st->call_sites_patched + st->entries_patched > 0,
	      "nothing redirected");
	check(st->threads_stopped >= WORKERS, "threads_stopped=%u", st->threads_stopped);
	check(!strcmp(st->sampler, "sigprof") || !strcmp(st->sampler, "perf-ip") ||
	      !strcmp(st->sampler, "perf-lbr"), "sampler '%s'", st->sampler);
	check(st->c1_addr >= bolt_range_start(im), "C1 at 0x%llx is below BOLT's range",
	      (unsigned long long)st->c1_addr);
	check((st->c1_addr & (sysconf(_SC_PAGESIZE) - 1)) == 0, "C1 not page-aligned");
	uint64_t dist = st->c1_addr + st->c1_bytes - im->text_lo;
#ifdef IT_FAR
	check(dist > (128u << 20), "C1 is within BL reach (%llu MiB): the test proves nothing",
	      (unsigned long long)(dist >> 20));
#else
	check(dist < (128u << 20), "C1 is %llu MiB from the code", (unsigned long long)(dist >> 20));
#endif
	test_check_no_wx();
	double share = test_c1_share(st, 2000, 1000, 20);
	fprintf(stderr, "share of binary samples in C1: %.3f\n", share);
	check(share >= 0.5, "only %.0f%% of the samples in the binary land in C1", share * 100);
}

int main(int argc, char **argv)
{
	static struct work_pool pool;
	struct image im = { 0 };
	check(argc == 2, "usage: %s plain|round|noreserve", argv[0]);
	int round = !strcmp(argv[1], "round"), noreserve = !strcmp(argv[1], "noreserve");
	test_watchdog(280);
	dl_iterate_phdr(image_cb, &im);
#ifdef IT_FAR
	far_bss[argc] = 1;
	check(((volatile char *)far_bss)[argc] == 1, "bss");
#endif
	uint64_t heap_sum = 0;
#ifdef IT_HEAP
	/* The plain run of the noreserve test runs without the reservation too. */
	check(!noreserve || getenv("OCOLOS_NO_EARLY_RESERVE"), "noreserve needs OCOLOS_NO_EARLY_RESERVE=1");
	heap_sum = grow_heap(&im, getenv("OCOLOS_NO_EARLY_RESERVE") != NULL);
#endif
	work_pool_start(&pool, WORKERS, LAP_ITEMS, FINAL_ITEMS, !(round || noreserve));
	if (round || noreserve) {
		test_sleep_ms(WARMUP_MS);
		OCOLOS_OPTS(ocolos_opts, o, .profile_ms = PROFILE_MS, .log_fn = test_log,
			    .log_user = (void *)"");
		OCOLOS_OPTS(ocolos_stats, st);
		int rc = ocolos_optimize_self(&o, &st);
		round_checks(rc, &st, &im);
#ifdef IT_HEAP
		/* Without the early range BOLT's own choice lies inside the heap:
		 * C1 must be where the round reserved instead, above it. */
		if (noreserve)
			check(st.c1_addr >= heap_end, "C1 at 0x%llx overlaps the heap (brk 0x%llx)",
			      (unsigned long long)st.c1_addr, (unsigned long long)heap_end);
#endif
	}
	uint64_t mine = work_run(7, 0, 20000);
	check(work_pool_stop(&pool) == 0, "a lap computed a different checksum");
	for (unsigned i = 0; i < WORKERS; i++)
		printf("worker %u: %016llx\n", i, (unsigned long long)pool.w[i].result);
	printf("main: %016llx\nheap: %016llx\n", (unsigned long long)mine, (unsigned long long)heap_sum);
	return 0;
}

/*
 * The retirement scan (inject/scan.c) reads only the pages that hold data:
 * a word naming a return site, written into one page of a large sparse
 * reservation, is found without the reservation being read, by both means
 * the kernel offers (PAGEMAP_SCAN ranges on Linux 6.7+, per-page pagemap
 * entries before). Return sites only: a word elsewhere in the range does
 * not count, nor does a page we read but never wrote (the zero page), nor
 * the landing pad a C++ exception's header keeps.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "inject/inject.h"
#include "proc/proc.h"
#include "proc/target.h"

#include "check.h"
#include "pretend_version.h"

/* A writable mapping of a terabyte or more (AddressSanitizer's shadow,
 * when the library under test is built with it)? */
static int huge_mapping(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo, hi;
	char perms[8];
	int huge = 0;
	while (f && fscanf(f, "%lx-%lx %7s%*[^\n]", &lo, &hi, perms) == 3)
		huge |= perms[1] == 'w' && hi - lo >= (1ul << 40);
	if (f)
		fclose(f);
	return huge;
}

static const size_t RESERVE = 16ull << 30;
#define BASE PRETEND_BASE

/* Writes BASE + delta at `p` without main's frame holding the value. */
static __attribute__((noinline)) void put(char *p, uint64_t delta)
{
	*(volatile uint64_t *)p = BASE + delta;
}

int main(void)
{
	struct proc_target t;
	struct pretend *b = pretend_open(&t);
	char *r = mmap(NULL, RESERVE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	check(r != MAP_FAILED, "cannot reserve 16 GiB");
	volatile uint64_t sink = 0;
	for (size_t off = 0; off < RESERVE; off += 1ull << 30)
		sink += *(volatile uint64_t *)(r + off + 4096); /* read, never written */
	(void)sink;
	struct proc_live_thread me = { .sp = (uint64_t)(uintptr_t)__builtin_frame_address(0) - 512 };
	char *w = r + (9ull << 30) + 8;

	for (int entries = 0; entries <= 1; entries++) {
		/* Per-page entries over AddressSanitizer's terabytes of shadow
		 * take minutes: that path (kernels before 6.7) is checked in the
		 * build without it. */
		if (entries && huge_mapping()) {
			fprintf(stderr, "entries=1: not checked (a mapping of a terabyte or more)\n");
			break;
		}
		uint64_t scanned = 0;
		put(w, 24); /* in the range, not a return site */
		expect(pretend_scan(&t, b, 1, entries, &me, 1, &scanned) == 0,
		       "entries=%d: a word that is no return site counted", entries);
		expect(scanned < RESERVE / 4, "entries=%d: %llu MiB read: the reservation was read whole",
		       entries, (unsigned long long)(scanned >> 20));
		put(w, 16);
		expect(pretend_scan(&t, b, 1, entries, &me, 1, &scanned) == 1,
		       "entries=%d: the return site in a sparse reservation was missed", entries);
		fprintf(stderr, "entries=%d: %llu KiB read\n", entries,
			(unsigned long long)(scanned >> 10));
		put(w, 24); /* any word in the range counts without a site list */
		expect(pretend_scan(&t, b, 0, entries, &me, 1, &scanned) == 1,
		       "entries=%d: a word in the range missed without sites", entries);
		put(w, 4096 + 8); /* past the range */
		expect(pretend_scan(&t, b, 0, entries, &me, 1, &scanned) == 0,
		       "entries=%d: a word past the range counted", entries);
	}
	/* A C++ exception's header: its landing pad (catchTemp) and LSDA
	 * pointers are dead once the throw is over (scan.c says why), found
	 * by the exception class, 16-byte aligned, 16 to 32 bytes on — also
	 * when that word lies past the 1 MiB the scan reads at once. With
	 * return sites known only catchTemp (16 bytes before) is exempted. */
	char *x = r + (10ull << 30);
	madvise(x, (2u << 20), MADV_NOHUGEPAGE); /* the piece must start at x */
	for (size_t off = 0; off < (1u << 20) + 4096; off += 4096)
		x[off] = 1; /* one piece of present pages, over 1 MiB */
	const uint64_t cls[] = { 0x474e5543432b2b00ull, 0x474e5543432b2b01ull,
				 0x434c4e47432b2b00ull };
	for (size_t c = 0; c < 3; c++)
		for (size_t before = 8; before <= 32; before += 8)
			for (int edge = 0; edge <= 1; edge++)
				for (int sites = 0; sites <= 1; sites++) {
					char *cw = x + (edge ? (1u << 20) : 128); /* 16-aligned */
					char *site = cw - before;
					int exempt = before == 16 || (!sites && before >= 24);
					put(site, sites ? 16 : 24);
					*(volatile uint64_t *)cw = cls[c];
					expect(pretend_scan(&t, b, sites, 0, &me, 1, NULL) == !exempt,
					       "a word %zu bytes before exception class %#llx (edge %d, "
					       "sites %d) %s", before, (unsigned long long)cls[c],
					       edge, sites, exempt ? "counted" : "was exempted");
					*(volatile uint64_t *)cw = cls[c] ^ 0x100;
					expect(pretend_scan(&t, b, sites, 0, &me, 1, NULL) == 1,
					       "a word was missed: %zu bytes before it, no class",
					       before);
					*(volatile uint64_t *)cw = 0;
					*(volatile uint64_t *)site = 0;
				}
	/* A class word 8 bytes off 16: no exception header (a stale word next
	 * to a return address pushed on a stack, say): the site counts. */
	*(volatile uint64_t *)(x + 128 + 8) = cls[0];
	put(x + 128 + 8 - 16, 16);
	expect(pretend_scan(&t, b, 1, 0, &me, 1, NULL) == 1,
	       "a return site 16 bytes before a misaligned exception class did not count");
	*(volatile uint64_t *)(x + 128 + 8) = 0;
	*(volatile uint64_t *)(x + 128 - 8) = 0;
	/* A thread on a coroutine stack in the middle of a pool: what lies
	 * below its stack pointer in the pool may be other stacks, suspended
	 * (read); in the thread's own stack (its descriptor, the thread
	 * pointer, there) it is dead (not read). */
	size_t ps = 1 << 20;
	char *pool = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(pool != MAP_FAILED && mprotect(pool, 4096, PROT_NONE) == 0, "mmap");
	put(pool + 8192, 16);
	/* Its thread pointer elsewhere: in this file's data, a mapping of
	 * its own whatever the kernel merges. */
	static uint64_t elsewhere;
	struct proc_live_thread on_pool[2] = { me, { (uint64_t)(uintptr_t)pool + ps / 2,
						     (uint64_t)(uintptr_t)&elsewhere, 1 } };
	expect(pretend_scan(&t, b, 1, 0, on_pool, 2, NULL) == 1, "a suspended stack below a "
	       "running coroutine's, in the same pool, was not read");
	on_pool[1].tp = (uint64_t)(uintptr_t)pool + ps - 2048; /* the pool as its own stack */
	expect(pretend_scan(&t, b, 1, 0, on_pool, 2, NULL) == 0, "a thread's own stack below its "
	       "stack pointer was read");
	munmap(pool, ps);
	munmap(r, RESERVE);
	munmap(b, 4096);
	proc_target_close(&t);
	test_done();
}

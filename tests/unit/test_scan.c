/*
 * The retirement scan (inject/scan.c) reads only the pages that hold data:
 * a word naming a return site, written into one page of a large sparse
 * reservation, is found without the reservation being read, by both means
 * the kernel offers (PAGEMAP_SCAN ranges on Linux 6.7+, per-page pagemap
 * entries before). Return sites only: a word elsewhere in the range does
 * not count, nor does a page we read but never wrote (the zero page).
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "inject/inject.h"
#include "proc/target.h"

#include "check.h"

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
/* A pretend version: [BASE, BASE + 4096), its return site at BASE + 16. */
#define BASE 0x7e5700000000ull

/* The scan reads this process, so what names the pretend version's
 * addresses (the ranges, the site list) lives in a page it is told to skip,
 * and is handled only in frames below `sp`, which it does not read. */
struct book {
	uint64_t ranges[1][2];
	uint64_t site;
	const uint64_t *sv[1];
	size_t ns[1];
	uint64_t skip[1][2];
};

static __attribute__((noinline)) int scan(struct proc_target *t, struct book *b, int with_sites,
					  int entries, uint64_t sp, uint64_t *scanned)
{
	b->ranges[0][0] = BASE;
	b->ranges[0][1] = BASE + 4096;
	b->site = BASE + 16;
	b->sv[0] = with_sites ? &b->site : NULL;
	b->ns[0] = with_sites ? 1 : 0;
	b->skip[0][0] = (uint64_t)(uintptr_t)b;
	b->skip[0][1] = (uint64_t)(uintptr_t)b + 4096;
	struct inject_scan_opts so = { .guard = 0 };
	so.sites = b->sv;
	so.nsites = b->ns;
	so.skip = (const uint64_t (*)[2])b->skip;
	so.nskip = 1;
	struct proc_live_thread me = { .sp = sp };
	so.threads = &me;
	so.nthreads = 1;
	so.pagemap_entries = entries;
	uint8_t found = 9;
	struct core_err err = { 0 };
	int rc = inject_scan_memory(t, (const uint64_t (*)[2])b->ranges, 1, &so, &found, scanned,
				    &err);
	check(rc == 0, "scan: %s", err.msg);
	memset(b, 0, sizeof(*b));
	return found;
}

/* Writes BASE + delta at `p` without main's frame holding the value. */
static __attribute__((noinline)) void put(char *p, uint64_t delta)
{
	*(volatile uint64_t *)p = BASE + delta;
}

int main(void)
{
	struct core_log log = { 0 };
	struct core_err err = { 0 };
	struct proc_target t;
	check(proc_target_open(&t, getpid(), &log, &err) == 0, "target: %s", err.msg);
	struct book *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *r = mmap(NULL, RESERVE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	check(b != MAP_FAILED && r != MAP_FAILED, "cannot reserve 16 GiB");
	volatile uint64_t sink = 0;
	for (size_t off = 0; off < RESERVE; off += 1ull << 30)
		sink += *(volatile uint64_t *)(r + off + 4096); /* read, never written */
	(void)sink;
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0) - 512;
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
		expect(scan(&t, b, 1, entries, sp, &scanned) == 0,
		       "entries=%d: a word that is no return site counted", entries);
		expect(scanned < RESERVE / 4, "entries=%d: %llu MiB read: the reservation was read whole",
		       entries, (unsigned long long)(scanned >> 20));
		put(w, 16);
		expect(scan(&t, b, 1, entries, sp, &scanned) == 1,
		       "entries=%d: the return site in a sparse reservation was missed", entries);
		fprintf(stderr, "entries=%d: %llu KiB read\n", entries,
			(unsigned long long)(scanned >> 10));
		put(w, 24); /* any word in the range counts without a site list */
		expect(scan(&t, b, 0, entries, sp, &scanned) == 1,
		       "entries=%d: a word in the range missed without sites", entries);
		put(w, 4096 + 8); /* past the range */
		expect(scan(&t, b, 0, entries, sp, &scanned) == 0,
		       "entries=%d: a word past the range counted", entries);
	}
	munmap(r, RESERVE);
	munmap(b, 4096);
	proc_target_close(&t);
	test_done();
}

/*
 * A pretend code version for tests of the retirement scan (inject/scan.c)
 * on this very process: [PRETEND_BASE, PRETEND_BASE + 4096), its one
 * return site at PRETEND_BASE + 16; nothing is mapped there. The scan
 * reads this process, so what names the version's addresses (the range,
 * the site list) lives in a page it is told to skip (`struct pretend`,
 * mmap'ed by the caller), and is handled only in frames below the
 * threads' stack pointers given, which it does not read.
 */
#ifndef OCOLOS_TESTS_PRETEND_VERSION_H
#define OCOLOS_TESTS_PRETEND_VERSION_H

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inject/inject.h"
#include "proc/target.h"

#include "check.h"

#define PRETEND_BASE 0x7e5700000000ull

struct pretend {
	uint64_t ranges[1][2];
	uint64_t site;
	const uint64_t *sv[1];
	size_t ns[1];
	uint64_t skip[1][2];
	struct proc_live_thread threads[4];
};

/* 1 if the scan finds a word in the version (only its return site counts
 * `with_sites`), 0 if not; `entries` as inject_scan_opts.pagemap_entries. */
static __attribute__((noinline, unused)) int
pretend_scan(struct proc_target *t, struct pretend *b, int with_sites, int entries,
	     const struct proc_live_thread *threads, size_t nthreads, uint64_t *scanned)
{
	b->ranges[0][0] = PRETEND_BASE;
	b->ranges[0][1] = PRETEND_BASE + 4096;
	b->site = PRETEND_BASE + 16;
	b->sv[0] = with_sites ? &b->site : NULL;
	b->ns[0] = with_sites ? 1 : 0;
	b->skip[0][0] = (uint64_t)(uintptr_t)b;
	b->skip[0][1] = (uint64_t)(uintptr_t)b + 4096;
	check(nthreads <= 4, "at most 4 threads");
	memcpy(b->threads, threads, nthreads * sizeof(*threads));
	struct inject_scan_opts so = { .guard = 0 };
	so.sites = b->sv;
	so.nsites = b->ns;
	so.skip = (const uint64_t (*)[2])b->skip;
	so.nskip = 1;
	so.threads = b->threads;
	so.nthreads = nthreads;
	so.pagemap_entries = entries;
	uint8_t found = 9;
	uint64_t dummy;
	struct core_err err = { 0 };
	int rc = inject_scan_memory(t, (const uint64_t (*)[2])b->ranges, 1, &so, &found,
				    scanned ? scanned : &dummy, &err);
	check(rc == 0, "scan: %s", err.msg);
	memset(b, 0, sizeof(*b));
	return found;
}

/* This process as a target, and the page for struct pretend. */
static __attribute__((unused)) struct pretend *pretend_open(struct proc_target *t)
{
	struct core_log log = { 0 };
	struct core_err err = { 0 };
	check(proc_target_open(t, getpid(), &log, &err) == 0, "target: %s", err.msg);
	struct pretend *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
	check(b != MAP_FAILED, "mmap");
	return b;
}

#endif

/*
 * A conservative scan of a target's memory for words pointing into given
 * ranges — the heap half of deciding that an old code version can be
 * retired (the thread half is at a stop: switch.c watches PCs, registers
 * and stacks). Like a conservative garbage collector's: every aligned
 * 8-byte word of every writable mapping is looked at, and a word that
 * merely looks like such an address keeps the version mapped (costs
 * memory, never correctness). Which words count: with the version's return
 * sites known (the addresses right after its call instructions), only
 * those — the only addresses in a version that memory outside a running
 * thread can hold, once address-taking code yields C0 (keep_c0.c) and
 * slots lead to stubs (stubs.c): return addresses on a suspended stack,
 * the PC a setjmp buffer or getcontext saved. So a copy of the version's
 * base address in a stats struct, or the library's own bookkeeping, does
 * not pin it. What it catches that a stop does not: return addresses on
 * the stacks of suspended coroutines (heap or mmap'ed stacks), contexts
 * saved by getcontext/swapcontext, backtraces stored by the program, and,
 * demangled with glibc's pointer guard, the PCs of setjmp buffers
 * and the functions of atexit lists, which glibc stores mangled.
 *
 * Read through /proc/PID/mem (for the calling process too): a mapping that
 * cannot be read (a file mapping past its end, device memory) gives an
 * error for that piece instead of a signal.
 *
 * Only pages that hold data are read. A program may reserve far more
 * address space than it touches (AddressSanitizer's shadow is terabytes of
 * MAP_NORESERVE; allocators and language runtimes reserve arenas), and
 * reading an untouched page through /proc/PID/mem makes the kernel map it
 * (the zero page, but page tables for every 2 MiB of it): scanning such a
 * reservation page by page took minutes and gigabytes. A page never
 * touched holds zeros, which never equal a code address, so leaving it out
 * is exact. The kernel says which pages are present or swapped through
 * /proc/PID/pagemap: its PAGEMAP_SCAN ioctl (Linux 6.7) returns them as
 * ranges; older kernels give one entry per page, read only for mappings
 * too large to read whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "core/util.h"
#include "inject/inject.h"
#include "proc/proc.h"

#define CHUNK (1u << 20)

/* Does word `w`, at `at`, point into ranges[i] (at one of its return
 * sites, when known)? `exc`: the word's place in a C++ exception header,
 * or 0 (cxx_exception_field). */
static void check(const uint64_t (*ranges)[2], size_t n, const struct inject_scan_opts *so,
		  uint64_t w, uint64_t at, int exc, uint8_t *found)
{
	w = inject_code_word(w);
	for (size_t i = 0; i < n; i++) {
		int sites = so->sites && so->sites[i];
		if (exc == 2 || (exc && !sites))
			continue;
		if (w >= ranges[i][0] && w < ranges[i][1] &&
		    (!sites || core_sorted_has(so->sites[i], so->nsites[i], w))) {
			if (so->pins && !found[i])
				so->pins[i] = (struct inject_pin){ .kind = INJECT_PIN_MEMORY,
								   .where = at, .value = w };
			found[i] = 1;
		}
	}
}

/* glibc's PTR_DEMANGLE: on x86-64 rotate right by 0x11, then xor; on
 * AArch64 xor only (proc/pointer_guard.c). */
static uint64_t demangle(uint64_t w, uint64_t guard)
{
#if defined(__aarch64__)
	return w ^ guard;
#else
	return ((w >> 0x11) | (w << (64 - 0x11))) ^ guard;
#endif
}

/* PAGEMAP_SCAN's ABI (include/uapi/linux/fs.h, Linux 6.7), spelled out
 * because Debian 12's kernel headers predate it. */
struct pm_page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PM_PAGE_IS_PRESENT (1u << 3)
#define PM_PAGE_IS_SWAPPED (1u << 4)
#define PM_PAGE_IS_PFNZERO (1u << 5)
#define PM_PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
/* A mapping at most this large is read whole when the kernel cannot list
 * its present pages as ranges: cheaper than one pagemap entry per page. */
#define READ_WHOLE_MAX (64ull << 20)

struct pieces {
	uint64_t (*v)[2];
	size_t n, cap;
};

static int piece_add(struct pieces *p, uint64_t lo, uint64_t hi)
{
	if (p->n && p->v[p->n - 1][1] == lo) {
		p->v[p->n - 1][1] = hi;
		return 0;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		void *v = realloc(p->v, cap * sizeof(*p->v));
		if (!v)
			return -1;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n][0] = lo;
	p->v[p->n][1] = hi;
	p->n++;
	return 0;
}

/* The pieces of [lo, hi) whose pages hold data (present but not the shared
 * zero page, or swapped out), through PAGEMAP_SCAN. 1: the kernel has no
 * PAGEMAP_SCAN; -1: out of memory or an unexpected failure (the caller
 * then reads the whole range: never less than the exact scan). */
static int pieces_scan(int pmfd, uint64_t lo, uint64_t hi, struct pieces *out)
{
	struct pm_page_region vec[256];
	uint64_t from = lo;
	lo &= ~((uint64_t)sysconf(_SC_PAGESIZE) - 1); /* the kernel wants it aligned */
	while (lo < hi) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .start = lo, .end = hi,
			.vec = (uint64_t)(uintptr_t)vec, .vec_len = 256,
			.category_inverted = PM_PAGE_IS_PFNZERO,
			.category_mask = PM_PAGE_IS_PFNZERO,
			.category_anyof_mask = PM_PAGE_IS_PRESENT | PM_PAGE_IS_SWAPPED,
		};
		long r = ioctl(pmfd, PM_PAGEMAP_SCAN, &a);
		if (r < 0)
			return errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP ? 1 : -1;
		for (long i = 0; i < r; i++)
			if (piece_add(out, vec[i].start < from ? from : vec[i].start, vec[i].end))
				return -1;
		if (a.walk_end <= lo) /* no progress: do not loop */
			return -1;
		lo = a.walk_end;
	}
	return 0;
}

/* The same from one pagemap entry per page (bit 63 present, 62 swapped):
 * kernels before 6.7. */
static int pieces_pagemap(int pmfd, uint64_t lo, uint64_t hi, struct pieces *out)
{
	static const size_t N = 4096;
	const uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t *e = malloc(N * 8);
	if (!e)
		return -1;
	int rc = 0;
	for (uint64_t a = lo & ~(pg - 1); a < hi && !rc;) {
		size_t pages = (hi - a + pg - 1) / pg < N ? (size_t)((hi - a + pg - 1) / pg) : N;
		ssize_t got = pread(pmfd, e, pages * 8, (off_t)(a / pg * 8));
		if (got <= 0) {
			rc = -1;
			break;
		}
		for (size_t i = 0; i < (size_t)got / 8 && !rc; i++) {
			uint64_t p0 = a + pg * i, p1 = p0 + pg;
			if (e[i] >> 62)
				rc = piece_add(out, p0 < lo ? lo : p0, p1 > hi ? hi : p1);
		}
		a += (uint64_t)got / 8 * pg;
	}
	free(e);
	return rc;
}

/* Is the word at `a` in one of the skipped ranges? */
static int skipped(const struct inject_scan_opts *so, uint64_t a)
{
	for (size_t i = 0; i < so->nskip; i++)
		if (a >= so->skip[i][0] && a < so->skip[i][1])
			return 1;
	return 0;
}

/*
 * The fields of a C++ exception's header that name a version's code or
 * data: actionRecord, languageSpecificData and catchTemp (the landing pad).
 * The Itanium C++ ABI's header (__cxa_exception and
 * __cxa_dependent_exception, libstdc++'s and libc++abi's alike, on x86-64
 * and AArch64) ends with those three words, then adjustedPtr, then the
 * _Unwind_Exception, 16-byte aligned, whose first word is the exception
 * class: "GNUCC++" or "CLNGC++" and a 0 or 1 byte (primary or dependent).
 * They never keep a version mapped: the personality writes them in a
 * throw's search phase for its cleanup phase, which reads them while the
 * frame they belong to is still on the thread's stack (its return site in
 * the same version, seen at the stops) or, at the very end, in the
 * registers that jump to the landing pad; after the catch they are dead.
 * And a freed exception keeps them in the heap until the memory is reused:
 * in the soak by pid, a worker's freed exception kept the landing pad of a
 * catch in one_item's cold fragment — also a return site, after a call
 * that does not return — and with it a version, for hundreds of rounds.
 *
 * Returns k (2, 3 or 4) when the word at buf[w] (of a piece read at `a`
 * that ends at `to`, `len` bytes of it in buf) lies k words before such a
 * class word, else 0. A class word left in memory malloc hands out again
 * must not exempt a real return address near it: the class must be
 * 16-byte aligned (return addresses on an x86-64 stack, and the saved link
 * register of an AArch64 frame record, are 8 bytes off that), and where a
 * version's return sites are known only catchTemp (k = 2) is exempted
 * (check()); the other two point into the LSDA, never at a return site.
 */
static int cxx_exception_field(struct proc_target *t, const uint64_t *buf, size_t len, size_t w,
			       uint64_t a, uint64_t to)
{
	for (size_t k = 2; k <= 4; k++) {
		uint64_t at = a + 8 * (w + k), c;
		if ((at & 15) || at + 8 > to)
			continue;
		if (w + k < len / 8)
			c = buf[w + k];
		else if (proc_mem_read(t->memfd, at, &c, 8))
			continue;
		c &= ~1ull;
		if (c == 0x474e5543432b2b00ull /* GNUCC++ */ || c == 0x434c4e47432b2b00ull /* CLNGC++ */)
			return (int)k;
	}
	return 0;
}

static void scan_piece(struct proc_target *t, uint64_t from, uint64_t to, uint64_t *buf,
		       uint64_t lo, uint64_t hi, const uint64_t (*ranges)[2], size_t n,
		       const struct inject_scan_opts *so, uint8_t *found, uint64_t *scanned)
{
	uint64_t guard = so->guard;
	for (uint64_t a = from; a < to; a += CHUNK) {
		size_t len = to - a < CHUNK ? (size_t)(to - a) : CHUNK;
		if (proc_mem_read(t->memfd, a, buf, len))
			continue; /* unreadable piece: nothing there can be run */
		*scanned += len;
		for (size_t w = 0; w < len / 8; w++) {
			uint64_t v = buf[w], d = guard ? demangle(v, guard) : 0;
			int hit = (v >= lo && v < hi) || (d >= lo && d < hi);
			if (!hit || (so->nskip && skipped(so, a + 8 * w)))
				continue;
			if (v >= lo && v < hi)
				check(ranges, n, so, v, a + 8 * w,
				      cxx_exception_field(t, buf, len, w, a, to), found);
			if (guard)
				check(ranges, n, so, d, a + 8 * w, 0, found);
		}
	}
}

int inject_scan_memory(struct proc_target *t, const uint64_t (*ranges)[2], size_t n,
		       const struct inject_scan_opts *so, uint8_t *found, uint64_t *scanned,
		       struct core_err *err)
{
	const struct proc_live_thread *th = so->threads;
	size_t nth = so->nthreads;
	memset(found, 0, n);
	if (so->pins)
		memset(so->pins, 0, n * sizeof(*so->pins));
	*scanned = 0;
	if (!n)
		return 0;
	struct procmaps m = { 0 };
	int rc = core_procmaps_read(t->pid, &m, err);
	if (rc)
		return rc;
	uint64_t lo = UINT64_MAX, hi = 0; /* quick filter: the ranges' span */
	for (size_t i = 0; i < n; i++) {
		lo = ranges[i][0] < lo ? ranges[i][0] : lo;
		hi = ranges[i][1] > hi ? ranges[i][1] : hi;
	}
	uint64_t (*dead)[2] = NULL;
	size_t ndead = 0;
	uint64_t *buf = malloc(CHUNK);
	if (!buf || proc_dead_thread_stacks(t, &m, th, nth, &dead, &ndead)) {
		free(buf);
		core_procmaps_free(&m);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	/* No pagemap (a kernel without it, or /proc/PID/pagemap closed to
	 * us): every page is read, as exact, only slower. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)t->pid);
	int pmfd = open(path, O_RDONLY | O_CLOEXEC), have_scan = !so->pagemap_entries;
	struct pieces pc = { 0 };
	for (size_t k = 0; k < m.n; k++) {
		const struct procmaps_entry *e = &m.v[k];
		if (e->perms[0] != 'r' || e->perms[1] != 'w' || !strcmp(e->path, "[vvar]") ||
		    !strncmp(e->path, "/dev/", 5))
			continue;
		/* The library's own writable mappings (a version's unwinder
		 * record, inject/unwind.c) name versions for the library, never
		 * for the program. */
		if (!strncmp(e->path, "/memfd:ocolos-", 14))
			continue;
		if (so->skip_malloc && (!strcmp(e->path, "[heap]") ||
					(!e->path[0] && !(e->start & ((64ull << 20) - 1)))))
			continue;
		/* The stack of a thread that has exited, kept by glibc for
		 * the next, at the end of the mapping: nothing in it will run
		 * (thread_stacks.c). */
		uint64_t from = e->start, to = e->end;
		for (size_t d = 0; d < ndead; d++)
			if (dead[d][1] == e->end && dead[d][0] >= e->start && dead[d][0] < to)
				to = dead[d][0];
		if (to == from)
			continue;
		/* A thread's own stack: its live part only, the 128-byte red
		 * zone below the stack pointer included; what lies below is
		 * dead by the ABI (a signal frame pushed there since, stale
		 * locals). Own: the process's stack, or a mapping with a guard
		 * right below (a stack of its own, not merged with memory
		 * below) holding the thread's descriptor (its thread pointer)
		 * above its stack pointer — or any such guarded mapping when
		 * the thread pointer is not known. A thread running elsewhere
		 * (a coroutine stack in a pool, sigaltstack) may have
		 * suspended stacks below it in the same mapping: all of it is
		 * read. */
		int guarded = k && m.v[k - 1].end == e->start && !strcmp(m.v[k - 1].perms, "---p");
		for (size_t k2 = 0; k2 < nth; k2++) {
			uint64_t tp = th[k2].tp;
			int own = !strcmp(e->path, "[stack]") ||
				  (guarded && (!tp || (tp >= e->start && tp < e->end && th[k2].sp < tp)));
			if (own && th[k2].sp >= e->start && th[k2].sp < to && th[k2].sp - 128 > from)
				from = (th[k2].sp - 128) & ~7ull;
		}
		pc.n = 0;
		int prc = 1;
		if (pmfd >= 0 && have_scan)
			prc = pieces_scan(pmfd, from, to, &pc);
		if (prc == 1) {
			have_scan = 0;
			prc = pmfd >= 0 && to - from > READ_WHOLE_MAX
				      ? pieces_pagemap(pmfd, from, to, &pc)
				      : -1;
		}
		if (prc) { /* read it all */
			pc.n = 0;
			if (piece_add(&pc, from, to)) {
				rc = core_errf(err, OCOLOS_ENOMEM, "out of memory");
				break;
			}
		}
		for (size_t j = 0; j < pc.n; j++)
			scan_piece(t, pc.v[j][0], pc.v[j][1], buf, lo, hi, ranges, n, so, found,
				   scanned);
	}
	free(pc.v);
	free(dead);
	if (pmfd >= 0)
		close(pmfd);
	free(buf);
	core_procmaps_free(&m);
	return rc;
}

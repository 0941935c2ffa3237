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
 * demangled with glibc's pointer guard (x86-64), the PCs of setjmp buffers
 * and the functions of atexit lists, which glibc stores mangled.
 *
 * Read through /proc/PID/mem (for the calling process too): a mapping that
 * cannot be read (a file mapping past its end, device memory) gives an
 * error for that piece instead of a signal.
 */
#include <stdlib.h>
#include <string.h>

#include "core/procmaps.h"
#include "inject/inject.h"
#include "proc/proc.h"

#define CHUNK (1u << 20)

static int in_sorted(const uint64_t *v, size_t n, uint64_t w)
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

static void check(const uint64_t (*ranges)[2], size_t n, const struct inject_scan_opts *so,
		  uint64_t w, uint8_t *found)
{
	for (size_t i = 0; i < n; i++)
		if (w >= ranges[i][0] && w < ranges[i][1] &&
		    (!so->sites || !so->sites[i] || in_sorted(so->sites[i], so->nsites[i], w)))
			found[i] = 1;
}

/* glibc's PTR_DEMANGLE on x86-64: rotate right by 0x11, then xor. */
static uint64_t demangle(uint64_t w, uint64_t guard)
{
	return ((w >> 0x11) | (w << (64 - 0x11))) ^ guard;
}

/* Is the word at `a` in one of the skipped ranges? */
static int skipped(const struct inject_scan_opts *so, uint64_t a)
{
	for (size_t i = 0; i < so->nskip; i++)
		if (a >= so->skip[i][0] && a < so->skip[i][1])
			return 1;
	return 0;
}

int inject_scan_memory(struct proc_target *t, const uint64_t (*ranges)[2], size_t n,
		       const struct inject_scan_opts *so, uint8_t *found, uint64_t *scanned,
		       struct core_err *err)
{
	uint64_t guard = so->guard;
	const uint64_t *sps = so->sps;
	size_t nsps = so->nsps;
	memset(found, 0, n);
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
	uint64_t *buf = malloc(CHUNK);
	if (!buf) {
		core_procmaps_free(&m);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t k = 0; k < m.n; k++) {
		const struct procmaps_entry *e = &m.v[k];
		if (e->perms[0] != 'r' || e->perms[1] != 'w' || !strcmp(e->path, "[vvar]") ||
		    !strncmp(e->path, "/dev/", 5))
			continue;
		if (so->skip_malloc && (!strcmp(e->path, "[heap]") ||
					(!e->path[0] && !(e->start & ((64ull << 20) - 1)))))
			continue;
		uint64_t from = e->start;
		/* A stack: its live part only, the 128-byte red zone below the
		 * stack pointer included; what lies below is dead by the ABI (a
		 * signal frame pushed there since, stale locals). */
		for (size_t k2 = 0; k2 < nsps; k2++)
			if (sps[k2] >= e->start && sps[k2] < e->end && sps[k2] - 128 > from)
				from = (sps[k2] - 128) & ~7ull;
		for (uint64_t a = from; a < e->end; a += CHUNK) {
			size_t len = e->end - a < CHUNK ? (size_t)(e->end - a) : CHUNK;
			if (proc_mem_read(t->memfd, a, buf, len))
				continue; /* unreadable piece: nothing there can be run */
			*scanned += len;
			for (size_t w = 0; w < len / 8; w++) {
				uint64_t v = buf[w], d = guard ? demangle(v, guard) : 0;
				int hit = (v >= lo && v < hi) || (d >= lo && d < hi);
				if (!hit || (so->nskip && skipped(so, a + 8 * w)))
					continue;
				check(ranges, n, so, v, found);
				if (guard)
					check(ranges, n, so, d, found);
			}
		}
	}
	free(buf);
	core_procmaps_free(&m);
	return 0;
}

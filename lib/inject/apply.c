/*
 * Writing a patch plan while the world is stopped.
 *
 * Who may execute the bytes: no one. Every other thread is parked in the
 * stop handler (stop_self.c) or, for another process, stopped by ptrace;
 * a stopped thread's PC is at an instruction boundary, so it can never
 * resume in the middle of an instruction we change — it executes either
 * the old or the new instruction, whole. The writing thread does not run
 * C0 code that is patched here (it is in libocolos's round).
 *
 * Two ways to write, one protocol (apply_plan):
 *
 *  - through /proc/PID/mem (inject_apply; x86-64, and the ptrace target):
 *    the kernel's copy-on-write path, pages never writable in the process.
 *    Then membarrier(SYNC_CORE) makes every core of the process execute a
 *    core-serializing instruction before it runs user code again, which is
 *    what the x86 cross-modifying-code rule asks for; parked threads also
 *    return through rt_sigreturn, itself serializing on x86-64.
 *
 *  - in place, by mprotect (inject_apply_local; AArch64 in-process): each
 *    page holding a patch is made read-write (never writable and executable
 *    at once), written, put back to its protection from before the stop,
 *    and the i-cache is cleaned and invalidated for the changed words
 *    (arch_code_changed: DC CVAU + IC IVAU + DSB + ISB, which the Arm ARM
 *    requires before modified code may run). Why not /proc/self/mem there:
 *    under qemu-user a /proc/self/mem write changes guest memory behind the
 *    back of qemu's translation cache, so the old code keeps running (seen
 *    with qemu 7.2); qemu does see mprotect and the guest's own stores. The
 *    temporary missing X bit is harmless: while the world is stopped no
 *    thread runs the target's code — parked threads sit in libocolos's
 *    handler (in libocolos's own text, a separate object), the writer runs
 *    libocolos too, and the cache-maintenance routine is libocolos's.
 *    That requires libocolos to be a shared object (or, linked statically,
 *    to be on other pages than the patched code); the library is built
 *    and documented as a shared object. Exception return (leaving the
 *    handler) is a context synchronization event, and membarrier(SYNC_CORE)
 *    runs after the writes as on x86-64.
 *
 * Each patch is checked against the bytes the plan expects there (C0 as on
 * disk going forward, the C1 redirection going back, for a revert):
 * if memory differs — another tool patched it, or the file is not what is
 * running — that patch is skipped and counted, never forced.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "inject/inject.h"

/* Reads/writes one patch's bytes; 0 or -1. */
struct patch_io {
	int (*read)(void *ctx, const struct inject_patch *p, uint8_t *buf);
	int (*write)(void *ctx, const struct inject_patch *p, const uint8_t *bytes);
	void *ctx;
};

/* Undo what this call wrote so far (patches [0, upto) it changed). */
static void roll_back(struct inject_plan *plan, size_t upto, int forward, const struct patch_io *io,
		      const uint8_t *changed)
{
	for (size_t k = 0; k < upto; k++) {
		struct inject_patch *q = &plan->v[k];
		if (changed[k] && !io->write(io->ctx, q, forward ? q->old : q->new_))
			q->applied = !forward;
	}
}

static int apply_plan(struct inject_plan *plan, int forward, const struct patch_io *io,
		      struct inject_apply_result *res, struct core_err *err)
{
	memset(res, 0, sizeof(*res));
	/* Which patches this call changed, for an all-or-nothing roll back;
	 * allocated with the plan: nothing may allocate while the world is
	 * stopped (a parked thread may hold the allocator's lock). */
	uint8_t small[64], *changed = plan->changed;
	if (!changed && plan->n <= sizeof(small))
		changed = small; /* a plan assembled by hand (tests) */
	if (!changed)
		return core_errf(err, OCOLOS_EINVAL, "patch plan without scratch (build it with "
				 "inject_plan_build)");
	memset(changed, 0, plan->n);
	int rc = 0;
	size_t checked_to = 0; /* forward: patches [.., checked_to) of a group were compared */
	for (size_t i = 0; i < plan->n; i++) {
		struct inject_patch *p = &plan->v[i];
		/* Back: only what a forward switch wrote. Forward: not what a
		 * thread could be inside of (entries, see entry.c). */
		if (!forward && !p->applied)
			continue;
		if (forward && p->blocked) {
			res->blocked++;
			continue;
		}
		const uint8_t *from = forward ? p->old : p->new_, *to = forward ? p->new_ : p->old;
		uint8_t cur[8];
		if (forward && p->group && i >= checked_to) {
			/* The slots of one function go all or none (plan.c): if the
			 * program changed one, the others keep C0 too. */
			size_t end = i, bad = 0;
			for (; end < plan->n && plan->v[end].group == p->group; end++)
				if (io->read(io->ctx, &plan->v[end], cur) ||
				    memcmp(cur, plan->v[end].old, plan->v[end].len))
					bad++;
			if (bad) {
				res->mismatched += (uint32_t)bad;
				res->slots_held += (uint32_t)(end - i - bad);
				i = end - 1;
				continue;
			}
			checked_to = end;
		} else if (!(forward && p->group) &&
			   (io->read(io->ctx, p, cur) || memcmp(cur, from, p->len))) {
			res->mismatched++;
			continue;
		}
		if (io->write(io->ctx, p, to)) {
			roll_back(plan, i, forward, io, changed);
			rc = core_errf(err, OCOLOS_EPATCH, "writing %u bytes at 0x%llx failed; "
				       "earlier patches were undone, the program runs the code it ran before",
				       p->len, (unsigned long long)p->addr);
			break;
		}
		changed[i] = 1;
		p->applied = (uint8_t)forward;
		if (p->kind == INJECT_CALL_SITE)
			res->call_sites++;
		else if (p->kind == INJECT_ENTRY)
			res->entries++;
		else
			res->ptr_slots++;
	}
	arch_sync_core();
	return rc;
}

/* ---- through /proc/PID/mem ---- */

static int mem_read(void *ctx, const struct inject_patch *p, uint8_t *buf)
{
	return proc_mem_read(*(int *)ctx, p->addr, buf, p->len);
}

static int mem_write(void *ctx, const struct inject_patch *p, const uint8_t *bytes)
{
	return proc_mem_write(*(int *)ctx, p->addr, bytes, p->len);
}

int inject_apply(int memfd, struct inject_plan *plan, int forward,
		 struct inject_apply_result *res, struct core_err *err)
{
	struct patch_io io = { mem_read, mem_write, &memfd };
	return apply_plan(plan, forward, &io, res, err);
}

int inject_prefault(int memfd, const struct inject_plan *plan)
{
	/* The first write to a page of text through /proc/PID/mem copies it
	 * (copy-on-write): thousands of those would be most of the pause.
	 * Writing each page's patch bytes back unchanged before the stop does
	 * the copying while the program runs; its threads keep executing the
	 * same bytes, now on a private copy of the page. */
	uint64_t last_page = UINT64_MAX;
	for (size_t i = 0; i < plan->n; i++) {
		const struct inject_patch *p = &plan->v[i];
		uint64_t page = p->addr & ~4095ull;
		if (page == last_page || p->kind == INJECT_DATA_SLOT)
			continue;
		last_page = page;
		uint8_t cur[8];
		if (proc_mem_read(memfd, p->addr, cur, p->len) ||
		    proc_mem_write(memfd, p->addr, cur, p->len))
			return -1;
	}
	return 0;
}

/* In this process the bytes are readable in place: one system call per
 * patch (the write) instead of two, which is most of the pause. */
static int self_read(void *ctx, const struct inject_patch *p, uint8_t *buf)
{
	memcpy(buf, (const void *)(uintptr_t)p->addr, p->len);
	return 0;
}

/* A write into this process's own code: under Valgrind its translation of
 * the old bytes must go (arch/cpu.h). */
static int self_write(void *ctx, const struct inject_patch *p, const uint8_t *bytes)
{
	int rc = mem_write(ctx, p, bytes);
	if (p->kind == INJECT_CALL_SITE || p->kind == INJECT_ENTRY)
		arch_code_changed(p->addr, p->addr + p->len);
	return rc;
}

int inject_apply_self(int memfd, struct inject_plan *plan, int forward,
		      struct inject_apply_result *res, struct core_err *err)
{
	struct patch_io io = { self_read, self_write, &memfd };
	return apply_plan(plan, forward, &io, res, err);
}

/* ---- in place, by mprotect ---- */

static int cmp_prot(const void *a, const void *b)
{
	const struct inject_page_prot *x = a, *y = b;
	return x->page < y->page ? -1 : x->page > y->page;
}

int inject_prot_collect(const struct inject_plan *plan, struct inject_prots *out,
			struct core_err *err)
{
	uint64_t pg = arch_page_size();
	memset(out, 0, sizeof(*out));
	out->v = calloc(plan->n * 2 + 1, sizeof(*out->v));
	if (!out->v)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	for (size_t i = 0; i < plan->n; i++) {
		uint64_t a = plan->v[i].addr & ~(pg - 1);
		uint64_t b = (plan->v[i].addr + plan->v[i].len - 1) & ~(pg - 1);
		out->v[out->n++].page = a;
		if (b != a) /* a slot straddling two pages */
			out->v[out->n++].page = b;
	}
	qsort(out->v, out->n, sizeof(*out->v), cmp_prot);
	size_t w = 0;
	for (size_t i = 0; i < out->n; i++)
		if (!w || out->v[w - 1].page != out->v[i].page)
			out->v[w++] = out->v[i];
	out->n = w;
	struct procmaps m = { 0 };
	int rc = core_procmaps_read(getpid(), &m, err);
	for (size_t i = 0, k = 0; !rc && i < out->n; i++) {
		while (k < m.n && m.v[k].end <= out->v[i].page)
			k++;
		if (k == m.n || m.v[k].start > out->v[i].page) {
			rc = core_errf(err, OCOLOS_EPATCH, "page 0x%llx to patch is not mapped",
				       (unsigned long long)out->v[i].page);
			break;
		}
		const char *pr = m.v[k].perms;
		out->v[i].prot = (pr[0] == 'r' ? PROT_READ : 0) | (pr[1] == 'w' ? PROT_WRITE : 0) |
				 (pr[2] == 'x' ? PROT_EXEC : 0);
	}
	core_procmaps_free(&m);
	if (rc)
		inject_prots_free(out);
	return rc;
}

void inject_prots_free(struct inject_prots *p)
{
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static int prot_of(const struct inject_prots *ps, uint64_t page)
{
	size_t lo = 0, hi = ps->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ps->v[mid].page < page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < ps->n && ps->v[lo].page == page ? ps->v[lo].prot : -1;
}

static int local_read(void *ctx, const struct inject_patch *p, uint8_t *buf)
{
	(void)ctx;
	memcpy(buf, (const void *)(uintptr_t)p->addr, p->len); /* C0 and RELRO stay readable */
	return 0;
}

/* Make the pages of [lo, hi) writable (1) or give them back their
 * protection (0). Pages that are writable already are left alone. */
static int local_protect(const struct inject_prots *ps, uint64_t lo, uint64_t hi, int writable)
{
	uint64_t pg = arch_page_size();
	for (uint64_t a = lo & ~(pg - 1); a < hi; a += pg) {
		int prot = prot_of(ps, a);
		if (prot < 0)
			return -1;
		if (prot & PROT_WRITE)
			continue;
		if (mprotect((void *)(uintptr_t)a, pg, writable ? PROT_READ | PROT_WRITE : prot))
			return -1;
	}
	return 0;
}

static int local_write(void *ctx, const struct inject_patch *p, const uint8_t *bytes)
{
	const struct inject_prots *ps = ctx;
	if (local_protect(ps, p->addr, p->addr + p->len, 1))
		return -1;
	/* One aligned 4-byte store for an instruction: a single-copy-atomic
	 * update, though nothing can observe a torn one during the stop. */
	if (p->len == 4 && !(p->addr & 3))
		__atomic_store_n((uint32_t *)(uintptr_t)p->addr,
				 (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 |
				 (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 24, __ATOMIC_RELAXED);
	else
		memcpy((void *)(uintptr_t)p->addr, bytes, p->len);
	int rc = local_protect(ps, p->addr, p->addr + p->len, 0);
	if (p->kind == INJECT_CALL_SITE || p->kind == INJECT_ENTRY)
		arch_code_changed(p->addr, p->addr + p->len);
	return rc;
}

int inject_apply_local(struct inject_plan *plan, const struct inject_prots *prots,
		       int forward, struct inject_apply_result *res, struct core_err *err)
{
	struct patch_io io = { local_read, local_write, (void *)prots };
	return apply_plan(plan, forward, &io, res, err);
}

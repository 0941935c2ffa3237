/*
 * The calling process as a target: local mmap/munmap, memory read in
 * place, the unwinder called directly, and a stop-the-world by signals
 * (stop_self.c).
 *
 * Writes while the world is stopped (poke). x86-64: through
 * /proc/self/mem, the kernel's copy-on-write path, so text and RELRO pages
 * are never writable in the process; the pages are copied before the stop
 * (poke_prepare, proc_mem_prefault). AArch64: in place, each page made
 * read-write for the write and given back the protection it had (collected
 * before the stop: reading /proc/self/maps allocates, which a stopped world
 * forbids). Never writable and executable at once: the temporary missing X
 * bit is harmless, since while the world is stopped no thread runs the
 * target's code — parked threads sit in libocolos's handler (in libocolos's
 * own text, a separate object), and the writer runs libocolos too. That
 * requires libocolos to be a shared object (or, linked statically, to be on
 * other pages than the patched code); the library is built and documented
 * as a shared object. Why not /proc/self/mem there: under qemu-user a
 * /proc/self/mem write changes guest memory behind the back of qemu's
 * translation cache, so the old code keeps running (seen with qemu 7.2);
 * qemu does see mprotect and the guest's own stores.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "core/procmaps.h"
#include "core/util.h"
#include "proc/proc.h"

static int self_reserve_at(struct proc_target *t, uint64_t addr, uint64_t size,
			   struct core_err *err)
{
	void *p = mmap((void *)addr, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == (void *)addr)
		return 0;
	if (p != MAP_FAILED) { /* an old kernel ignored NOREPLACE and moved it */
		munmap(p, size);
		return 1;
	}
	if (errno == EEXIST)
		return 1;
	return core_errf(err, OCOLOS_ERESERVE, "cannot reserve %llu MiB at 0x%llx: %s",
			 (unsigned long long)(size >> 20), (unsigned long long)addr, strerror(errno));
}

static void self_unmap(struct proc_target *t, uint64_t addr, uint64_t size)
{
	munmap((void *)addr, size);
}

static int self_map_fill(struct proc_target *t, uint64_t addr, uint64_t size, int prot,
			 const void *bytes, size_t len, const char *name, struct core_err *err)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return core_errf(err, OCOLOS_ENOMEM, "cannot create the memory file for %s: %s", name,
				 strerror(errno));
	int rc = 0;
	if (ftruncate(fd, (off_t)size) != 0 || pwrite(fd, bytes, len, 0) != (ssize_t)len)
		rc = core_errf(err, OCOLOS_ENOMEM, "cannot fill %llu bytes of %s: %s",
			       (unsigned long long)size, name, strerror(errno));
	else if (mmap((void *)addr, size, prot, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
		rc = core_errf(err, errno == EPERM || errno == EACCES ? OCOLOS_ENOTSUP : OCOLOS_ENOMEM,
			       "cannot map %s at 0x%llx: %s%s", name, (unsigned long long)addr,
			       strerror(errno), prot & PROT_EXEC ? " (a policy forbids new executable "
			       "memory?)" : "");
	close(fd);
	if (!rc && (prot & PROT_EXEC))
		arch_code_changed(addr, addr + len);
	return rc;
}

static int self_call_lib(struct proc_target *t, const char *lib, const char *sym, uint64_t arg,
			 uint64_t arg2, struct core_err *err)
{
	/* The library is loaded if the program does not have it yet: glibc's
	 * backtrace() would load the same one later, and must find C1's
	 * tables registered there. */
	void *h = dlopen(lib, RTLD_NOW);
	void *fn = h ? dlsym(h, sym) : NULL;
	if (!fn)
		return 1;
	((void (*)(void *, void *))fn)((void *)(uintptr_t)arg, (void *)(uintptr_t)arg2);
	return 0;
}

static int self_stop(struct proc_target *t, struct proc_stop **out, uint32_t *threads,
		     struct core_err *err)
{
	struct proc_self_stop *s = NULL;
	int rc = proc_stop_self(t->stop_signal, t->stop_timeout_ms, &s, threads, err);
	*out = (struct proc_stop *)s;
	return rc;
}

static const struct proc_thread_state *self_states(const struct proc_stop *s, size_t *n)
{
	return proc_stop_states((const struct proc_self_stop *)s, n);
}

static void self_resume(struct proc_target *t, struct proc_stop *s, uint64_t *released_ns)
{
	proc_resume_self((struct proc_self_stop *)s, released_ns);
}

static int self_peek(struct proc_target *t, uint64_t addr, void *buf, size_t len)
{
	memcpy(buf, (const void *)(uintptr_t)addr, len); /* C0, RELRO, data, stacks: mapped */
	return 0;
}

static int self_count_frames(struct proc_target *t, struct proc_stop *s,
			     const uint64_t (*ranges)[2], size_t n, uint32_t *threads,
			     uint32_t *frames)
{
	return -1; /* not walked in-process (C0 stays valid: nothing depends on it) */
}

#if defined(__aarch64__)
/* Page protections from before the stop, sorted by page. */
struct page_prot {
	uint64_t page;
	int prot;
};
struct page_prots {
	struct page_prot *v;
	size_t n;
};

static int cmp_page(const void *a, const void *b)
{
	const struct page_prot *x = a, *y = b;
	return x->page < y->page ? -1 : x->page > y->page;
}

static int self_poke_prepare(struct proc_target *t, const struct proc_span *spans, size_t n,
			     struct core_err *err)
{
	uint64_t pg = arch_page_size();
	struct page_prots *ps = calloc(1, sizeof(*ps));
	if (!ps || !(ps->v = calloc(n * 2 + 1, sizeof(*ps->v)))) {
		free(ps);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t a = spans[i].addr & ~(pg - 1);
		uint64_t b = (spans[i].addr + spans[i].len - 1) & ~(pg - 1);
		ps->v[ps->n++].page = a;
		if (b != a) /* a slot straddling two pages */
			ps->v[ps->n++].page = b;
	}
	if (ps->n)
		qsort(ps->v, ps->n, sizeof(*ps->v), cmp_page);
	size_t w = 0;
	for (size_t i = 0; i < ps->n; i++)
		if (!w || ps->v[w - 1].page != ps->v[i].page)
			ps->v[w++] = ps->v[i];
	ps->n = w;
	struct procmaps m = { 0 };
	int rc = core_procmaps_read(getpid(), &m, err);
	for (size_t i = 0, k = 0; !rc && i < ps->n; i++) {
		while (k < m.n && m.v[k].end <= ps->v[i].page)
			k++;
		if (k == m.n || m.v[k].start > ps->v[i].page) {
			rc = core_errf(err, OCOLOS_EPATCH, "page 0x%llx to patch is not mapped",
				       (unsigned long long)ps->v[i].page);
			break;
		}
		const char *pr = m.v[k].perms;
		ps->v[i].prot = (pr[0] == 'r' ? PROT_READ : 0) | (pr[1] == 'w' ? PROT_WRITE : 0) |
				(pr[2] == 'x' ? PROT_EXEC : 0);
	}
	core_procmaps_free(&m);
	if (rc) {
		free(ps->v);
		free(ps);
		return rc;
	}
	t->poke_state = ps;
	return 0;
}

static void self_poke_done(struct proc_target *t)
{
	struct page_prots *ps = t->poke_state;
	if (ps)
		free(ps->v);
	free(ps);
	t->poke_state = NULL;
}

static int prot_of(const struct page_prots *ps, uint64_t page)
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

/* Make the pages of [lo, hi) writable (1) or give them back their
 * protection (0). Pages that are writable already are left alone. */
static int local_protect(const struct page_prots *ps, uint64_t lo, uint64_t hi, int writable)
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

static int self_poke(struct proc_target *t, uint64_t addr, const void *buf, size_t len, int code)
{
	const struct page_prots *ps = t->poke_state;
	if (!ps || local_protect(ps, addr, addr + len, 1))
		return -1;
	/* One aligned 4-byte store for an instruction: a single-copy-atomic
	 * update, though nothing can observe a torn one during the stop. */
	if (len == 4 && !(addr & 3)) {
		uint32_t w;
		memcpy(&w, buf, 4);
		__atomic_store_n((uint32_t *)(uintptr_t)addr, w, __ATOMIC_RELAXED);
	} else {
		memcpy((void *)(uintptr_t)addr, buf, len);
	}
	int rc = local_protect(ps, addr, addr + len, 0);
	if (code)
		arch_code_changed(addr, addr + len);
	return rc;
}
#else
static int self_poke_prepare(struct proc_target *t, const struct proc_span *spans, size_t n,
			     struct core_err *err)
{
	proc_mem_prefault(t->memfd, spans, n);
	return 0;
}

static void self_poke_done(struct proc_target *t)
{
}

static int self_poke(struct proc_target *t, uint64_t addr, const void *buf, size_t len, int code)
{
	int rc = proc_mem_write(t->memfd, addr, buf, len);
	if (code) /* under Valgrind its translation of the old bytes must go (arch/cpu.h) */
		arch_code_changed(addr, addr + len);
	return rc;
}
#endif

static int self_map_marker(struct proc_target *t, const char *path, struct core_err *err)
{
	(void)t;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *m = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (m == MAP_FAILED)
		return core_errf(err, OCOLOS_EIO, "cannot map %s: %s", path, strerror(e));
	return 0;
}

const struct proc_target_ops proc_target_self_ops = {
	.name = "self",
	.reserve_at = self_reserve_at,
	.unmap = self_unmap,
	.map_fill = self_map_fill,
	.call_lib = self_call_lib,
	.stop = self_stop,
	.states = self_states,
	.resume = self_resume,
	.poke_prepare = self_poke_prepare,
	.poke_done = self_poke_done,
	.peek = self_peek,
	.poke = self_poke,
	.map_marker = self_map_marker,
	.count_frames = self_count_frames,
};

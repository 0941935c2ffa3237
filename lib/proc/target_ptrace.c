/*
 * Another process as a target, through ptrace (primitives in ptrace.c).
 *
 * Only a switch stops every thread. Reserving, mapping C1 and registering
 * its unwind tables stop one thread at a time, briefly, to run a system
 * call or a libgcc call in it; the others keep running, which is safe
 * because nothing can reach C1 before the switch.
 *
 * New code is mapped with its final protection from the start and filled
 * through /proc/PID/mem (the kernel's copy-on-write path), so it is never
 * writable in the target.
 *
 * Instruction fetch (AArch64). Code written into the target — C1, veneers
 * and slot stubs when they are mapped, call sites and entries in the stop
 * — must be made visible to instruction fetch before a thread runs it:
 * clean the data cache and invalidate the instruction cache for those
 * lines, then a context synchronization event on each core that runs it.
 * The kernel already cleans and invalidates the lines of a /proc/PID/mem
 * write into an executable mapping (copy_to_user_page ->
 * flush_ptrace_access, arch/arm64/mm/flush.c: what a debugger's
 * breakpoints rely on), but that is a kernel detail, so the target does it
 * itself too: a thread of the target runs the stub's maintenance routine
 * (ptrace_a64.c) on the written ranges — for a mapping, right after it is
 * filled (nothing can reach it yet); for the patches of a stop, on the list
 * of written words, after the last write and before any other thread is
 * let go (ptrace_resume_all). The stopped threads then resume through an
 * exception return, which is the context synchronization event. On x86-64
 * instruction fetch is coherent with stores and resuming serializes:
 * nothing is run.
 */
#include <elf.h>
#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "core/util.h"
#include "proc/proc.h"
#include "proc/ptrace.h"
#include "proc/ptrace_arch.h"


/* The injection stub (see ptrace.c), placed on first use. */
static int need_stub(struct proc_target *t, struct core_err *err)
{
	if (t->stub)
		return 0;
	struct procmaps m = { 0 };
	int rc = core_procmaps_read(t->pid, &m, err);
	if (rc)
		return rc == OCOLOS_EIO ? core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)t->pid) : rc;
	t->stub = proc_ptrace_place_stub(t->pid, &m, t->memfd);
	core_procmaps_free(&m);
	if (!t->stub)
		return core_errf(err, OCOLOS_ENOTSUP, "process %d has no room for the injection stub "
				 "(no executable segment of a mapped file leaves %zu free bytes in its "
				 "last page); optimize it in-process (ocolos_optimize_self)", (int)t->pid,
				 proc_ptrace_stub_bytes(NULL));
	return 0;
}

/* Run one system call in one briefly stopped thread. */
static int remote_syscall(struct proc_target *t, long nr, const uint64_t args[6], int64_t *ret,
			  struct core_err *err)
{
	int rc = need_stub(t, err);
	if (rc)
		return rc;
	struct proc_ptrace *pt;
	rc = proc_ptrace_stop(t->pid, 0, t->stop_timeout_ms, &pt, err);
	if (rc)
		return rc;
	rc = proc_ptrace_syscall(pt, t->memfd, t->stub, nr, args, ret, err);
	proc_ptrace_resume(pt, NULL);
	return rc;
}

static int remote_mmap(struct proc_target *t, uint64_t addr, uint64_t size, int prot, int flags,
		       struct core_err *err)
{
	uint64_t a[6] = { addr, size, (uint64_t)prot, (uint64_t)flags, (uint64_t)-1, 0 };
	int64_t ret;
	int rc = remote_syscall(t, SYS_mmap, a, &ret, err);
	if (rc)
		return rc;
	if (ret == -EEXIST)
		return 1;
	if (ret < 0 && ret > -4096)
		return core_errf(err, OCOLOS_ERESERVE, "mmap at 0x%llx in process %d: %s",
				 (unsigned long long)addr, (int)t->pid, strerror((int)-ret));
	if ((uint64_t)ret != addr) { /* kernel without FIXED_NOREPLACE */
		uint64_t u[6] = { (uint64_t)ret, size, 0, 0, 0, 0 };
		remote_syscall(t, SYS_munmap, u, &ret, err);
		return 1;
	}
	return 0;
}

/* A private anonymous mapping of `size` bytes wherever the kernel puts
 * it; *at gets its address. */
static int remote_mmap_any(struct proc_target *t, uint64_t size, int prot, uint64_t *at,
			   struct core_err *err)
{
	uint64_t a[6] = { 0, size, (uint64_t)prot, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0 };
	int64_t ret;
	int rc = remote_syscall(t, SYS_mmap, a, &ret, err);
	if (rc)
		return rc;
	if (ret < 0 && ret > -4096)
		return core_errf(err, OCOLOS_ENOMEM, "mmap of %llu bytes in process %d: %s",
				 (unsigned long long)size, (int)t->pid, strerror((int)-ret));
	*at = (uint64_t)ret;
	return 0;
}

static int ptrace_reserve_at(struct proc_target *t, uint64_t addr, uint64_t size, struct core_err *err)
{
	return remote_mmap(t, addr, size, PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, err);
}

static void ptrace_unmap(struct proc_target *t, uint64_t addr, uint64_t size)
{
	uint64_t a[6] = { addr, size, 0, 0, 0, 0 };
	int64_t ret;
	struct core_err ignore = { 0 };
	remote_syscall(t, SYS_munmap, a, &ret, &ignore);
}

static int remote_icache(struct proc_target *t, uint64_t addr, uint64_t len,
			 struct core_err *err);

/*
 * A named mapping in another process (see proc_target_ops.map_fill): the
 * name goes on a scratch page at `addr` first (memfd_create reads it from
 * the target's memory), the memfd is filled from here through
 * /proc/PID/fd/N, then mapped over the scratch page and closed in the
 * target. Nothing reaches the range until the switch.
 */
static int ptrace_map_fill(struct proc_target *t, uint64_t addr, uint64_t size, int prot,
			   const void *bytes, size_t len, const char *name, struct core_err *err)
{
	int rc = remote_mmap(t, addr, 4096, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, err);
	if (rc)
		return rc == 1 ? core_errf(err, OCOLOS_ERESERVE, "mapping at 0x%llx refused",
					   (unsigned long long)addr) : rc;
	if (proc_mem_write(t->memfd, addr, name, strlen(name) + 1))
		return core_errf(err, OCOLOS_EIO, "cannot write into process %d at 0x%llx",
				 (int)t->pid, (unsigned long long)addr);
	uint64_t a[6] = { addr, MFD_CLOEXEC, 0, 0, 0, 0 };
	int64_t fd;
	if ((rc = remote_syscall(t, SYS_memfd_create, a, &fd, err)))
		return rc;
	if (fd < 0)
		return core_errf(err, OCOLOS_ENOMEM, "memfd_create in process %d: %s", (int)t->pid,
				 strerror((int)-fd));
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)t->pid, (int)fd);
	int local = open(path, O_RDWR | O_CLOEXEC);
	if (local < 0 || ftruncate(local, (off_t)size) != 0 ||
	    pwrite(local, bytes, len, 0) != (ssize_t)len)
		rc = core_errf(err, OCOLOS_EIO, "cannot fill %s of process %d (%s): %s", name,
			       (int)t->pid, path, strerror(errno));
	if (local >= 0)
		close(local);
	int64_t ret = 0;
	if (!rc) {
		uint64_t m[6] = { addr, size, (uint64_t)prot, MAP_PRIVATE | MAP_FIXED, (uint64_t)fd, 0 };
		rc = remote_syscall(t, SYS_mmap, m, &ret, err);
		if (!rc && ret != (int64_t)addr)
			rc = core_errf(err, OCOLOS_ERESERVE, "cannot map %s in process %d: %s", name,
				       (int)t->pid, strerror(ret < 0 ? (int)-ret : EINVAL));
	}
	uint64_t c[6] = { (uint64_t)fd, 0, 0, 0, 0, 0 };
	struct core_err ignore = { 0 };
	remote_syscall(t, SYS_close, c, &ret, &ignore);
	/* The target's threads fetch the new code only after the switch;
	 * AArch64 still wants its i-cache cleaned for the range first. */
	if (!rc && len && (prot & PROT_EXEC))
		rc = remote_icache(t, addr, len, err);
	return rc;
}

/* Run-time address of `name` in the target's library whose file name
 * starts with `lib` (or 0). */
struct lib_symbol {
	const char *lib, *name;
	uint64_t at;
};

static int lib_named(const char *base, void *user)
{
	const struct lib_symbol *q = user;
	return !strncmp(base, q->lib, strlen(q->lib));
}

static int symbol_named(void *user, const char *name, uint64_t start, uint64_t size, int type)
{
	struct lib_symbol *q = user;
	(void)size, (void)type;
	if (strcmp(name, q->name))
		return 0;
	q->at = start;
	return 1;
}

static uint64_t find_lib_symbol(struct proc_target *t, const char *lib, const char *name)
{
	struct lib_symbol q = { lib, name, 0 };
	return proc_lib_symbols(t->pid, lib_named, symbol_named, &q) == 1 ? q.at : 0;
}

/* How long a library call waits for a thread outside fork, malloc and the
 * unwinder (safe_point.c) before it is given up, not made. */
#define SAFE_POINT_WAIT_MS 1000

/* Call fn(a0, a1) in one briefly stopped thread; with `locks`, only where
 * the thread holds none of the locks a libgcc call takes (safe_point.c):
 * a thread found inside fork(), malloc or the unwinder is let go and
 * stopped again a moment later; PROC_CALL_NOT_MADE if it stays there. */
static int remote_call(struct proc_target *t, uint64_t fn, uint64_t a0, uint64_t a1, int locks,
		       struct core_err *err)
{
	int rc = need_stub(t, err);
	if (rc)
		return rc;
	if (locks && proc_target_call_still_running(t)) {
		core_errf(err, OCOLOS_ETIMEDOUT, "a call injected earlier into thread %d of process "
			  "%d has not returned yet; no other call is made until it has",
			  (int)t->call_left.tid, (int)t->pid);
		return PROC_CALL_NOT_MADE;
	}
	uint64_t (*holders)[2] = NULL;
	size_t nholders = 0;
	if (locks && proc_lock_holder_ranges(t->pid, &holders, &nholders))
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	if (locks && !nholders)
		core_logf(t->log, OCOLOS_LOG_WARN, "process %d: fork, malloc and the unwinder were "
			  "not found in its libc and libgcc_s; a libgcc call runs in whichever thread "
			  "is stopped, with only its time limit", (int)t->pid);
	uint64_t deadline = core_now_ns() + SAFE_POINT_WAIT_MS * 1000000ull;
	struct proc_ptrace *pt;
	for (unsigned tries = 1;; tries++) {
		rc = proc_ptrace_stop(t->pid, 0, t->stop_timeout_ms, &pt, err);
		if (rc || !nholders)
			break;
		struct ptrace_arch_saved *s = pt->n ? ptrace_arch_save(pt->t[0].tid) : NULL;
		int held = s && proc_at_lock_holder(t->memfd, ptrace_arch_pc(s), ptrace_arch_sp(s),
						    (const uint64_t (*)[2])holders, nholders);
		/* The very lock the call will take, held now — by this thread
		 * (it would wait for itself) or by another (it would wait). */
		uint32_t lock = 0;
		held |= locks && t->call_lock &&
			(proc_mem_read(t->memfd, t->call_lock, &lock, sizeof(lock)) || lock != 0);
		pid_t tid = pt->n ? pt->t[0].tid : 0;
		ptrace_arch_saved_free(s);
		if (!held)
			break;
		proc_ptrace_resume(pt, NULL);
		if (core_now_ns() > deadline) {
			free(holders);
			core_errf(err, OCOLOS_ETIMEDOUT, "thread %d of process %d was inside fork(), "
				  "malloc or the unwinder, or the malloc lock the call takes was held, "
				  "at each of %u tries in %d ms; a libgcc call run there could wait for "
				  "a lock the thread itself holds, so it was not made (a later round "
				  "tries again)", (int)tid, (int)t->pid, tries, SAFE_POINT_WAIT_MS);
			return PROC_CALL_NOT_MADE;
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
	free(holders);
	if (rc) /* no thread stopped: nothing was run (err says why) */
		return locks ? PROC_CALL_NOT_MADE : rc;
	uint64_t ret;
	const uint64_t args[6] = { a0, a1, 0, 0, 0, 0 };
	rc = proc_ptrace_call(pt, t->memfd, t->stub, fn, args, t->call_timeout_ms, &ret, err);
	if (pt->left.tid)
		t->call_left = pt->left;
	proc_ptrace_resume(pt, NULL);
	return rc;
}

static int thread_exists(pid_t pid, pid_t tid)
{
	char task[64];
	snprintf(task, sizeof(task), "/proc/%d/task/%d", (int)pid, (int)tid);
	return access(task, F_OK) == 0;
}

/*
 * The call is still running while its frame says "not done" and the
 * thread's stack pointer is below the frame (the call runs on the stack
 * under it; back in its own code the thread is above it). The frame is
 * dead stack memory once the stub has returned: a word there that merely
 * still reads "not done" is told apart by the stack pointer, or by the
 * token itself having been overwritten.
 */
int proc_target_call_still_running(struct proc_target *t)
{
	const struct proc_call_left *l = &t->call_left;
	uint64_t head[PTRACE_FR_HEAD / 8];
	if (!l->tid)
		return 0;
	int running = proc_mem_read(t->memfd, l->base, head, sizeof(head)) == 0 &&
		      head[PTRACE_FR_TOKEN / 8] == l->token &&
		      head[PTRACE_FR_DONE / 8] != l->token && head[PTRACE_FR_DONE / 8] != ~l->token;
	if (running) {
		struct proc_ptrace *one =
			proc_ptrace_hold_one(t->pid, l->tid, core_now_ns() + 200000000ull);
		struct ptrace_arch_saved *s = one ? ptrace_arch_save(l->tid) : NULL;
		/* Not held (gone, or not stopping): taken as still running
		 * only if it exists — a thread that cannot stop now is no
		 * proof it has left. */
		running = s ? ptrace_arch_sp(s) < l->base : one == NULL && thread_exists(t->pid, l->tid);
		ptrace_arch_saved_free(s);
		if (one)
			proc_ptrace_resume(one, NULL);
	}
	if (!running)
		t->call_left.tid = 0;
	return running;
}

/* AArch64: make [addr, addr + len) of the target visible to its
 * instruction fetch, run by one of its threads (see above). */
static int remote_icache(struct proc_target *t, uint64_t addr, uint64_t len,
			 struct core_err *err)
{
	int rc = need_stub(t, err);
	uint64_t fn = rc ? 0 : proc_ptrace_icache_routine(t->stub);
	if (rc || !fn || !len)
		return rc;
	return remote_call(t, fn, addr, addr + len, 0, err);
}

static int ptrace_call_lib(struct proc_target *t, const char *lib, const char *sym, uint64_t arg,
			   uint64_t arg2, struct core_err *err)
{
	uint64_t fn = find_lib_symbol(t, lib, sym);
	return fn ? remote_call(t, fn, arg, arg2, 1, err) : 1;
}

/* A stopped world: the seized threads and where each is. */
struct ptrace_stop {
	struct proc_ptrace *pt;
	struct proc_thread_state *states;
	size_t n;
	struct proc_boost boost; /* the tracer's priority while stopped (boost.c) */
};

static int ptrace_stop_all(struct proc_target *t, struct proc_stop **out, uint32_t *threads,
			   struct core_err *err)
{
	*out = NULL;
	struct ptrace_stop *s = calloc(1, sizeof(*s));
	if (!s)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	proc_boost(&s->boost);
	int rc = proc_ptrace_stop(t->pid, 1, t->stop_timeout_ms, &s->pt, err);
	if (rc) {
		proc_unboost(&s->boost);
		free(s);
		return rc;
	}
	*threads = 0;
	for (size_t i = 0; i < s->pt->n; i++)
		*threads += s->pt->t[i].stopped && !s->pt->t[i].gone;
	/* Allocating is fine here: the stopped process is another one. */
	s->states = calloc(s->pt->n + 1, sizeof(*s->states));
	if (!s->states) {
		proc_ptrace_resume(s->pt, NULL);
		proc_unboost(&s->boost);
		free(s);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	s->n = proc_ptrace_states(s->pt, s->states, s->pt->n);
	*out = (struct proc_stop *)s;
	return 0;
}

static const struct proc_thread_state *ptrace_states(const struct proc_stop *ps, size_t *n)
{
	const struct ptrace_stop *s = (const struct ptrace_stop *)ps;
	*n = s->n;
	return s->states;
}

/* Between poke_prepare and poke_done (AArch64): the code words the stop
 * writes, for the maintenance run before the threads go (see above). */
struct ptrace_pokes {
	uint64_t routine;	/* the stub's maintenance routine */
	uint64_t list;		/* a read-write mapping in the target for the list */
	uint64_t list_size;
	uint64_t *v;		/* the written code addresses */
	size_t n, cap;
	uint64_t lo, hi;	/* their span, for a list that overflowed */
	int overflow;
};

static void ptrace_resume_all(struct proc_target *t, struct proc_stop *ps, uint64_t *released_ns)
{
	struct ptrace_stop *s = (struct ptrace_stop *)ps;
	if (!s)
		return;
	struct ptrace_pokes *pk = t->poke_state;
	if (pk && pk->n) {
		/* The written words made visible to instruction fetch by a
		 * thread of the target, before any other thread runs again.
		 * Best effort: should this fail, what remains is the kernel's
		 * own maintenance of each write (see above). */
		uint64_t args[6] = { pk->lo, pk->hi, 0, 0, 0, 0 }, ret;
		struct core_err ignore = { 0 };
		if (!pk->overflow && proc_mem_write(t->memfd, pk->list, pk->v, pk->n * 8) == 0) {
			args[0] = pk->list;
			args[1] = (uint64_t)-(int64_t)pk->n;
		}
		proc_ptrace_call(s->pt, t->memfd, t->stub, pk->routine, args, t->call_timeout_ms, &ret,
				 &ignore);
		if (s->pt->left.tid)
			t->call_left = s->pt->left;
		pk->n = 0;
		pk->overflow = 0;
	}
	proc_ptrace_resume(s->pt, released_ns);
	proc_unboost(&s->boost);
	free(s->states);
	free(s);
}

static void ptrace_poke_done(struct proc_target *t)
{
	struct ptrace_pokes *pk = t->poke_state;
	t->poke_state = NULL;
	if (!pk)
		return;
	if (pk->list)
		ptrace_unmap(t, pk->list, pk->list_size);
	free(pk->v);
	free(pk);
}

static int ptrace_poke_prepare(struct proc_target *t, const struct proc_span *spans, size_t n,
			       struct core_err *err)
{
	proc_stacks_load(); /* dlopen: not inside the pause */
	proc_mem_prefault(t->memfd, spans, n);
	size_t code = 0;
	for (size_t i = 0; i < n; i++)
		code += spans[i].kind == PROC_SPAN_CODE;
	if (!code)
		return 0;
	int rc = need_stub(t, err);
	uint64_t routine = rc ? 0 : proc_ptrace_icache_routine(t->stub);
	if (rc || !routine)
		return rc;
	struct ptrace_pokes *pk = calloc(1, sizeof(*pk));
	/* A forward switch writes each span once; one that fails writes
	 * them back: twice at most. */
	size_t cap = 2 * code;
	if (!pk || !(pk->v = malloc(cap * sizeof(*pk->v)))) {
		free(pk);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	pk->cap = cap;
	pk->routine = routine;
	pk->lo = UINT64_MAX;
	uint64_t pg = arch_page_size();
	pk->list_size = (cap * 8 + pg - 1) & ~(pg - 1);
	t->poke_state = pk;
	int mrc = remote_mmap_any(t, pk->list_size, PROT_READ | PROT_WRITE, &pk->list, err);
	if (mrc) {
		ptrace_poke_done(t);
		return mrc;
	}
	return 0;
}

static int ptrace_peek(struct proc_target *t, uint64_t addr, void *buf, size_t len)
{
	return proc_mem_read(t->memfd, addr, buf, len);
}

static void ptrace_peek_many(struct proc_target *t, const struct iovec *remote,
			     const struct iovec *local, size_t n, uint8_t *ok)
{
	/* process_vm_readv stops at the first range it cannot read: that one
	 * gets a peek of its own (ok or not), and the batch goes on after it.
	 * If the call itself is refused (EPERM under some security modules,
	 * ENOSYS), everything is peeked. */
	size_t i = 0;
	int vm_ok = 1;
	while (i < n) {
		size_t k = n - i < IOV_MAX ? n - i : IOV_MAX, done = 0;
		ssize_t got = vm_ok ? process_vm_readv(t->pid, local + i, k, remote + i, k, 0) : -1;
		if (got < 0 && errno != EFAULT)
			vm_ok = 0;
		size_t left = got > 0 ? (size_t)got : 0;
		for (; done < k && left >= remote[i + done].iov_len; done++) {
			ok[i + done] = 1;
			left -= remote[i + done].iov_len;
		}
		if (done < k) {
			ok[i + done] = !ptrace_peek(t, (uint64_t)(uintptr_t)remote[i + done].iov_base,
						    local[i + done].iov_base, remote[i + done].iov_len);
			done++;
		}
		i += done;
	}
}

static int ptrace_poke(struct proc_target *t, uint64_t addr, const void *buf, size_t len, int code)
{
	/* x86-64: the instruction cache is coherent with these writes; the
	 * threads resume through the kernel, which serializes. AArch64: the
	 * written words are listed for the maintenance at resume. */
	int rc = proc_mem_write(t->memfd, addr, buf, len);
	struct ptrace_pokes *pk = t->poke_state;
	if (!rc && code && pk && len) {
		/* A write of several words (a run, apply.c) lists its first
		 * address and every 16-byte boundary inside it: one address in
		 * each granule of the smallest cache line the architecture
		 * allows. */
		for (uint64_t at = addr; at < addr + len; at = (at & ~15ull) + 16) {
			if (pk->n < pk->cap)
				pk->v[pk->n++] = at;
			else
				pk->overflow = 1;
		}
		pk->lo = addr < pk->lo ? addr : pk->lo;
		pk->hi = addr + len > pk->hi ? addr + len : pk->hi;
	}
	return rc;
}

static int ptrace_count_frames(struct proc_target *t, struct proc_stop *ps,
			       const uint64_t (*ranges)[2], size_t n, uint32_t *threads,
			       uint32_t *frames)
{
	return proc_stacks_count(((struct ptrace_stop *)ps)->pt, ranges, n, threads, frames);
}

/* The path goes on a scratch page (openat reads it from the target's
 * memory); the target opens, maps and closes the file itself, so the
 * mapping and its mmap event are the target's. */
static int ptrace_map_marker(struct proc_target *t, const char *path, struct core_err *err)
{
	size_t len = strlen(path) + 1;
	if (len > 4096)
		return core_errf(err, OCOLOS_EINVAL, "path too long: %s", path);
	uint64_t scratch = 0;
	int rc = remote_mmap_any(t, 4096, PROT_READ | PROT_WRITE, &scratch, err);
	if (rc)
		return rc;
	int64_t fd = -1, ret = 0;
	if (proc_mem_write(t->memfd, scratch, path, len))
		rc = core_errf(err, OCOLOS_EIO, "cannot write into process %d at 0x%llx", (int)t->pid,
			       (unsigned long long)scratch);
	uint64_t o[6] = { (uint64_t)(int64_t)AT_FDCWD, scratch, O_RDONLY | O_CLOEXEC, 0, 0, 0 };
	if (!rc && !(rc = remote_syscall(t, SYS_openat, o, &fd, err)) && fd < 0)
		rc = core_errf(err, OCOLOS_EIO, "process %d cannot open %s: %s", (int)t->pid, path,
			       strerror((int)-fd));
	if (!rc) {
		uint64_t m[6] = { 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, (uint64_t)fd, 0 };
		rc = remote_syscall(t, SYS_mmap, m, &ret, err);
		if (!rc && ret < 0 && ret > -4096)
			rc = core_errf(err, OCOLOS_EIO, "process %d cannot map %s: %s", (int)t->pid,
				       path, strerror((int)-ret));
	}
	struct core_err ignore = { 0 };
	if (fd >= 0) {
		uint64_t c[6] = { (uint64_t)fd, 0, 0, 0, 0, 0 };
		remote_syscall(t, SYS_close, c, &ret, &ignore);
	}
	uint64_t u[6] = { scratch, 4096, 0, 0, 0, 0 };
	remote_syscall(t, SYS_munmap, u, &ret, &ignore);
	return rc;
}

const struct proc_target_ops proc_target_ptrace_ops = {
	.name = "ptrace",
	.reserve_at = ptrace_reserve_at,
	.unmap = ptrace_unmap,
	.map_fill = ptrace_map_fill,
	.call_lib = ptrace_call_lib,
	.stop = ptrace_stop_all,
	.states = ptrace_states,
	.resume = ptrace_resume_all,
	.poke_prepare = ptrace_poke_prepare,
	.poke_done = ptrace_poke_done,
	.peek = ptrace_peek,
	.peek_many = ptrace_peek_many,
	.poke = ptrace_poke,
	.count_frames = ptrace_count_frames,
	.map_marker = ptrace_map_marker,
};

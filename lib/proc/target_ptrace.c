/*
 * Another process as a target, through ptrace (primitives in ptrace.c).
 *
 * Only the final switch stops every thread. Reserving, mapping C1 and
 * registering its unwind tables stop one thread at a time, briefly, to run
 * a system call or a libgcc call in it; the others keep running, which is
 * safe because nothing can reach C1 before the switch.
 *
 * C1 is mapped read-execute from the start and filled through /proc/PID/mem
 * (the kernel's copy-on-write path), so it is never writable in the target.
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

#include "core/util.h"
#include "proc/ptrace.h"
#include "proc/target.h"

#define PAGE 4096ull

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
				 "(no executable segment of a mapped file leaves some 320 free bytes "
				 "in its last page); optimize it in-process (ocolos_optimize_self)", (int)t->pid);
	return 0;
}

/* Run one system call in one briefly stopped thread. */
static int remote_syscall(struct proc_target *t, long nr, const uint64_t args[6], int64_t *ret,
			  struct core_err *err)
{
	int rc = need_stub(t, err);
	if (rc)
		return rc;
	struct inject_ptrace *pt;
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

static int ptrace_map_c1(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
			 struct inject_reservation *r, uint64_t *mapped, struct core_err *err)
{
	*mapped = 0;
	for (size_t i = 0; i < o->nsegs; i++) {
		const struct elf_segment *s = &o->segs[i];
		uint64_t start = (bias + s->vaddr) & ~(PAGE - 1);
		uint64_t end = (bias + s->vaddr + s->memsz + PAGE - 1) & ~(PAGE - 1);
		int prot = ((s->flags & PF_R) ? PROT_READ : 0) | ((s->flags & PF_X) ? PROT_EXEC : 0) |
			   ((s->flags & PF_W) ? PROT_WRITE : 0);
		if (start < r->addr || end > r->addr + r->size || ((prot & PROT_WRITE) && (prot & PROT_EXEC)))
			return core_errf(err, OCOLOS_EBOLT, "C1 segment 0x%llx-0x%llx cannot be mapped",
					 (unsigned long long)start, (unsigned long long)end);
		int rc = remote_mmap(t, start, end - start, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, err);
		if (rc)
			return rc == 1 ? core_errf(err, OCOLOS_ERESERVE, "C1 mapping refused") : rc;
		char buf[1 << 16];
		for (uint64_t done = 0; done < s->filesz;) {
			size_t n = s->filesz - done < sizeof(buf) ? (size_t)(s->filesz - done) : sizeof(buf);
			if (pread(o->fd, buf, n, (off_t)(s->offset + done)) != (ssize_t)n ||
			    proc_mem_write(t->memfd, bias + s->vaddr + done, buf, n))
				return core_errf(err, OCOLOS_EIO, "cannot copy C1 into process %d", (int)t->pid);
			done += n;
		}
		*mapped += end - start;
	}
	return 0;
}

/* Run-time address of `name` in the target's libgcc_s (or 0). */
static uint64_t find_libgcc_symbol(struct proc_target *t, const char *name)
{
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	if (core_procmaps_read(t->pid, &m, &ignore))
		return 0;
	uint64_t result = 0;
	for (size_t i = 0; i < m.n && !result; i++) {
		const struct procmaps_entry *e = &m.v[i];
		const char *base = strrchr(e->path, '/');
		if (!base || strncmp(base + 1, "libgcc_s.so", 11) || e->offset != 0)
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "/proc/%d/root%s", (int)t->pid, e->path);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		elf_version(EV_CURRENT);
		Elf *elf = fd >= 0 ? elf_begin(fd, ELF_C_READ_MMAP, NULL) : NULL;
		Elf_Scn *scn = NULL;
		GElf_Shdr sh;
		while (elf && (scn = elf_nextscn(elf, scn)) && !result) {
			if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM)
				continue;
			Elf_Data *d = elf_getdata(scn, NULL);
			for (size_t k = 0; d && k < sh.sh_size / sizeof(Elf64_Sym); k++) {
				GElf_Sym sym;
				const char *n;
				if (gelf_getsym(d, (int)k, &sym) && sym.st_value &&
				    (n = elf_strptr(elf, sh.sh_link, sym.st_name)) && !strcmp(n, name))
					result = e->start + sym.st_value; /* libgcc_s: first PT_LOAD at 0 */
			}
		}
		if (elf)
			elf_end(elf);
		if (fd >= 0)
			close(fd);
	}
	core_procmaps_free(&m);
	return result;
}

/* Call fn(arg) in one briefly stopped thread. */
static int remote_call(struct proc_target *t, uint64_t fn, uint64_t arg, struct core_err *err)
{
	int rc = need_stub(t, err);
	if (rc)
		return rc;
	struct inject_ptrace *pt;
	rc = proc_ptrace_stop(t->pid, 0, t->stop_timeout_ms, &pt, err);
	if (rc)
		return rc;
	uint64_t ret;
	rc = proc_ptrace_call(pt, t->memfd, t->stub, fn, arg, t->call_timeout_ms, &ret, err);
	proc_ptrace_resume(pt, NULL);
	return rc;
}

/*
 * C1's rebuilt .eh_frame (see unwind.c) goes after C1 in the reservation:
 * one page left reserved (its address is the handle), then the .eh_frame,
 * read-only; then the target's libgcc registers it.
 */
static int ptrace_register_unwind(struct proc_target *t, uint64_t eh_frame, uint64_t size,
				  uint64_t lo, uint64_t hi, struct inject_reservation *r,
				  uint64_t *used, uint64_t *handle, struct core_err *err)
{
	*handle = 0;
	uint64_t reg = find_libgcc_symbol(t, "__register_frame");
	if (!reg) {
		core_logf(t->log, OCOLOS_LOG_INFO,
			  "process %d has no libgcc_s loaded: C1's unwind tables are not registered "
			  "(a C program without exceptions does not need them)", (int)t->pid);
		return 0;
	}
	uint64_t anchor = (r->addr + *used + PAGE - 1) & ~(PAGE - 1), at = anchor + PAGE;
	uint8_t *eh = malloc(size ? size : 1), *buf = NULL;
	size_t len = 0, n = 0;
	int rc = 0;
	if (!eh || proc_mem_read(t->memfd, eh_frame, eh, size))
		rc = core_errf(err, OCOLOS_EIO, "cannot read C1's .eh_frame back from process %d", (int)t->pid);
	else if (inject_build_eh_frame(eh, size, eh_frame, lo, hi, at, &buf, &len, &n))
		rc = core_errf(err, OCOLOS_ENOTSUP, "C1's .eh_frame could not be rebuilt (an encoding "
			       "this library does not handle)");
	free(eh);
	uint64_t pages = (len + PAGE - 1) & ~(PAGE - 1);
	if (!rc && n && at + pages > r->addr + r->size)
		rc = core_errf(err, OCOLOS_ERESERVE, "no room after C1 for its unwind table");
	if (!rc && n)
		rc = remote_mmap(t, at, pages, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, err);
	if (!rc && n && proc_mem_write(t->memfd, at, buf, len))
		rc = core_errf(err, OCOLOS_EIO, "cannot write C1's unwind table into process %d", (int)t->pid);
	free(buf);
	if (!rc && n)
		rc = remote_call(t, reg, at, err);
	if (rc || !n)
		return rc;
	*used = at + pages - r->addr;
	*handle = anchor;
	core_logf(t->log, OCOLOS_LOG_DEBUG, "registered %zu FDEs of C1 with process %d's libgcc_s",
		  n, (int)t->pid);
	return 0;
}

static void ptrace_unregister_unwind(struct proc_target *t, uint64_t handle)
{
	uint64_t dereg = handle ? find_libgcc_symbol(t, "__deregister_frame") : 0;
	struct core_err ignore = { 0 };
	if (dereg)
		remote_call(t, dereg, handle + PAGE, &ignore);
}

static int ptrace_switch(struct proc_target *t, struct inject_plan *plan, int forward,
			 uint32_t *threads, uint64_t *pause_ns, struct inject_apply_result *res,
			 struct core_err *err)
{
	struct inject_ptrace *pt;
	if (t->moved)
		proc_stacks_load(); /* not inside the pause */
	struct stack_snapshot *ss = NULL;
	uint64_t *scratch = NULL;
	int rc = proc_target_prepare_entries(t, plan, forward, &ss, &scratch, err);
	if (rc)
		return rc;
	inject_prefault(t->memfd, plan);
	uint64_t t0 = core_now_ns(), t1;
	rc = proc_ptrace_stop(t->pid, 1, t->stop_timeout_ms, &pt, err);
	if (rc) {
		proc_target_release_entries(ss, scratch);
		return rc;
	}
	*threads = 0;
	for (size_t i = 0; i < pt->n; i++)
		*threads += pt->t[i].stopped && !pt->t[i].gone;
	if (ss) {
		struct inject_thread_state ts[1024];
		size_t nts = proc_ptrace_states(pt, ts, sizeof(ts) / sizeof(ts[0]));
		if (nts < *threads)
			for (size_t i = 0; i < plan->n; i++) /* too many threads to check */
				plan->v[i].blocked = plan->v[i].kind == INJECT_ENTRY;
		else
			proc_target_check_entries(plan, ts, nts, ss, scratch);
	}
	rc = inject_apply(t->memfd, plan, forward, res, err);
	if (!rc && t->moved) {
		/* Counted while stopped, so part of the pause (reported apart). */
		uint64_t s0 = core_now_ns();
		if (proc_stacks_count(pt, t->moved, t->nmoved, &t->stack_threads, &t->stack_frames))
			core_logf(t->log, OCOLOS_LOG_DEBUG, "libunwind-ptrace unavailable: stacks not walked");
		t->stack_ns = core_now_ns() - s0;
	}
	proc_ptrace_resume(pt, &t1);
	*pause_ns = t1 - t0;
	proc_target_release_entries(ss, scratch);
	return rc;
}

const struct proc_target_ops proc_target_ptrace_ops = {
	.name = "ptrace",
	.reserve_at = ptrace_reserve_at,
	.unmap = ptrace_unmap,
	.map_c1 = ptrace_map_c1,
	.register_unwind = ptrace_register_unwind,
	.unregister_unwind = ptrace_unregister_unwind,
	.switch_plan = ptrace_switch,
};

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
#include "inject/ptrace.h"
#include "inject/target.h"

#define PAGE 4096ull

/* Run one system call in one briefly stopped thread. */
static int remote_syscall(struct target *t, long nr, const uint64_t args[6], int64_t *ret,
			  struct core_err *err)
{
	if (!t->gadget) {
		struct procmaps m = { 0 };
		int rc = procmaps_read(t->pid, &m, err);
		if (rc)
			return rc == OCOLOS_EIO ? core_errf(err, OCOLOS_ENOPROC, "process %d is gone", (int)t->pid) : rc;
		t->gadget = inject_ptrace_find_gadget(t->pid, &m, t->memfd);
		procmaps_free(&m);
		if (!t->gadget)
			return core_errf(err, OCOLOS_ENOTSUP, "no syscall instruction found in process %d",
					 (int)t->pid);
	}
	struct inject_ptrace *pt;
	int rc = inject_ptrace_stop(t->pid, 0, t->stop_timeout_ms, &pt, err);
	if (rc)
		return rc;
	rc = inject_ptrace_syscall(pt, t->gadget, nr, args, ret, err);
	inject_ptrace_resume(pt, NULL);
	return rc;
}

static int remote_mmap(struct target *t, uint64_t addr, uint64_t size, int prot, int flags,
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

static int ptrace_reserve_at(struct target *t, uint64_t addr, uint64_t size, struct core_err *err)
{
	return remote_mmap(t, addr, size, PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, err);
}

static void ptrace_unmap(struct target *t, uint64_t addr, uint64_t size)
{
	uint64_t a[6] = { addr, size, 0, 0, 0, 0 };
	int64_t ret;
	struct core_err ignore = { 0 };
	remote_syscall(t, SYS_munmap, a, &ret, &ignore);
}

static int ptrace_map_c1(struct target *t, const struct bolt_output *o, uint64_t bias,
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
			    inject_mem_write(t->memfd, bias + s->vaddr + done, buf, n))
				return core_errf(err, OCOLOS_EIO, "cannot copy C1 into process %d", (int)t->pid);
			done += n;
		}
		*mapped += end - start;
	}
	return 0;
}

/* Run-time address of `name` in the target's libgcc_s (or 0). */
static uint64_t find_libgcc_symbol(struct target *t, const char *name)
{
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	if (procmaps_read(t->pid, &m, &ignore))
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
	procmaps_free(&m);
	return result;
}

/* Call fn(arg) in one briefly stopped thread, returning to `trap`. */
static int remote_call(struct target *t, uint64_t fn, uint64_t arg, uint64_t trap,
		       struct core_err *err)
{
	struct inject_ptrace *pt;
	int rc = inject_ptrace_stop(t->pid, 0, t->stop_timeout_ms, &pt, err);
	if (rc)
		return rc;
	uint64_t ret;
	rc = inject_ptrace_call(pt, t->memfd, fn, arg, trap, t->call_timeout_ms, &ret, err);
	inject_ptrace_resume(pt, NULL);
	return rc;
}

/*
 * The table of FDE pointers libgcc's __register_frame_table() wants (see
 * unwind.c) is built here from C1's .eh_frame as mapped in the target, and
 * placed after C1 in the reservation: one read-execute page holding the
 * int3 our injected call returns to, then the table, read-only.
 */
static int ptrace_register_unwind(struct target *t, uint64_t eh_frame, uint64_t size,
				  struct inject_reservation *r, uint64_t *used, uint64_t *handle,
				  struct core_err *err)
{
	*handle = 0;
	uint64_t reg = find_libgcc_symbol(t, "__register_frame_table");
	if (!reg) {
		core_logf(t->log, OCOLOS_LOG_INFO,
			  "process %d has no libgcc_s loaded: C1's unwind tables are not registered "
			  "(a C program without exceptions does not need them)", (int)t->pid);
		return 0;
	}
	uint8_t *eh = malloc(size ? size : 1);
	uint64_t *table = NULL;
	size_t n = 0;
	if (!eh || inject_mem_read(t->memfd, eh_frame, eh, size)) {
		free(eh);
		return core_errf(err, OCOLOS_EIO, "cannot read C1's .eh_frame back from process %d", (int)t->pid);
	}
	table = calloc(size / 8 + 2, sizeof(*table));
	for (uint64_t off = 0; table && off + 8 <= size;) {
		uint32_t len, id;
		memcpy(&len, eh + off, 4);
		if (len == 0 || len == 0xffffffffu || off + 4 + len > size)
			break;
		memcpy(&id, eh + off + 4, 4);
		if (id != 0)
			table[n++] = eh_frame + off;
		off += 4 + len;
	}
	free(eh);
	if (!table)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	uint64_t bytes = (n + 1) * 8, base = (r->addr + *used + PAGE - 1) & ~(PAGE - 1);
	uint64_t tpages = (bytes + PAGE - 1) & ~(PAGE - 1);
	if (base + PAGE + tpages > r->addr + r->size) {
		free(table);
		return core_errf(err, OCOLOS_ERESERVE, "no room after C1 for its unwind table");
	}
	uint8_t int3 = 0xcc;
	int rc = remote_mmap(t, base, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, err);
	if (!rc)
		rc = remote_mmap(t, base + PAGE, tpages, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, err);
	if (!rc && (inject_mem_write(t->memfd, base, &int3, 1) ||
		    inject_mem_write(t->memfd, base + PAGE, table, bytes)))
		rc = core_errf(err, OCOLOS_EIO, "cannot write C1's unwind table into process %d", (int)t->pid);
	free(table);
	if (!rc)
		rc = remote_call(t, reg, base + PAGE, base, err);
	if (rc)
		return rc;
	*used = base + PAGE + tpages - r->addr;
	*handle = base;
	core_logf(t->log, OCOLOS_LOG_DEBUG, "registered %zu FDEs of C1 with process %d's libgcc_s",
		  n, (int)t->pid);
	return 0;
}

static void ptrace_unregister_unwind(struct target *t, uint64_t handle)
{
	uint64_t dereg = handle ? find_libgcc_symbol(t, "__deregister_frame_info") : 0;
	struct core_err ignore = { 0 };
	if (dereg)
		remote_call(t, dereg, handle + PAGE, handle, &ignore);
}

static int ptrace_switch(struct target *t, const struct inject_plan *plan, int forward,
			 uint32_t *threads, uint64_t *pause_ns, struct inject_apply_result *res,
			 struct core_err *err)
{
	struct inject_ptrace *pt;
	uint64_t t0 = core_now_ns(), t1;
	int rc = inject_ptrace_stop(t->pid, 1, t->stop_timeout_ms, &pt, err);
	if (rc)
		return rc;
	*threads = 0;
	for (size_t i = 0; i < pt->n; i++)
		*threads += pt->t[i].stopped && !pt->t[i].gone;
	rc = inject_apply(t->memfd, plan, forward, res, err);
	inject_ptrace_resume(pt, &t1);
	*pause_ns = t1 - t0;
	return rc;
}

const struct target_ops target_ptrace_ops = {
	.name = "ptrace",
	.reserve_at = ptrace_reserve_at,
	.unmap = ptrace_unmap,
	.map_c1 = ptrace_map_c1,
	.register_unwind = ptrace_register_unwind,
	.unregister_unwind = ptrace_unregister_unwind,
	.switch_plan = ptrace_switch,
};

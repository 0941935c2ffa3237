/*
 * The calling process as a target: local mmap/munmap, C1 written through
 * a read-write mapping then made read-execute, libgcc's unwinder called
 * directly, and a stop-the-world by signals (stop_self.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "core/util.h"
#include "proc/target.h"

static int self_reserve_at(struct proc_target *t, uint64_t addr, uint64_t size, struct core_err *err)
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

static int self_map_c1(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
		       struct inject_reservation *r, uint64_t *mapped, struct core_err *err)
{
	return inject_map_c1(o, bias, r, mapped, err);
}

static int self_register_unwind(struct proc_target *t, uint64_t eh_frame, uint64_t size,
				uint64_t lo, uint64_t hi, struct inject_reservation *r,
				uint64_t *used, uint64_t *handle, struct core_err *err)
{
	void *h = NULL;
	int rc = inject_unwind_register(eh_frame, size, lo, hi, r, used, &h, err);
	*handle = (uint64_t)(uintptr_t)h;
	return rc;
}

static void self_unregister_unwind(struct proc_target *t, uint64_t handle)
{
	inject_unwind_deregister((void *)(uintptr_t)handle);
}

struct stack_snapshot {
	struct procmaps maps;
	int memfd;
};

static size_t read_stack(void *ctx, uint64_t sp, uint64_t *words, size_t max)
{
	const struct stack_snapshot *ss = ctx;
	return inject_stack_words(&ss->maps, ss->memfd, sp, words, max);
}

/* Before a forward switch with entry patches: what the check needs, taken
 * now because nothing may allocate once the world is stopped. */
int proc_target_prepare_entries(struct proc_target *t, const struct inject_plan *plan, int forward,
			   struct stack_snapshot **out, uint64_t **scratch, struct core_err *err)
{
	*out = NULL;
	*scratch = NULL;
	if (!forward || !plan->entries)
		return 0;
	struct stack_snapshot *ss = calloc(1, sizeof(*ss));
	*scratch = malloc(INJECT_STACK_WORDS * sizeof(**scratch));
	if (!ss || !*scratch || core_procmaps_read(t->pid, &ss->maps, err)) {
		free(ss);
		free(*scratch);
		*scratch = NULL;
		return err && err->code ? err->code : core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	ss->memfd = t->ops == &proc_target_self_ops ? -1 : t->memfd;
	*out = ss;
	return 0;
}

void proc_target_check_entries(struct inject_plan *plan, const struct inject_thread_state *ts, size_t n,
			  struct stack_snapshot *ss, uint64_t *scratch)
{
	if (ss)
		inject_entries_check(plan, ts, n, read_stack, ss, scratch);
}

void proc_target_release_entries(struct stack_snapshot *ss, uint64_t *scratch)
{
	if (ss)
		core_procmaps_free(&ss->maps);
	free(ss);
	free(scratch);
}

static int self_switch(struct proc_target *t, struct inject_plan *plan, int forward,
		       uint32_t *threads, uint64_t *pause_ns, struct inject_apply_result *res,
		       struct core_err *err)
{
	struct inject_stop *stop;
	int rc;
#if defined(__aarch64__)
	/* In place, by mprotect (see apply.c: qemu-user does not see code
	 * written through /proc/self/mem). The pages' protections are read
	 * now: reading /proc/self/maps allocates, which a stopped world
	 * forbids (a parked thread may hold the allocator's lock). */
	struct inject_prots prots;
	rc = inject_prot_collect(plan, &prots, err);
	if (rc)
		return rc;
#endif
	struct stack_snapshot *ss = NULL;
	uint64_t *scratch = NULL;
	rc = proc_target_prepare_entries(t, plan, forward, &ss, &scratch, err);
	if (rc)
		return rc;
#if !defined(__aarch64__)
	inject_prefault(t->memfd, plan);
#endif
	uint64_t t0 = core_now_ns(), t1;
	rc = proc_stop_self(t->stop_signal, t->stop_timeout_ms, &stop, threads, err);
	if (!rc) {
		size_t nts;
		const struct inject_thread_state *ts = proc_stop_states(stop, &nts);
		proc_target_check_entries(plan, ts, nts, ss, scratch);
#if defined(__aarch64__)
		rc = inject_apply_local(plan, &prots, forward, res, err);
#else
		rc = inject_apply_self(t->memfd, plan, forward, res, err);
#endif
		proc_resume_self(stop, &t1);
		*pause_ns = t1 - t0; /* the pause ends when the parked threads are woken */
	}
	proc_target_release_entries(ss, scratch);
#if defined(__aarch64__)
	inject_prots_free(&prots);
#endif
	return rc;
}

const struct proc_target_ops proc_target_self_ops = {
	.name = "self",
	.reserve_at = self_reserve_at,
	.unmap = self_unmap,
	.map_c1 = self_map_c1,
	.register_unwind = self_register_unwind,
	.unregister_unwind = self_unregister_unwind,
	.switch_plan = self_switch,
};

int proc_target_open(struct proc_target *t, pid_t pid, const struct core_log *log, struct core_err *err)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->log = log;
	t->memfd = -1;
	t->ops = pid == getpid() ? &proc_target_self_ops : &proc_target_ptrace_ops;
#if !defined(__x86_64__)
	if (pid != getpid())
		return core_errf(err, OCOLOS_ENOTSUP,
				 "optimizing another process (ptrace injector) is implemented for "
				 "x86-64 only; on this machine link libocolos into the program and call "
				 "ocolos_optimize_self()");
#endif
	int rc = proc_mem_open(pid, &t->memfd, err);
	if (!rc && t->ops == &proc_target_self_ops)
		arch_sync_core_register();
	return rc;
}

void proc_target_close(struct proc_target *t)
{
	if (t->memfd >= 0)
		close(t->memfd);
	t->memfd = -1;
}

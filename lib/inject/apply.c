/*
 * Writing a patch plan while the world is stopped.
 *
 * Who may execute the bytes: no one. Every other thread is parked in the
 * stop handler (stop_self.c) or, for another process, stopped by ptrace;
 * a stopped thread's PC is at an instruction boundary, so it can never
 * resume in the middle of a rel32 we change — it executes either the old
 * or the new instruction, whole. The writing thread does not run C0 code
 * that is patched here (it is in libocolos's round).
 *
 * Visibility: the writes go through /proc/PID/mem (the kernel's
 * copy-on-write path, pages never writable in the process). Then
 * membarrier(SYNC_CORE) makes every core of the process execute a
 * core-serializing instruction before it runs user code again, which is
 * what the x86 cross-modifying-code rule asks for; parked threads also
 * return through rt_sigreturn, itself serializing on x86-64.
 *
 * Each patch is checked against the bytes the plan expects there (C0 as on
 * disk going forward, the C1 redirection going back, for a revert):
 * if memory differs — another tool patched it, or the file is not what is
 * running — that patch is skipped and counted, never forced.
 */
#include <linux/membarrier.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "inject/inject.h"

int inject_apply(int memfd, const struct inject_plan *plan, int forward,
		 struct inject_apply_result *res, struct core_err *err)
{
	memset(res, 0, sizeof(*res));
	for (size_t i = 0; i < plan->n; i++) {
		const struct inject_patch *p = &plan->v[i];
		const uint8_t *from = forward ? p->old : p->new_, *to = forward ? p->new_ : p->old;
		uint8_t cur[8];
		if (inject_mem_read(memfd, p->addr, cur, p->len) || memcmp(cur, from, p->len)) {
			res->mismatched++;
			continue;
		}
		if (inject_mem_write(memfd, p->addr, to, p->len)) {
			/* Put back what this call wrote: all or nothing. */
			for (size_t k = 0; k < i; k++) {
				const struct inject_patch *q = &plan->v[k];
				uint8_t now[8];
				if (!inject_mem_read(memfd, q->addr, now, q->len) &&
				    !memcmp(now, forward ? q->new_ : q->old, q->len))
					inject_mem_write(memfd, q->addr, forward ? q->old : q->new_, q->len);
			}
			return core_errf(err, OCOLOS_EPATCH, "writing %u bytes at 0x%llx failed; "
					 "earlier patches were undone, the program runs its original code",
					 p->len, (unsigned long long)p->addr);
		}
		if (p->kind == INJECT_CALL_SITE)
			res->call_sites++;
		else
			res->ptr_slots++;
	}
	syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
	return 0;
}

int inject_sync_core_register(void)
{
	/* Best effort: older kernels lack SYNC_CORE; sigreturn still serializes. */
	return (int)syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
}

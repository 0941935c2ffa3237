/* Opening a target: which of the two it is, and its /proc/PID/mem. */
#include <string.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "proc/proc.h"

int proc_target_open(struct proc_target *t, pid_t pid, const struct core_log *log,
		     struct core_err *err)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->log = log;
	t->memfd = -1;
	t->ops = pid == getpid() ? &proc_target_self_ops : &proc_target_ptrace_ops;
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

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

const char *proc_reg_name(unsigned r)
{
#if defined(__aarch64__)
	static const char *const names[] = {
		"x0",  "x1",  "x2",  "x3",  "x4",  "x5",  "x6",  "x7",  "x8",  "x9",  "x10",
		"x11", "x12", "x13", "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21",
		"x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30"
	};
#else
	static const char *const names[] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi",
					     "rbp", "r8",  "r9",  "r10", "r11", "r12",
					     "r13", "r14", "r15", "fs_base" };
#endif
	return r < sizeof(names) / sizeof(names[0]) ? names[r] : NULL;
}

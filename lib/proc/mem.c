/* Process memory access through /proc/PID/mem (see proc.h for why). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "proc/proc.h"

/* From /proc/PID/stat: the state letter (field 3) and the flags (field 9),
 * after the parenthesized command name. 0, or -1 if it cannot be read. */
static int read_stat(pid_t pid, char *state, unsigned long *flags)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", state, flags) != 2)
		return -1;
	return 0;
}

int proc_mem_open(pid_t pid, int *fd, struct core_err *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	*fd = open(path, O_RDWR | O_CLOEXEC);
	if (*fd < 0 && errno == ENOENT)
		return core_errf(err, OCOLOS_ENOPROC, "process %d does not exist", (int)pid);
	/* ESRCH: the process has no user memory. A kernel thread never has
	 * any (issue 13: `--pid 2` was told the kernel forbids /proc/PID/mem
	 * writes); any other process is exiting. */
	if (*fd < 0 && errno == ESRCH) {
		char state = '?';
		unsigned long flags = 0;
		read_stat(pid, &state, &flags);
		if (flags & 0x00200000ul) /* PF_KTHREAD */
			return core_errf(err, OCOLOS_EINVAL,
					 "process %d is a kernel thread: it runs no program code to "
					 "optimize; pass the pid of a user-space process", (int)pid);
		/* A zombie was told it was "exiting" (issue 13): it has exited,
		 * only its exit status waits for its parent. */
		if (state == 'Z' || state == 'X')
			return core_errf(err, OCOLOS_ENOPROC,
					 "process %d has exited: it is a zombie whose parent has not yet "
					 "collected its exit status; nothing runs in it to optimize",
					 (int)pid);
		return core_errf(err, OCOLOS_ENOPROC,
				 "process %d is exiting (it has no memory left)", (int)pid);
	}
	if (*fd < 0 && (errno == EACCES || errno == EPERM) && pid != getpid())
		return core_errf(err, OCOLOS_EATTACH,
				 "no access to process %d's memory (%s): run as its user with ptrace "
				 "allowed (kernel.yama.ptrace_scope=0, or CAP_SYS_PTRACE)",
				 (int)pid, strerror(errno));
	if (*fd < 0)
		return core_errf(err, OCOLOS_ENOTSUP,
				 "cannot open %s for writing (%s): this kernel forbids /proc/PID/mem "
				 "writes (proc_mem.force_override); code cannot be patched",
				 path, strerror(errno));
	return 0;
}

int proc_mem_write(int fd, uint64_t addr, const void *buf, size_t len)
{
	ssize_t n = pwrite(fd, buf, len, (off_t)addr);
	return n == (ssize_t)len ? 0 : -1;
}

int proc_mem_read(int fd, uint64_t addr, void *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len, (off_t)addr);
	return n == (ssize_t)len ? 0 : -1;
}

void proc_mem_prefault(int fd, const struct proc_span *spans, size_t n)
{
	/* The first write to a page of text through /proc/PID/mem copies it
	 * (copy-on-write): thousands of those would be most of the pause.
	 * Writing each page's bytes back unchanged does the copying while the
	 * program runs; its threads keep executing the same bytes, now on a
	 * private copy of the page. */
	uint64_t last_page = UINT64_MAX, pg = arch_page_size();
	for (size_t i = 0; i < n; i++) {
		uint64_t page = spans[i].addr & ~(pg - 1);
		if (page == last_page || spans[i].kind == PROC_SPAN_DATA)
			continue;
		last_page = page;
		uint8_t cur[16];
		size_t len = spans[i].len < sizeof(cur) ? spans[i].len : sizeof(cur);
		if (proc_mem_read(fd, spans[i].addr, cur, len) == 0)
			proc_mem_write(fd, spans[i].addr, cur, len);
	}
}

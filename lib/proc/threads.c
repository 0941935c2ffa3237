/*
 * The threads of a process: the one listing of /proc/PID/task every
 * caller uses (the samplers attaching to new threads, the in-process stop
 * signalling them, ptrace seizing them). Read with getdents64 into a
 * buffer on the stack, not opendir/readdir: the in-process stop lists
 * threads while others are parked in a signal handler, possibly holding
 * the allocator's locks, so nothing here may allocate.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc/proc.h"

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

int proc_threads_each(pid_t pid, int (*fn)(void *user, pid_t tid), void *user)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	_Alignas(8) char buf[4096];
	int rc = 0;
	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (n < 0) {
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			const struct linux_dirent64 *d = (const void *)(buf + off);
			off += d->d_reclen;
			pid_t tid = 0;
			for (const char *c = d->d_name; *c >= '0' && *c <= '9'; c++)
				tid = tid * 10 + (*c - '0');
			if (tid > 0 && (rc = fn(user, tid)) != 0)
				goto done;
		}
	}
done:;
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

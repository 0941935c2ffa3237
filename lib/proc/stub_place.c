/*
 * Where the injection stub lives in the target: past the end of an
 * executable segment, in its last page (see proc_ptrace_place_stub).
 */
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proc/proc.h"
#include "proc/ptrace.h"

/* Free tail of the executable segment mapped by `e`: from the segment's end
 * in the file to the end of its last page. [*lo, *hi), or 0. */
static int exec_tail(pid_t pid, const struct procmaps_entry *e, uint64_t *lo, uint64_t *hi)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, e->path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	size_t n = 0;
	int found = 0;
	if (elf && elf_getphdrnum(elf, &n) == 0) {
		for (size_t i = 0; i < n && !found; i++) {
			GElf_Phdr ph;
			if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
				continue;
			uint64_t fend = ph.p_offset + ph.p_filesz;
			if (ph.p_offset < e->offset || fend > e->offset + (e->end - e->start))
				continue;
			*lo = e->start + (fend - e->offset);
			*hi = e->end;
			found = 1;
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

uint64_t proc_ptrace_place_stub(pid_t pid, const struct procmaps *m, int memfd)
{
	/* Past the end of an executable segment, in its last page: bytes the
	 * program never runs nor reads. Writing them (through /proc/PID/mem)
	 * gives this process a private copy of that one page, still
	 * read-execute. Shared libraries first: the program's own code stays
	 * byte for byte what it was. A stub already there (an earlier agent's,
	 * perhaps still in use by a thread) is reused, never rewritten. */
	size_t len = proc_ptrace_stub_bytes(NULL);
	const uint8_t *code;
	proc_ptrace_stub_bytes(&code);
	char exe[PATH_MAX], link[64];
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	ssize_t el = readlink(link, exe, sizeof(exe) - 1);
	exe[el > 0 ? el : 0] = '\0';
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < m->n; i++) {
			const struct procmaps_entry *e = &m->v[i];
			uint64_t lo, hi;
			if (e->perms[2] != 'x' || e->path[0] != '/' || (pass == 0) == !strcmp(e->path, exe) ||
			    !exec_tail(pid, e, &lo, &hi))
				continue;
			lo = (lo + 63) & ~63ull; /* clear of the code before it */
			if (hi < lo || hi - lo < len)
				continue;
			uint8_t buf[2048];
			if (len > sizeof(buf) || proc_mem_read(memfd, lo, buf, len))
				continue;
			if (!memcmp(buf, code, len))
				return lo;
			int zero = 1;
			for (size_t k = 0; k < len; k++)
				zero &= buf[k] == 0;
			if (zero && proc_mem_write(memfd, lo, code, len) == 0)
				return lo;
		}
	}
	return 0;
}

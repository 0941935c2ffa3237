/*
 * The preload library's counters hand-over (the rest of it is preload.c):
 * an instrumented process's counters, handed over at its exit, and the
 * worker's replay of them (tools/bam/counts.h says why). Compiled into
 * libocolos-bam.so with preload.c, under the same rules: libc only, no
 * malloc, no stdio; this runs inside the build's compilers, at their exit.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h> /* rename() only: a system call wrapper */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bam.h"
#include "handover.h"
#include "pstr.h"

#define BAM_COUNTERS_MAX (1u << 28) /* 2 GiB of counters: beyond it, not ours */

/* The main program (glibc lists it first): its load bias (0 unless PIE),
 * its DT_FINI, which ld.so calls at l_addr + d_ptr, and its writable
 * segments (link-time addresses), where counters can be. */
#define MAX_WSEG 8
struct main_object {
	uintptr_t bias;
	void (*fini)(void);
	uint64_t w_lo[MAX_WSEG], w_hi[MAX_WSEG];
	int nw;
	uint64_t relro_lo, relro_hi; /* read-only once relocated: not counters */
};

static int first_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct main_object *m = data;
	m->bias = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_GNU_RELRO) {
			m->relro_lo = ph->p_vaddr;
			m->relro_hi = ph->p_vaddr + ph->p_memsz;
		}
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) && m->nw < MAX_WSEG) {
			m->w_lo[m->nw] = ph->p_vaddr;
			m->w_hi[m->nw++] = ph->p_vaddr + ph->p_memsz;
		}
		if (ph->p_type != PT_DYNAMIC)
			continue;
		for (const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr +
							     info->dlpi_phdr[i].p_vaddr);
		     d->d_tag != DT_NULL; d++)
			if (d->d_tag == DT_FINI && d->d_un.d_ptr)
				m->fini = (void (*)(void))(info->dlpi_addr + d->d_un.d_ptr);
	}
	return 1;
}

static int main_object(struct main_object *m)
{
	memset(m, 0, sizeof(*m));
	return dl_iterate_phdr(first_object, m) == 1 ? 0 : -1;
}

/* Is [addr, addr + len) (link-time) inside one writable segment? The
 * addresses come from the cache entry: a wrong one must not be written
 * through (the run would fault after its work was done). */
static int writable(const struct main_object *m, uint64_t addr, uint64_t len)
{
	if (addr < m->relro_hi && addr + len > m->relro_lo)
		return 0;
	for (int i = 0; i < m->nw; i++)
		if (addr >= m->w_lo[i] && len <= m->w_hi[i] - m->w_lo[i] &&
		    addr - m->w_lo[i] <= m->w_hi[i] - m->w_lo[i] - len)
			return 1;
	return 0;
}

/* The counters at link-time `loc`, their number at `num`, of this
 * process's main program: NULL unless both lie in its writable segments. */
static uint64_t *counters_at(const struct main_object *m, uint64_t loc, uint64_t num,
			     uint32_t *count)
{
	if (!writable(m, num, sizeof(uint32_t)))
		return NULL;
	*count = *(const volatile uint32_t *)(m->bias + num);
	if (!*count || *count > BAM_COUNTERS_MAX ||
	    !writable(m, loc, (uint64_t)*count * sizeof(uint64_t)))
		return NULL;
	return (uint64_t *)(m->bias + loc);
}

/* Is the running program `path` (the same file as /proc/self/exe)? */
static int self_is(const char *path)
{
	struct stat a, b;
	return !stat("/proc/self/exe", &a) && !stat(path, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static int write_full(int fd, const void *buf, size_t len)
{
	for (const char *p = buf; len;) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	for (char *p = buf; len;) {
		ssize_t r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* An instrumented run at exit, before BOLT's runtime writes its profile:
 * the counters go to fdata/counts.<pid> (written whole, then renamed in)
 * and are zeroed, so that the runtime's dump finds no function to write
 * and is quick (counts.h: the expensive part of the run, for a compiler);
 * the worker replays them later. Only where the worker found the counters
 * in this very copy (BAM_COUNTERS_FILE, checked against /proc/self/exe);
 * on any failure the counters stay and the runtime writes them as usual. */
void handover_counts(const char *entry, const char *fdata)
{
	char p[PATH_MAX], t[PATH_MAX], buf[160];
	size_t n = 0;
	if (cat(p, sizeof(p), &n, entry) || cat(p, sizeof(p), &n, "/" BAM_COUNTERS_FILE))
		return;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return;
	buf[r] = 0;
	char *end;
	uint64_t loc = strtoull(buf, &end, 16), num = strtoull(end, &end, 16);
	uint64_t size = strtoull(end, &end, 16), mtime = strtoull(end, &end, 16);
	/* This copy, and still the entry's (the worker replays that file). */
	struct stat st;
	n = 0;
	if (*end != '\n' || !loc || !num || stat("/proc/self/exe", &st) ||
	    (uint64_t)st.st_size != size || (uint64_t)st.st_mtime != mtime ||
	    cat(p, sizeof(p), &n, entry) || cat(p, sizeof(p), &n, "/instrumented") || !self_is(p))
		return;
	struct main_object m;
	uint32_t count;
	uint64_t *counters;
	if (main_object(&m) || !(counters = counters_at(&m, loc, num, &count)))
		return;
	struct bam_counts_header h = { BAM_COUNTS_MAGIC, loc, num, count };
	n = 0;
	if (cat(p, sizeof(p), &n, fdata) || cat(p, sizeof(p), &n, "/counts.") ||
	    cat_u64(p, sizeof(p), &n, (uint64_t)getpid(), 10))
		return;
	memcpy(t, p, n + 1);
	size_t tn = n;
	if (cat(t, sizeof(t), &tn, ".tmp"))
		return;
	fd = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	int bad = write_full(fd, &h, sizeof(h)) ||
		  write_full(fd, counters, (size_t)count * sizeof(uint64_t));
	if (close(fd) || bad || rename(t, p)) {
		unlink(t);
		return;
	}
	memset(counters, 0, (size_t)count * sizeof(uint64_t));
}

/* The replay (handover_replay) after BOLT's dump: the runtime wrote prof.<pid>.fdata
 * beside the counters; it becomes <counters>.fdata for the worker. */
static void replay_done(const char *replay_path)
{
	char p[PATH_MAX], q[PATH_MAX];
	size_t n = 0, m = 0;
	const char *slash = strrchr(replay_path, '/');
	if (!slash || (size_t)(slash - replay_path) + 1 >= sizeof(p))
		return;
	memcpy(p, replay_path, (size_t)(slash - replay_path) + 1);
	n = (size_t)(slash - replay_path) + 1;
	p[n] = 0;
	if (!cat(p, sizeof(p), &n, "prof.") && !cat_u64(p, sizeof(p), &n, (uint64_t)getpid(), 10) &&
	    !cat(p, sizeof(p), &n, ".fdata") && !cat(q, sizeof(q), &m, replay_path) &&
	    !cat(q, sizeof(q), &m, ".fdata"))
		rename(p, q);
}

/* The worker's replay of a run's counters (handover_counts), in the copy
 * itself: at the entry point BOLT's runtime has set its counters up, and
 * ld.so has loaded and initialised the libraries; before libc starts the
 * program (no constructor of the program, no main), the counters are
 * loaded and BOLT's dump is called (the executable's DT_FINI), which writes
 * the profile the run would have written, then the process ends. What the
 * replay adds of its own: _start's indirect call into libc (the worker
 * drops such calls). A value that is no replay's path (<entry>/fdata/
 * counts.<pid>) does nothing; a replay's path in a binary that is not the
 * entry's copy ends it before its main. Exit status: 3, not the copy, the
 * counters could not be loaded or there is no DT_FINI;
 * BAM_REPLAY_PID_TAKEN, an ended run of this pid still has its file here,
 * which the dump would overwrite (the worker starts the replay again). */
void handover_replay(const char *replay_path)
{
	char p[PATH_MAX];
	size_t n = 0;
	const char *slash = strrchr(replay_path, '/');
	if (!slash || (size_t)(slash - replay_path) + 1 >= sizeof(p))
		return;
	memcpy(p, replay_path, (size_t)(slash - replay_path));
	p[slash - replay_path] = 0;
	char *up = strrchr(p, '/'); /* <entry>/fdata -> <entry> */
	if (!up || strcmp(up, "/fdata") || strncmp(slash, "/counts.", 8))
		return; /* not a replay's path: a stray variable */
	n = (size_t)(up - p) + 1;
	p[n] = 0;
	if (cat(p, sizeof(p), &n, "instrumented") || !self_is(p)) {
		/* Meant for a replay, but this is not the entry's copy (it was
		 * replaced meanwhile): no profile, and the program does not run. */
		say("replay: ", p, " is no longer the copy that ran: no profile from that run");
		_exit(3);
	}
	n = (size_t)(slash - replay_path) + 1;
	memcpy(p, replay_path, n);
	p[n] = 0;
	struct stat st;
	if (cat(p, sizeof(p), &n, "prof.") || cat_u64(p, sizeof(p), &n, (uint64_t)getpid(), 10) ||
	    cat(p, sizeof(p), &n, ".fdata"))
		_exit(3);
	if (!lstat(p, &st))
		_exit(BAM_REPLAY_PID_TAKEN);
	struct bam_counts_header h;
	struct main_object m;
	uint32_t count;
	uint64_t *counters;
	int fd = open(replay_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (main_object(&m) || !m.fini || fd < 0 || read_full(fd, &h, sizeof(h)) ||
	    h.magic != BAM_COUNTS_MAGIC || !(counters = counters_at(&m, h.locations, h.num, &count)) ||
	    h.count != count || read_full(fd, counters, (size_t)count * sizeof(uint64_t))) {
		say("replay: cannot load the counters of ", replay_path,
		    " (missing, short, or not this copy's): no profile from that run");
		_exit(3);
	}
	close(fd);
	m.fini();
	replay_done(replay_path);
	_exit(0);
}

/*
 * libocolos-bam.so: the preload library of Batch Accelerator Mode.
 *
 * Responsible for, in every process of a build started by ocolos-bam:
 *  - the exec family (execve, execv, execvp, execvpe, execl, execlp,
 *    execle, posix_spawn, posix_spawnp): decide for the file about to run
 *    whether it is a target (explicit --target, or exec'd at least N
 *    times by processes that used enough CPU time between them), and then run it as is, run it while it profiles itself, or run
 *    the optimized copy from the cache instead (argv, argv[0] and the
 *    environment kept; see docs/bam.md for /proc/self/exe);
 *  - in a process told to profile itself (OCOLOS_BAM_PROFILE), sampling its
 *    own PC on a process CPU-time timer and writing the samples that fall in
 *    the main executable, as link-time addresses, to the entry's spool at
 *    exit;
 *  - in every process, while the automatic rule is on, recording the CPU
 *    time it used (at exit, and before an exec) for that rule;
 *  - in an optimized process (OCOLOS_BAM_RUN_*), a fault handler that
 *    quarantines the entry and re-executes the original binary in place;
 *  - in an instrumented process, calling the counters hand-over at exit,
 *    and in the worker's replay of them (OCOLOS_BAM_REPLAY) calling the
 *    replay before libc starts the program (both in handover.c;
 *    tools/bam/counts.h says why).
 * Not responsible for: deciding when to run BOLT, running it, the cache's
 * size or its trust check at the root (all in the launcher, ocolos_bam.c).
 *
 * Why not libocolos's own sigprof sampler (lib/sample/sigprof.c): it
 * samples for a window from a collector thread that blocks, per thread,
 * with /proc polling; a compiler lives 50 ms and must not get a thread.
 * This file links nothing but libc, so that loading it into every `sh`,
 * `make` and `rm` of a build costs nothing measurable. The samples become a
 * profile in the launcher's worker, through lib/infer and lib/layout.
 *
 * vfork: execve/execv/execvp are called in vfork children (GCC 12's driver,
 * libiberty's pex-unix), whose memory is the parent's. Everything on the
 * exec path therefore uses the stack and system calls only: no malloc, no
 * stdio, no change to a global; file descriptors are the child's own.
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h> /* rename() only: a system call wrapper */
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "bam.h"
#include "handover.h"
#include "pstr.h"

#define EXPORT __attribute__((visibility("default")))

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvpe_fn)(const char *, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			const posix_spawnattr_t *, char *const[], char *const[]);

/* The libc functions we wrap; set once by the constructor, before main and
 * before any thread, then only read. */
static execve_fn real_execve;
static execvpe_fn real_execvpe;
static spawn_fn real_posix_spawn, real_posix_spawnp;
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction;

/* Find the libc functions we wrap. Called by the constructor; and by a
 * wrapper that runs before it (another object's constructor exec'ing). */
static void resolve(void)
{
	real_execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
	real_execvpe = (execvpe_fn)dlsym(RTLD_NEXT, "execvpe");
	real_posix_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
	real_posix_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
	real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
}

#define RESOLVED() \
	do { \
		if (!real_execve || !real_execvpe || !real_posix_spawn || !real_posix_spawnp) \
			resolve(); \
	} while (0)

/* String helpers: pstr.h (stack only, vfork-safe). */

/* getenv() reads environ and nothing else: safe in a vfork child. */
static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static int disabled(void)
{
	const char *s = env(BAM_ENV_SWITCH);
	return (s && !strcmp(s, "off")) || !env(BAM_ENV_ROOT);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* ---- the ELF file about to run -------------------------------------------- */

struct elf_facts {
	int ok;			/* dynamic ELF of our machine with a build-id */
	unsigned char id[64];
	size_t id_len;
};

/* Read what decides whether `fd` can be a target: an ELF of the machine
 * this library was built for, dynamically linked (PT_INTERP: a static
 * binary cannot load the preload, so it cannot profile itself), with a GNU
 * build-id (the cache key). Stack buffers only. */
static void elf_read_facts(int fd, struct elf_facts *f)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[64];
	f->ok = 0;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
	    eh.e_phnum == 0 || eh.e_phnum > 64)
		return;
#if defined(__x86_64__)
	if (eh.e_machine != EM_X86_64)
		return;
#elif defined(__aarch64__)
	if (eh.e_machine != EM_AARCH64)
		return;
#endif
	size_t sz = (size_t)eh.e_phnum * sizeof(Elf64_Phdr);
	if (pread(fd, ph, sz, (off_t)eh.e_phoff) != (ssize_t)sz)
		return;
	int interp = 0;
	for (int i = 0; i < eh.e_phnum; i++)
		interp |= ph[i].p_type == PT_INTERP;
	if (!interp)
		return;
	for (int i = 0; i < eh.e_phnum && !f->ok; i++) {
		unsigned char notes[2048];
		if (ph[i].p_type != PT_NOTE || ph[i].p_filesz > sizeof(notes))
			continue;
		if (pread(fd, notes, ph[i].p_filesz, (off_t)ph[i].p_offset) != (ssize_t)ph[i].p_filesz)
			continue;
		for (size_t off = 0; off + sizeof(Elf64_Nhdr) <= ph[i].p_filesz;) {
			Elf64_Nhdr nh;
			memcpy(&nh, notes + off, sizeof(nh));
			size_t name = off + sizeof(nh), desc = name + ((nh.n_namesz + 3) & ~3u);
			size_t next = desc + ((nh.n_descsz + 3) & ~3u);
			if (next > ph[i].p_filesz)
				break;
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    !memcmp(notes + name, "GNU", 4) && nh.n_descsz && nh.n_descsz <= 64) {
				memcpy(f->id, notes + desc, nh.n_descsz);
				f->id_len = nh.n_descsz;
				f->ok = 1;
				break;
			}
			off = next;
		}
	}
}

/* ---- the decision ------------------------------------------------------------- */

enum plan_kind { PLAN_PASS = 0, PLAN_PROFILE, PLAN_OPTIMIZED, PLAN_INSTRUMENTED };

struct plan {
	enum plan_kind kind;
	char orig[PATH_MAX];	  /* canonical path of the file asked for */
	char entry[PATH_MAX];	  /* its cache entry */
	char optimized[PATH_MAX]; /* what runs: entry/optimized or entry/instrumented */
	/* added to the child's env */
	char var1[PATH_MAX + 32], var2[PATH_MAX + 32], var3[PATH_MAX + 32];
};

/* Append one event line to the session log (O_APPEND: one write, never
 * interleaved with another process's line). */
static void event_raw(const char *what, const char *entry, const char *orig)
{
	const char *log = env(BAM_ENV_SESSION);
	if (!log)
		return;
	char line[2 * PATH_MAX + 64];
	size_t n = 0;
	const char *key = strrchr(entry, '/');
	if (cat(line, sizeof(line), &n, what) || cat(line, sizeof(line), &n, " ") ||
	    cat(line, sizeof(line), &n, key ? key + 1 : "-") || cat(line, sizeof(line), &n, " ") ||
	    cat(line, sizeof(line), &n, orig) || cat(line, sizeof(line), &n, "\n"))
		return;
	int fd = open(log, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t w = write(fd, line, n);
	(void)w;
	close(fd);
}

static void event(const char *what, const struct plan *p)
{
	event_raw(what, p->entry, p->orig);
}

/* Is `canon` (or the path as asked, `asked`) named by --target? An entry
 * with a '/' is a path, compared with both; one without is a file name,
 * compared with both base names. */
static int explicit_target(const char *asked, const char *canon)
{
	const char *list = env(BAM_ENV_TARGETS);
	if (!list)
		return 0;
	const char *b1 = strrchr(asked, '/'), *b2 = strrchr(canon, '/');
	b1 = b1 ? b1 + 1 : asked;
	b2 = b2 ? b2 + 1 : canon;
	for (const char *s = list; *s;) {
		const char *e = strchr(s, ':');
		size_t l = e ? (size_t)(e - s) : strlen(s);
		int path = memchr(s, '/', l) != NULL;
		const char *c1 = path ? asked : b1, *c2 = path ? canon : b2;
		if (l && ((strlen(c1) == l && !memcmp(c1, s, l)) || (strlen(c2) == l && !memcmp(c2, s, l))))
			return 1;
		s += l + (e ? 1 : 0);
	}
	return 0;
}

/* <root>/seen/<dev>_<ino>_<size>_<mtime>: the name of a file version's
 * exec count; its CPU-time records are the same name plus ".cpu". */
static int seen_path(char *p, size_t cap, const char *root, const struct stat *st)
{
	size_t k = 0;
	return cat(p, cap, &k, root) || cat(p, cap, &k, "/seen/") ||
	       cat_u64(p, cap, &k, (uint64_t)st->st_dev, 16) || cat(p, cap, &k, "_") ||
	       cat_u64(p, cap, &k, (uint64_t)st->st_ino, 16) || cat(p, cap, &k, "_") ||
	       cat_u64(p, cap, &k, (uint64_t)st->st_size, 16) || cat(p, cap, &k, "_") ||
	       cat_u64(p, cap, &k, (uint64_t)st->st_mtim.tv_sec * 1000000000ull +
					 (uint64_t)st->st_mtim.tv_nsec, 16);
}

/* Have the processes of this file version used `want_ns` of CPU time or
 * more, by the records of `<seen>.cpu` (int64 ns each, see cpu_record())?
 * Reads from the start and stops as soon as the sum gets there, so a binary
 * that passed long ago costs one read; at most BAM_CPU_READ_MAX bytes are
 * read, which bounds what a binary that never passes costs every exec.
 * Stack only (vfork children). */
static int cpu_enough(const char *seen, int64_t want_ns)
{
	if (want_ns <= 0)
		return 1;
	char p[PATH_MAX];
	size_t k = 0;
	if (cat(p, sizeof(p), &k, seen) || cat(p, sizeof(p), &k, ".cpu"))
		return 0;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	int64_t rec[512];
	int64_t sum = 0;
	off_t off = 0;
	int hit = 0;
	while (!hit && off < BAM_CPU_READ_MAX) {
		ssize_t r = pread(fd, rec, sizeof(rec), off);
		size_t n = r > 0 ? (size_t)r / sizeof(rec[0]) : 0;
		if (!n)
			break; /* the end (or a record being appended: next time) */
		for (size_t i = 0; i < n && !hit; i++) {
			sum += rec[i];
			hit = sum >= want_ns;
		}
		off += (off_t)(n * sizeof(rec[0]));
	}
	close(fd);
	return hit;
}

/* The automatic rule: count this exec of the file (dev, inode, size, mtime)
 * in <root>/seen and say whether it has now run `auto` times or more and
 * its earlier processes used OCOLOS_BAM_AUTO_CPU_MS of CPU time between
 * them (a binary run often but briefly is not worth a BOLT run). */
static int auto_target(const char *root, const struct stat *st)
{
	const char *a = env(BAM_ENV_AUTO);
	long n = a ? strtol(a, NULL, 10) : 0;
	if (n <= 0)
		return 0;
	char p[PATH_MAX];
	if (seen_path(p, sizeof(p), root, st))
		return 0;
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 0;
	struct stat cs;
	int hit = write(fd, "x", 1) == 1 && !fstat(fd, &cs) && cs.st_size >= n;
	close(fd);
	if (!hit)
		return 0;
	const char *c = env(BAM_ENV_AUTO_CPU);
	long long ms = c ? strtoll(c, NULL, 10) : 0;
	return cpu_enough(p, ms > 0 ? (int64_t)ms * 1000000 : 0);
}

/* ---- CPU time of this process, for the automatic rule --------------------- */

/*
 * Every process the preload is in (while the automatic rule is on) appends
 * the CPU time it used, user + system, as one int64 of nanoseconds to the
 * `.cpu` file of its own binary's version: at exit (the destructor) and
 * just before it execs something else (the image it leaves is the one that
 * used that time; an exec keeps the process's CPU clock running, hence the
 * baseline taken by the constructor). One O_APPEND write of 8 bytes per
 * record: concurrent processes (make -j) never mix their records, no lock.
 * A process ending with _exit or a signal records nothing: the rule then
 * errs towards fewer targets.
 *
 * cpu_file, cpu_base_ns and cpu_base_pid are set by the constructor and
 * only read afterwards (the exec wrappers run in vfork children, whose
 * memory is the parent's). A forked child (another pid) counts from 0: its
 * clock started at the fork. An exec that fails is taken back with a
 * negative record of the same size, since the process goes on and records
 * again at its exit.
 */
static char cpu_file[PATH_MAX];
static int64_t cpu_base_ns;
static pid_t cpu_base_pid;

static int64_t cpu_now_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts))
		return -1;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Append one record; returns what was recorded (0: nothing). */
static int64_t cpu_append(int64_t ns)
{
	if (!cpu_file[0] || !ns)
		return 0;
	int fd = open(cpu_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 0;
	int ok = write(fd, &ns, sizeof(ns)) == (ssize_t)sizeof(ns);
	close(fd);
	return ok ? ns : 0;
}

/* The CPU time this image of this process has used so far, recorded. */
static int64_t cpu_record(void)
{
	if (!cpu_file[0])
		return 0;
	int64_t now = cpu_now_ns();
	if (now < 0)
		return 0;
	if (getpid() == cpu_base_pid)
		now -= cpu_base_ns;
	return cpu_append(now > 0 ? now : 0);
}

/* An exec wrapper's record, before an exec of `path` that may work (the
 * file is there and executable: a shell trying each PATH directory would
 * otherwise record, and take back, once per directory). */
static int64_t cpu_exec_note(const char *path)
{
	if (!cpu_file[0] || !path || disabled() || access(path, X_OK))
		return 0;
	return cpu_record();
}

/* The exec failed: this process goes on, and will record that time again. */
static void cpu_exec_failed(int64_t noted)
{
	int e = errno;
	if (noted)
		cpu_append(-noted);
	errno = e;
}

/* Constructor: where this process's records go, from the file that runs
 * (an optimized copy's go to the original's version: it is the one the
 * rule counts), and the CPU time used before this image started. */
static void cpu_start(const char *orig)
{
	const char *a = env(BAM_ENV_AUTO), *root = env(BAM_ENV_ROOT);
	struct stat st;
	if (!a || strtol(a, NULL, 10) <= 0 || !root || stat(orig ? orig : "/proc/self/exe", &st))
		return;
	if (seen_path(cpu_file, sizeof(cpu_file) - 4, root, &st)) {
		cpu_file[0] = 0;
		return;
	}
	size_t k = strlen(cpu_file);
	cat(cpu_file, sizeof(cpu_file), &k, ".cpu");
	cpu_base_ns = cpu_now_ns();
	if (cpu_base_ns < 0)
		cpu_base_ns = 0;
	cpu_base_pid = getpid();
}

/* A file or directory of the cache we are about to trust: ours, and
 * writable by nobody else. */
static int trusted(const char *path, int dir)
{
	struct stat st;
	if (lstat(path, &st))
		return 0;
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return 0;
	return st.st_uid == geteuid() && !(st.st_mode & (S_IWGRP | S_IWOTH));
}

static int exists(const char *dir, const char *name)
{
	char p[PATH_MAX];
	size_t n = 0;
	if (cat(p, sizeof(p), &n, dir) || cat(p, sizeof(p), &n, "/") || cat(p, sizeof(p), &n, name))
		return 0;
	return access(p, F_OK) == 0;
}

/* Make the entry's directories and its meta file (written whole to a
 * temporary name, then renamed: a reader never sees half of it). */
static int entry_create(const struct plan *p, const struct stat *st, const struct elf_facts *f)
{
	char sp[PATH_MAX], tmp[PATH_MAX], fin[PATH_MAX], m[PATH_MAX + 256];
	size_t n = 0, t = 0, k = 0, mn = 0;
	if (mkdir(p->entry, 0700) && errno != EEXIST)
		return -1;
	if (!trusted(p->entry, 1))
		return -1;
	if (cat(sp, sizeof(sp), &n, p->entry) || cat(sp, sizeof(sp), &n, "/spool"))
		return -1;
	if (mkdir(sp, 0700) && errno != EEXIST)
		return -1;
	if (exists(p->entry, "meta"))
		return 0;
	if (cat(fin, sizeof(fin), &k, p->entry) || cat(fin, sizeof(fin), &k, "/meta") ||
	    cat(tmp, sizeof(tmp), &t, fin) || cat(tmp, sizeof(tmp), &t, ".") ||
	    cat_u64(tmp, sizeof(tmp), &t, (uint64_t)getpid(), 10))
		return -1;
	cat(m, sizeof(m), &mn, p->orig);
	cat(m, sizeof(m), &mn, "\n");
	cat_u64(m, sizeof(m), &mn, (uint64_t)st->st_size, 10);
	cat(m, sizeof(m), &mn, "\n");
	cat_u64(m, sizeof(m), &mn, (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec, 10);
	cat(m, sizeof(m), &mn, "\n");
	for (size_t i = 0; i < f->id_len; i++) {
		char h[3] = { "0123456789abcdef"[f->id[i] >> 4], "0123456789abcdef"[f->id[i] & 15], 0 };
		cat(m, sizeof(m), &mn, h);
	}
	cat(m, sizeof(m), &mn, "\n");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	int ok = write(fd, m, mn) == (ssize_t)mn;
	close(fd);
	if (!ok || rename(tmp, fin)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Claim one of the entry's profiled invocations: the claims file holds one
 * byte per claim; the flock makes count-and-append one step across the
 * processes of a make -j. Returns 1 if claimed. */
static int claim(const char *entry, const char *file, long max)
{
	char p[PATH_MAX];
	size_t n = 0;
	if (max <= 0 || cat(p, sizeof(p), &n, entry) || cat(p, sizeof(p), &n, file))
		return 0;
	int fd = open(p, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 0;
	int got = 0;
	struct stat st;
	if (!flock(fd, LOCK_EX)) {
		if (!fstat(fd, &st) && st.st_size < max)
			got = write(fd, "x", 1) == 1;
		flock(fd, LOCK_UN);
	}
	close(fd);
	return got;
}

/* Are the `max` claims of `file` all taken? (A look without the lock: a
 * run that finds room may still lose the claim itself.) */
static int claimed(const char *entry, const char *file, long max)
{
	char p[PATH_MAX];
	size_t n = 0;
	struct stat st;
	if (cat(p, sizeof(p), &n, entry) || cat(p, sizeof(p), &n, file))
		return 1;
	return !lstat(p, &st) && st.st_size >= max;
}

static long env_long(const char *name, long dflt)
{
	const char *r = env(name);
	return r ? strtol(r, NULL, 10) : dflt;
}

/* ---- Which invocations are instrumented ---------------------------------- */

/*
 * An instrumented run costs several times a normal one (BOLT's counters,
 * and its runtime writing them at exit: for gcc's cc1 5-6 times on the
 * mid-size files measured, ~1.3 s of it the writing, so more times on small
 * ones), once, in the build it lands in. Which run that
 * was used to be chance: the first one after the copy was made, in the
 * SQLite build of bench/bam_gcc.sh the compilation of alter.c (74 KB, 0.5 s
 * of CPU, in the top quarter of the build's files), which added 6-18 % to
 * that build. A run's cost is not known before it runs, but for batch
 * programs it follows the size of the files they are given: so every exec
 * of a target whose instrumented runs are pending records the total size
 * of the regular files its arguments name, but for outputs (the argument
 * after -o and the like: names_output), in `inputs`, and a run is
 * instrumented only if that size is at most the median of the runs
 * recorded before it (once there are BAM_PICK_MIN_RECORDS of them): a
 * typical run, not one of the biggest. A workload made only of runs above
 * the median so far is not starved: after BAM_PICK_DECLINES declined runs
 * (`ideclined`), any run is taken. The runs declined run the original.
 * Stack only, a stat() per argument that is not an option: this is done
 * only for the execs of a target in this phase.
 */
#define BAM_PICK_MIN_RECORDS 8
#define BAM_PICK_RECORDS_MAX 4096 /* records kept: 32 KB per entry */
#define BAM_PICK_DECLINES 32
#define BAM_PICK_ARGS_MAX 1024	  /* arguments looked at per exec */

/* Does option `a` name an output (or a name that is not an input) in
 * argument `next`? Compilers' spellings: an object left by the last build,
 * a dependency file, cc1's -dumpbase copy of the source name. cc1 gets
 * `-MD x.d` from the driver, whose own -MD takes no argument: only a
 * following name ending in .d is taken for its output. */
static int names_output(const char *a, const char *next)
{
	static const char *const opts[] = { "-o", "-MF", "-MT", "-MQ", "-dumpbase",
					    "-dumpdir", "-auxbase", "-auxbase-strip" };
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (!strcmp(a, opts[i]))
			return 1;
	size_t n = next ? strlen(next) : 0;
	return (!strcmp(a, "-MD") || !strcmp(a, "-MMD")) && n > 2 && !strcmp(next + n - 2, ".d");
}

static int64_t input_bytes(char *const argv[])
{
	int64_t sum = 0;
	if (!argv || !argv[0]) /* execve allows an empty argv */
		return 0;
	for (size_t i = 1; i < BAM_PICK_ARGS_MAX && argv[i]; i++) {
		struct stat st;
		if (names_output(argv[i], argv[i + 1])) {
			if (!argv[++i])
				break;
		} else if (argv[i][0] != '-' && argv[i][0] && !stat(argv[i], &st) &&
			   S_ISREG(st.st_mode)) {
			sum += (int64_t)st.st_size;
		}
	}
	return sum;
}

/* Note this run's input size in the entry's records (one O_APPEND write of
 * 8 bytes: concurrent execs never mix them; while there are fewer than
 * BAM_PICK_RECORDS_MAX) and, if `judge`, say whether it is typical enough
 * to be instrumented: at most the median of the records before it (at
 * least half of them as big), or too few records to say. One open for
 * both. */
static int input_note(const char *entry, int64_t bytes, int judge)
{
	char p[PATH_MAX];
	size_t n = 0;
	if (cat(p, sizeof(p), &n, entry) || cat(p, sizeof(p), &n, "/inputs"))
		return 1;
	int fd = open(p, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 1;
	int64_t rec[512];
	size_t total = 0, as_big = 0;
	for (off_t off = 0; judge && total < BAM_PICK_RECORDS_MAX;) {
		ssize_t r = pread(fd, rec, sizeof(rec), off);
		size_t k = r > 0 ? (size_t)r / sizeof(rec[0]) : 0;
		if (!k)
			break;
		for (size_t i = 0; i < k; i++)
			as_big += rec[i] >= bytes;
		total += k;
		off += (off_t)(k * sizeof(rec[0]));
	}
	struct stat st;
	if (!fstat(fd, &st) && st.st_size < (off_t)(BAM_PICK_RECORDS_MAX * sizeof(bytes)))
		(void)!write(fd, &bytes, sizeof(bytes));
	close(fd);
	return total < BAM_PICK_MIN_RECORDS || 2 * as_big >= total;
}

/* Decide what to run for the file at `path` (as the caller would exec it:
 * absolute, or relative to the cwd). Fills `p`; PLAN_PASS whenever
 * anything is missing or doubtful: BAM never makes an exec fail. */
static void decide(const char *path, char *const argv[], struct plan *p)
{
	p->kind = PLAN_PASS;
	p->entry[0] = p->orig[0] = 0;
	const char *root = env(BAM_ENV_ROOT);
	if (disabled() || !path)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	struct elf_facts f;
	char proc[64];
	size_t pn = 0;
	cat(proc, sizeof(proc), &pn, "/proc/self/fd/");
	cat_u64(proc, sizeof(proc), &pn, (uint64_t)fd, 10);
	ssize_t l = readlink(proc, p->orig, sizeof(p->orig) - 1);
	if (l <= 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		p->orig[0] = 0;
		return;
	}
	p->orig[l] = 0;
	/* set-id programs ignore LD_PRELOAD (no self-profile), and a copy in
	 * the cache would run without their privileges: never targets. */
	if (st.st_mode & (S_ISUID | S_ISGID)) {
		close(fd);
		return;
	}
	elf_read_facts(fd, &f);
	close(fd);
	if (!f.ok || (!explicit_target(path, p->orig) && !auto_target(root, &st)))
		return;

	/* The key: the build-id, and a hash of what else must match. */
	const char *conf = env(BAM_ENV_CONF);
	uint64_t h = 14695981039346656037ull, mt = (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
						       (uint64_t)st.st_mtim.tv_nsec;
	h = fnv(h, p->orig, strlen(p->orig) + 1);
	h = fnv(h, &st.st_size, sizeof(st.st_size));
	h = fnv(h, &mt, sizeof(mt));
	h = fnv(h, conf ? conf : "", conf ? strlen(conf) : 0);
	size_t n = 0;
	if (cat(p->entry, sizeof(p->entry), &n, root) || cat(p->entry, sizeof(p->entry), &n, "/e/"))
		return;
	for (size_t i = 0; i < f.id_len && i < 20; i++) {
		char x[3] = { "0123456789abcdef"[f.id[i] >> 4], "0123456789abcdef"[f.id[i] & 15], 0 };
		cat(p->entry, sizeof(p->entry), &n, x);
	}
	if (cat(p->entry, sizeof(p->entry), &n, "-") || cat_u64(p->entry, sizeof(p->entry), &n, h, 16))
		return;
	event("exec", p);

	if (exists(p->entry, "quarantine") || exists(p->entry, "failed"))
		return;
	n = 0;
	if (cat(p->optimized, sizeof(p->optimized), &n, p->entry) ||
	    cat(p->optimized, sizeof(p->optimized), &n, "/optimized"))
		return;
	int instr = 0;
	long ninstr = env_long(BAM_ENV_INSTRUMENT, 0);
	if (access(p->optimized, F_OK) && ninstr > 0 && !exists(p->entry, "instrument-failed")) {
		/* Instrumented runs give the profile: until BOLT has made the
		 * instrumented binary, and once its runs are claimed, the
		 * original runs as it is (nothing sampled). */
		char fd_dir[PATH_MAX];
		size_t k = 0;
		n = 0;
		if (cat(p->optimized, sizeof(p->optimized), &n, p->entry) ||
		    cat(p->optimized, sizeof(p->optimized), &n, "/instrumented") ||
		    cat(fd_dir, sizeof(fd_dir), &k, p->entry) || cat(fd_dir, sizeof(fd_dir), &k, "/fdata"))
			return;
		if (access(p->optimized, F_OK)) {
			if (!entry_create(p, &st, &f))
				input_note(p->entry, input_bytes(argv), 0);
			return;
		}
		/* Trusted before a run is claimed (an untrusted copy is refused
		 * below, and a claim would be lost); fdata/ must be there: the
		 * copy's runtime writes into it at exit, and exits with status
		 * 1 if it cannot. A run bigger than most is declined (above). */
		if (trusted(p->entry, 1) && trusted(p->optimized, 0)) {
			if (!trusted(fd_dir, 1) || claimed(p->entry, "/iclaims", ninstr))
				return;
			int typical = input_note(p->entry, input_bytes(argv), 1);
			if ((!typical && claim(p->entry, "/ideclined", BAM_PICK_DECLINES)) ||
			    !claim(p->entry, "/iclaims", ninstr))
				return;
		}
		instr = 1;
	}
	if (access(p->optimized, F_OK) == 0) {
		if (!trusted(p->entry, 1) || !trusted(p->optimized, 0)) {
			say("refusing cache entry ", p->entry,
			    ": it or its binary is not owned by you or is writable by others "
			    "(OCOLOS_BAM_EUNSAFE); running the original. Remove the entry.");
			event("unsafe", p);
			return;
		}
		n = 0;
		size_t k = 0;
		if (cat(p->var1, sizeof(p->var1), &n, BAM_ENV_RUN_ENTRY "=") ||
		    cat(p->var1, sizeof(p->var1), &n, p->entry) ||
		    cat(p->var2, sizeof(p->var2), &k, BAM_ENV_RUN_ORIG "=") ||
		    cat(p->var2, sizeof(p->var2), &k, p->orig))
			return;
		p->var3[0] = 0;
		n = 0;
		if (instr && (cat(p->var3, sizeof(p->var3), &n, BAM_ENV_RUN_FDATA "=") ||
			      cat(p->var3, sizeof(p->var3), &n, p->entry) ||
			      cat(p->var3, sizeof(p->var3), &n, "/fdata")))
			return;
		p->kind = instr ? PLAN_INSTRUMENTED : PLAN_OPTIMIZED;
		return;
	}
	if (entry_create(p, &st, &f) || !claim(p->entry, "/claims", env_long(BAM_ENV_RUNS, 10)))
		return;
	n = 0;
	if (cat(p->var1, sizeof(p->var1), &n, BAM_ENV_PROFILE "=") ||
	    cat(p->var1, sizeof(p->var1), &n, p->entry) || cat(p->var1, sizeof(p->var1), &n, "/spool"))
		return;
	p->var2[0] = p->var3[0] = 0;
	p->kind = PLAN_PROFILE;
	event("prof", p);
}

/* Count the entries of a NULL-ended vector. */
static size_t vlen(char *const v[])
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* Build into `out` (room for vlen(envp) + 4) the child's environment: the
 * caller's, with the plan's variables added and stale ones of ours (a
 * profile or run marker inherited by accident) left out. */
static char **plan_env(const struct plan *p, char *const envp[], char **out)
{
	size_t k = 0;
	for (size_t i = 0; envp && envp[i]; i++)
		if (strncmp(envp[i], BAM_ENV_PROFILE "=", sizeof(BAM_ENV_PROFILE)) &&
		    strncmp(envp[i], BAM_ENV_RUN_ENTRY "=", sizeof(BAM_ENV_RUN_ENTRY)) &&
		    strncmp(envp[i], BAM_ENV_RUN_ORIG "=", sizeof(BAM_ENV_RUN_ORIG)) &&
		    strncmp(envp[i], BAM_ENV_RUN_FDATA "=", sizeof(BAM_ENV_RUN_FDATA)))
			out[k++] = envp[i];
	if (p->kind != PLAN_PASS) {
		out[k++] = (char *)p->var1;
		if (p->var2[0])
			out[k++] = (char *)p->var2;
		if (p->var3[0])
			out[k++] = (char *)p->var3;
	}
	out[k] = NULL;
	return out;
}

/* `file` is "/quarantine" (the optimized binary failed: the original from
 * now on) or "/instrument-failed" (the instrumented one did: sampled
 * profiles from now on, as without --instrument). */
static void mark_failed(const char *entry, const char *file, const char *why)
{
	char q[PATH_MAX];
	size_t n = 0;
	if (cat(q, sizeof(q), &n, entry) || cat(q, sizeof(q), &n, file))
		return;
	int fd = open(q, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0) {
		ssize_t w = write(fd, why, strlen(why));
		(void)w;
		close(fd);
	}
}

/* execve of `path`, a target (decide() made `p`): profiled, or its
 * optimized copy, falling back to the original if that cannot be executed
 * (then quarantined: never again). Returns only on failure, as execve does;
 * stack and system calls only (it runs in vfork children). */
static int exec_target(const char *path, struct plan *pp, char *const argv[], char *const envp[])
{
	struct plan p = *pp;
	char *ne[vlen(envp) + 4];
	plan_env(&p, envp, ne);
	if (p.kind == PLAN_PROFILE)
		return real_execve(path, argv, ne);
	int in = p.kind == PLAN_INSTRUMENTED;
	event(in ? "instr" : "opt", &p);
	real_execve(p.optimized, argv, ne);
	mark_failed(p.entry, in ? "/instrument-failed" : "/quarantine", "exec failed\n");
	event(in ? "ifallback" : "fallback", &p);
	say(in ? "instrumented binary " : "optimized binary ", p.optimized,
	    " could not be executed; marked so, running the original");
	p.kind = PLAN_PASS;
	plan_env(&p, envp, ne);
	return real_execve(path, argv, ne);
}

/* execve through the plan. Returns only on failure, as execve does. */
static int exec_planned(const char *path, char *const argv[], char *const envp[])
{
	RESOLVED();
	int64_t noted = cpu_exec_note(path);
	struct plan p;
	decide(path, argv, &p);
	int rc = p.kind == PLAN_PASS ? real_execve(path, argv, envp) : exec_target(path, &p, argv, envp);
	cpu_exec_failed(noted);
	return rc;
}

/* PATH search as execvp does it, for the decision only: the first regular
 * executable file. 0 and the path in `out`, or -1 (then the real execvp
 * runs unchanged and reports what it reports). */
static int search_path(const char *file, char *out, size_t cap)
{
	if (strchr(file, '/')) {
		size_t n = 0;
		return cat(out, cap, &n, file);
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/bin:/usr/bin";
	for (const char *s = path;;) {
		const char *e = strchr(s, ':');
		size_t l = e ? (size_t)(e - s) : strlen(s), n = 0;
		if (l + strlen(file) + 2 < cap) {
			if (l) {
				memcpy(out, s, l);
				n = l;
				cat(out, cap, &n, "/");
			} else {
				cat(out, cap, &n, "./");
			}
			cat(out, cap, &n, file);
			struct stat st;
			if (!stat(out, &st) && S_ISREG(st.st_mode) && !access(out, X_OK))
				return 0;
		}
		if (!e)
			return -1;
		s = e + 1;
	}
}

/* ---- the wrapped calls ------------------------------------------------------- */

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_planned(path, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return exec_planned(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	RESOLVED();
	char path[PATH_MAX];
	if (!*file || disabled() || search_path(file, path, sizeof(path)))
		return real_execvpe(file, argv, envp);
	int64_t noted = cpu_exec_note(path);
	struct plan p;
	decide(path, argv, &p);
	int rc;
	if (p.kind == PLAN_PASS)
		rc = real_execvpe(file, argv, envp);
	else
		/* A target: an ELF file (decide() read its header), so execve
		 * of the path found is what execvpe would do. */
		rc = exec_target(path, &p, argv, envp);
	cpu_exec_failed(noted);
	return rc;
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

/* The execl family: glibc's own execl* call execve inside libc, past any
 * preload, so they are wrapped here too (argv built on the stack). */
#define MAX_LARGS 4096
static int collect(const char *arg0, va_list ap, char **argv)
{
	int n = 0;
	argv[n++] = (char *)arg0;
	while (arg0 && n < MAX_LARGS - 1 && (argv[n] = va_arg(ap, char *)))
		n++;
	argv[n] = NULL;
	return n;
}

EXPORT int execl(const char *path, const char *arg, ...)
{
	char *argv[MAX_LARGS];
	va_list ap;
	va_start(ap, arg);
	collect(arg, ap, argv);
	va_end(ap);
	return exec_planned(path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	char *argv[MAX_LARGS];
	va_list ap;
	va_start(ap, arg);
	collect(arg, ap, argv);
	va_end(ap);
	return execvpe(file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	char *argv[MAX_LARGS];
	va_list ap;
	va_start(ap, arg);
	collect(arg, ap, argv);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return exec_planned(path, argv, envp);
}

static int spawn_planned(spawn_fn real, pid_t *pid, const char *file, const char *path,
			 const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *at,
			 char *const argv[], char *const envp[])
{
	struct plan p;
	/* A relative path with file actions (one may change the directory
	 * before the child resolves it) could name another file than the one
	 * decide() would look at here: run it as asked. */
	if (fa && (!path || path[0] != '/'))
		return real(pid, file, fa, at, argv, envp);
	decide(path, argv, &p);
	if (p.kind == PLAN_PASS)
		return real(pid, file, fa, at, argv, envp);
	char *ne[vlen(envp) + 4];
	plan_env(&p, envp, ne);
	if (p.kind == PLAN_PROFILE)
		return real_posix_spawn(pid, path, fa, at, argv, ne);
	int in = p.kind == PLAN_INSTRUMENTED;
	event(in ? "instr" : "opt", &p);
	int rc = real_posix_spawn(pid, p.optimized, fa, at, argv, ne);
	if (rc == 0)
		return 0;
	mark_failed(p.entry, in ? "/instrument-failed" : "/quarantine", "spawn failed\n");
	event(in ? "ifallback" : "fallback", &p);
	say(in ? "instrumented binary " : "optimized binary ", p.optimized,
	    " could not be executed; marked so, running the original");
	p.kind = PLAN_PASS;
	plan_env(&p, envp, ne);
	return real_posix_spawn(pid, path, fa, at, argv, ne);
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	RESOLVED();
	return spawn_planned(real_posix_spawn, pid, path, path, fa, at, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	RESOLVED();
	char path[PATH_MAX];
	if (!*file || disabled() || search_path(file, path, sizeof(path)))
		return real_posix_spawnp(pid, file, fa, at, argv, envp);
	return spawn_planned(real_posix_spawnp, pid, file, path, fa, at, argv, envp);
}

/* ---- a profiled process: sampling itself ------------------------------------ */

/*
 * Handler protocol: the buffer is mapped before the timer is armed and
 * never unmapped; a slot is claimed with one atomic add (async-signal-safe,
 * no lock); a claim past the end is a dropped sample. The destructor
 * deletes the timer before it reads the buffer: a signal already queued
 * then finds `armed` cleared and records nothing.
 */
#define SAMPLE_SIG (SIGRTMIN + 5) /* libocolos uses +6 and +7 */

static uint64_t *pcs;
static _Atomic size_t npcs;
static atomic_int armed;
static timer_t timer;
static pid_t profiled_pid;
static char spool[PATH_MAX];
static uint64_t bias, text_lo, text_hi; /* main executable: link-time text span */

static void on_sample(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	if (!atomic_load(&armed))
		return;
	ucontext_t *uc = ucv;
#if defined(__x86_64__)
	uint64_t pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	uint64_t pc = (uint64_t)uc->uc_mcontext.pc;
#else
	uint64_t pc = 0;
#endif
	size_t i = atomic_fetch_add(&npcs, 1);
	if (i < BAM_SPOOL_MAX_PCS)
		pcs[i] = pc;
}

/* dl_iterate_phdr visits the main program first: its load bias and the
 * link-time span of its executable segments. */
static int find_main(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	bias = info->dlpi_addr;
	text_lo = UINT64_MAX;
	text_hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			if (ph->p_vaddr < text_lo)
				text_lo = ph->p_vaddr;
			if (ph->p_vaddr + ph->p_memsz > text_hi)
				text_hi = ph->p_vaddr + ph->p_memsz;
		}
	}
	return 1;
}

static void profile_start(const char *dir)
{
	size_t n = 0;
	if (cat(spool, sizeof(spool), &n, dir))
		return;
	dl_iterate_phdr(find_main, NULL);
	if (text_hi <= text_lo)
		return;
	pcs = mmap(NULL, BAM_SPOOL_MAX_PCS * sizeof(*pcs), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pcs == MAP_FAILED) {
		pcs = NULL;
		return;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sample;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SAMPLE_SIG, &sa, NULL))
		return;
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SAMPLE_SIG;
	if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &timer))
		return;
	const char *hz = env(BAM_ENV_HZ);
	long r = hz ? strtol(hz, NULL, 10) : 1000;
	if (r < 1 || r > 100000)
		r = 1000;
	struct itimerspec its = { .it_interval = { 0, 1000000000L / r }, .it_value = { 0, 1000000000L / r } };
	profiled_pid = getpid();
	atomic_store(&armed, 1);
	if (timer_settime(timer, 0, &its, NULL)) {
		atomic_store(&armed, 0);
		timer_delete(timer);
	}
}

/* At exit of the profiled process (not of a forked child: POSIX timers are
 * not inherited, and the buffer's copy would be written twice): keep the
 * PCs in the main executable, as link-time addresses, and rename them into
 * the spool whole. */
static void profile_stop(void)
{
	if (!atomic_load(&armed) || getpid() != profiled_pid)
		return;
	atomic_store(&armed, 0);
	timer_delete(timer);
	size_t n = atomic_load(&npcs);
	if (n > BAM_SPOOL_MAX_PCS)
		n = BAM_SPOOL_MAX_PCS;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t a = pcs[i] - bias;
		if (a >= text_lo && a < text_hi)
			pcs[k++] = a;
	}
	if (!k)
		return;
	char tmp[PATH_MAX], fin[PATH_MAX];
	size_t t = 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (cat(tmp, sizeof(tmp), &t, spool) || cat(tmp, sizeof(tmp), &t, "/") ||
	    cat_u64(tmp, sizeof(tmp), &t, (uint64_t)getpid(), 10) || cat(tmp, sizeof(tmp), &t, ".") ||
	    cat_u64(tmp, sizeof(tmp), &t, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, 10))
		return;
	memcpy(fin, tmp, t + 1);
	size_t f = t;
	if (cat(fin, sizeof(fin), &f, ".s") || cat(tmp, sizeof(tmp), &t, ".tmp"))
		return;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	size_t bytes = k * sizeof(*pcs), done = 0;
	while (done < bytes) {
		ssize_t w = write(fd, (char *)pcs + done, bytes - done);
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	close(fd);
	if (done != bytes || rename(tmp, fin))
		unlink(tmp);
}

/* ---- an optimized process: the way back to the original --------------------- */

static char run_entry[PATH_MAX], run_orig[PATH_MAX];
static char **run_argv;
static char run_fdata[PATH_MAX]; /* an instrumented process: where its counts go */
static char replay_path[PATH_MAX]; /* the worker's replay: the counters to load */
static pid_t run_pid;

/* A synchronous fault in the optimized binary: the entry is quarantined
 * (later execs run the original) and this process becomes the original,
 * same pid, argv and environment, so its parent sees an ordinary run.
 * Output written before the fault is written again by the original (a
 * compiler truncates its output file; a stream on stdout would repeat).
 * Only system calls here: async-signal-safe. A program that installs its
 * own handler for these signals (GCC's cc1 does, for its ICE report)
 * replaces this one; then its fault is reported the program's way, and
 * the quarantine happens only on an exec failure. */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	int in = run_fdata[0] != 0;
	mark_failed(run_entry, in ? "/instrument-failed" : "/quarantine", "fault\n");
	event_raw(in ? "ifallback" : "fallback", run_entry, run_orig);
	say(in ? "instrumented binary crashed; marked " : "optimized binary crashed; quarantined ",
	    run_entry, "; running the original");
	sigset_t all;
	sigemptyset(&all);
	sigaddset(&all, sig);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	syscall(SYS_execve, run_orig, run_argv, environ);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	real_sigaction(sig, &dfl, NULL);
	raise(sig);
}

/* In an optimized process the fault handler must stay: a program that
 * installs its own for these signals (GCC's cc1 does, to print "internal
 * compiler error: Segmentation fault" and exit 4) would otherwise turn a
 * fault of BOLT's code into a failed build. So, in that process only,
 * sigaction() and signal() for them are recorded and reported as done, and
 * ours stays installed. The original, re-executed after a fault, runs with
 * the program's own handlers. The price: a program that faults on purpose
 * (a JVM, a garbage collector's write barrier) is re-executed from the
 * start on its first fault; do not make such programs targets. */
static int run_mode;
static struct sigaction prog_act[4]; /* what the program asked for, per fault_index() */

static int fault_index(int sig)
{
	switch (sig) {
	case SIGSEGV: return 0;
	case SIGBUS: return 1;
	case SIGILL: return 2;
	case SIGFPE: return 3;
	default: return -1;
	}
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	/* Another object's constructor may come before ours. */
	if (!real_sigaction)
		real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
	int i = fault_index(sig);
	if (!run_mode || i < 0 || !real_sigaction)
		return real_sigaction ? real_sigaction(sig, act, old) : (errno = ENOSYS, -1);
	if (old)
		*old = prog_act[i];
	if (act)
		prog_act[i] = *act;
	return 0;
}

EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	int i = fault_index(sig);
	if (!run_mode || i < 0) {
		/* glibc's own signal() (it calls sigaction inside libc, past us). */
		static sighandler_t (*real_signal)(int, sighandler_t);
		if (!real_signal)
			real_signal = (sighandler_t(*)(int, sighandler_t))dlsym(RTLD_NEXT, "signal");
		return real_signal ? real_signal(sig, h) : SIG_ERR;
	}
	sighandler_t prev = prog_act[i].sa_handler;
	prog_act[i].sa_handler = h;
	prog_act[i].sa_flags = SA_RESTART;
	return prev;
}

static void run_start(const char *entry, const char *orig, char **argv)
{
	size_t a = 0, b = 0;
	if (cat(run_entry, sizeof(run_entry), &a, entry) || cat(run_orig, sizeof(run_orig), &b, orig))
		return;
	run_argv = argv;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		real_sigaction(sigs[i], &sa, NULL);
	for (size_t i = 0; i < 4; i++)
		prog_act[i].sa_handler = SIG_DFL;
	run_mode = 1;
}

/* ---- load and unload ---------------------------------------------------------- */

/* Marks of an instrumented process in its entry's fdata/: <pid>.run when
 * it starts, <pid>.done when it ends. */
static void instr_mark(const char *suffix)
{
	char p[PATH_MAX];
	size_t n = 0;
	if (cat(p, sizeof(p), &n, run_fdata) || cat(p, sizeof(p), &n, "/") ||
	    cat_u64(p, sizeof(p), &n, (uint64_t)getpid(), 10) || cat(p, sizeof(p), &n, suffix))
		return;
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0)
		close(fd);
}

/* An instrumented process: BOLT's runtime wrote its counts (prof.<pid>.fdata)
 * from the main program's DT_FINI, which glibc's _dl_fini runs before the
 * destructors of a preloaded object (the main program is finalized first).
 * Saying so lets the launcher take them while the build still runs. A fork
 * child's counts include its parent's (a copy of the counters), and only
 * the process that was exec'd counts: a child removes its file instead. */
static void instr_done(void)
{
	if (!run_fdata[0])
		return;
	if (getpid() == run_pid) {
		instr_mark(".done");
		return;
	}
	char p[PATH_MAX];
	size_t n = 0;
	if (!cat(p, sizeof(p), &n, run_fdata) && !cat(p, sizeof(p), &n, "/prof.") &&
	    !cat_u64(p, sizeof(p), &n, (uint64_t)getpid(), 10) && !cat(p, sizeof(p), &n, ".fdata"))
		unlink(p);
}

/* An instrumented process at exit. BOLT's runtime writes the counts from
 * the executable's DT_FINI, which ld.so's _dl_fini runs — the `rtld_fini`
 * that __libc_start_main registers with atexit before main — and ends the
 * process with status 1 if it cannot open its file in fdata/ (the cache
 * removed or moved under the build: a good run, a compilation, would then
 * fail). The copy's own file, which the runtime reads too, is opened
 * through /proc/self/exe (--instrumentation-binpath), so that one cannot
 * be missing. So an instrumented process gets rtld_fini wrapped: with
 * fdata/ gone, the counts are given up by not running _dl_fini (the
 * finalizers of every loaded object: DT_FINI, fini arrays; exit() still
 * runs the other atexit handlers and C++ destructors, flushes stdio and
 * ends with the program's status). Every other process passes straight
 * through. (ENOSPC or EMFILE at the runtime's open is not covered.) */
#if defined(__x86_64__) || defined(__aarch64__) /* the generic signature below */
typedef int (*main_fn)(int, char **, char **);
typedef int (*start_main_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void),
			     void *);
static void (*program_rtld_fini)(void);

static void guarded_fini(void)
{
	if (faccessat(AT_FDCWD, run_fdata, W_OK | X_OK, AT_EACCESS)) {
		cpu_record(); /* bam_fini's work that matters here */
		return;
	}
	if (getpid() == run_pid)
		handover_counts(run_entry, run_fdata);
	program_rtld_fini();
}

EXPORT int __libc_start_main(main_fn prog_main, int argc, char **argv, void (*init)(void),
			     void (*fini)(void), void (*rtld_fini)(void), void *stack_end);
EXPORT int __libc_start_main(main_fn prog_main, int argc, char **argv, void (*init)(void),
			     void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
	start_main_fn real = (start_main_fn)dlsym(RTLD_NEXT, "__libc_start_main");
	if (!real) {
		say("cannot find libc's __libc_start_main (is libc before libocolos-bam.so in "
		    "LD_PRELOAD?)", "", "");
		abort();
	}
	if (replay_path[0])
		handover_replay(replay_path); /* ends the process, but in another binary */
	if (run_mode && run_fdata[0] && rtld_fini) {
		program_rtld_fini = rtld_fini;
		rtld_fini = guarded_fini;
	}
	return real(prog_main, argc, argv, init, fini, rtld_fini, stack_end);
}
#endif

/* glibc calls constructors of a preloaded object with (argc, argv, envp),
 * before the program's main and before any thread of it exists. */
__attribute__((constructor)) static void bam_init(int argc, char **argv, char **envp)
{
	(void)argc;
	(void)envp;
	resolve();
	/* The markers are for this process only: its children decide anew. */
	char *prof = getenv(BAM_ENV_PROFILE);
	char *re = getenv(BAM_ENV_RUN_ENTRY), *ro = getenv(BAM_ENV_RUN_ORIG);
	char *fd = getenv(BAM_ENV_RUN_FDATA);
	char pbuf[PATH_MAX], ebuf[PATH_MAX], obuf[PATH_MAX];
	size_t a = 0, b = 0, c = 0, d = 0;
	int have_p = prof && !cat(pbuf, sizeof(pbuf), &a, prof);
	int have_r = re && ro && !cat(ebuf, sizeof(ebuf), &b, re) && !cat(obuf, sizeof(obuf), &c, ro);
	if (have_r && fd && cat(run_fdata, sizeof(run_fdata), &d, fd))
		run_fdata[0] = 0;
	run_pid = getpid();
	char *rp = getenv(BAM_ENV_REPLAY);
	size_t e = 0;
	if (rp && cat(replay_path, sizeof(replay_path), &e, rp))
		replay_path[0] = 0;
	unsetenv(BAM_ENV_REPLAY);
	unsetenv(BAM_ENV_PROFILE);
	unsetenv(BAM_ENV_RUN_ENTRY);
	unsetenv(BAM_ENV_RUN_ORIG);
	unsetenv(BAM_ENV_RUN_FDATA);
	if (disabled())
		return;
	cpu_start(have_r ? obuf : NULL);
	if (have_p)
		profile_start(pbuf);
	if (have_r)
		run_start(ebuf, obuf, argv);
	if (have_r && run_fdata[0])
		instr_mark(".run"); /* the launcher: this run may still write counts */
}

__attribute__((destructor)) static void bam_fini(void)
{
	instr_done();
	profile_stop();
	cpu_record();
}

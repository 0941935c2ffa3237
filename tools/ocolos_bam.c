/*
 * ocolos-bam: Batch Accelerator Mode launcher.
 *
 *   ocolos-bam [options] -- CMD [ARGS...]
 *
 * Responsible for: the cache's root and its trust check, the configuration
 * handed to the preload library (tools/bam/preload.c) through the
 * environment, running CMD with the preload, watching the cache while CMD
 * runs and starting one background BOLT worker when an entry has enough
 * profile, the worker itself (a forked child of this process: spool ->
 * profile through lib/infer -> llvm-bolt through lib/layout -> the entry's
 * `optimized`), bounding and invalidating the cache, and the one-line JSON
 * summary on stderr at exit.
 * Not responsible for: the exec decision and the sampling (the preload).
 *
 * The build never waits for BOLT: the worker runs at nice 19 in its own
 * session, and CMD's exit status is ocolos-bam's as soon as CMD exits
 * (unless --wait, for tests and benchmarks, asks to wait for the worker).
 * The layout of the cache is in tools/bam/bam.h; the trust model in
 * docs/bam.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gelf.h>
#include <getopt.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bam/bam.h"
#include "bam/counts.h"
#include "bam/cpu.h"
#include "bam/memory.h"
#include "core/err.h"
#include "core/util.h"
#include "elf/binary.h"
#include "infer/profile.h"
#include "layout/layout.h"
#include "sample/sample.h"

#define ERR_UNSAFE "OCOLOS_BAM_EUNSAFE"

struct opts {
	const char *targets;	  /* ':'-joined --target values, or NULL */
	long auto_n;		  /* --auto: execs before a file is a target (0 off) */
	int auto_set;
	long auto_cpu_ms;	  /* --auto-cpu-ms: ... and CPU time they used (0 off) */
	long runs;		  /* --profile-runs */
	long min_samples;	  /* --profile-samples */
	long hz;		  /* --hz */
	long instrument;	  /* --instrument: instrumented invocations (0 off) */
	int instrument_auto;	  /* ... not given (or "auto"): only where memory allows */
	const char *cache;	  /* --cache */
	long cache_max_mb;	  /* --cache-max */
	const char *bolt;	  /* --bolt */
	long bolt_timeout_s;	  /* --bolt-timeout */
	long idle_wait_s;	  /* --idle-wait */
	int wait;		  /* --wait */
	int allow_stripped;	  /* --allow-stripped */
	const char *preload;	  /* --preload */
};

static char root[PATH_MAX];
static char instrument_on[2]; /* "1" when --instrument N > 0: the summary says why not */
static char bolt_path[PATH_MAX];
static char preload_path[PATH_MAX]; /* libocolos-bam.so, for the replays */
static pid_t worker = -1;	  /* the BOLT worker we started, or -1 */
static char worker_entry[PATH_MAX + 300]; /* ... and its entry */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ocolos-bam [options] -- CMD [ARGS...]\n"
		"  --target PATH|NAME   a binary to accelerate (repeatable); turns --auto off unless given\n"
		"  --auto N             also any dynamic ELF exec'd N times or more (default 3; 0: off)\n"
		"  --auto-cpu-ms MS     ... whose processes used MS ms of CPU time between them\n"
		"                       (default 2000; 0: the count alone)\n"
		"  --profile-runs N     invocations profiled per binary version at most (default 10)\n"
		"  --profile-samples N  samples before BOLT runs (default 2000; at the end of CMD any\n"
		"                       profile counts once --profile-runs invocations were profiled)\n"
		"  --hz N               sampling rate of a profiled process, per CPU second (default 1000)\n"
		"  --instrument N|auto  profile with N runs of a BOLT-instrumented copy (exact counts)\n"
		"                       instead of sampling; binaries with relocations only, others\n"
		"                       are sampled. 0: always sample. Default auto: 1 run where\n"
		"                       the memory BOLT --instrument needs (~100x the binary) is\n"
		"                       available, sampling otherwise\n"
		"  --cache DIR          cache directory (default $XDG_CACHE_HOME/ocolos-bam)\n"
		"  --cache-max MB       cache size bound (default 4096)\n"
		"  --bolt PATH          llvm-bolt to use (default: libocolos's BOLT discovery)\n"
		"  --bolt-timeout S     BOLT's CPU-time limit, per run (default 1800)\n"
		"  --idle-wait S        background work (BOLT, the instrumented copy) waits for an\n"
		"                       idle CPU while CMD runs, S seconds at most (default 60;\n"
		"                       0: start at once); it always starts when CMD ends\n"
		"  --wait               wait for the background BOLT before exiting\n"
		"  --allow-stripped     let BOLT try binaries without .symtab (off: BOLT 22 broke\n"
		"                       Debian's stripped cc1 here; a fault falls back to the original)\n"
		"  --preload PATH       libocolos-bam.so (default: beside this program)\n"
		"OCOLOS_BAM=off runs CMD untouched. At exit one JSON line on stderr.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static char targets[8192];
	static const struct option lo[] = {
		{ "target", required_argument, 0, 't' }, { "auto", required_argument, 0, 'a' },
		{ "auto-cpu-ms", required_argument, 0, 'C' },
		{ "profile-runs", required_argument, 0, 'r' },
		{ "profile-samples", required_argument, 0, 's' }, { "hz", required_argument, 0, 'z' },
		{ "instrument", required_argument, 0, 'I' },
		{ "cache", required_argument, 0, 'c' }, { "cache-max", required_argument, 0, 'm' },
		{ "bolt", required_argument, 0, 'b' }, { "bolt-timeout", required_argument, 0, 'T' },
		{ "idle-wait", required_argument, 0, 'W' },
		{ "wait", no_argument, 0, 'w' }, { "allow-stripped", no_argument, 0, 'S' }, { "preload", required_argument, 0, 'p' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	/* --auto-cpu-ms 2000: one BOLT run costs tens of CPU seconds (minutes
	 * on a compiler), and a better layout saves some 10-20% of a binary's
	 * CPU time; a binary that has used under 2 s in all its runs so far
	 * would take a long time to pay that back. A compiler reaches 2 s
	 * within its first few files, and at ~250 samples per CPU second its
	 * profiled runs then have a profile worth the name.
	 *
	 * --instrument auto (1 run) by default: where it can run, instrumented
	 * runs gave the better binary every time they were measured (cc1, one
	 * run: 1.07-1.11x; a Lua interpreter, one or two: 1.07x; sampled profiles
	 * 0.92-0.99x and 1.00x: docs/benchmarks.md), but BOLT's instrumentation
	 * of a big binary takes gigabytes (cc1: 5.9 GB), which a default must
	 * not take from a build that needs it: instrument_gate checks first.
	 *
	 * --idle-wait 60: the background work starts at once where a CPU is
	 * idle. Where the build keeps every CPU busy, BOLT at nice 19 beside
	 * it still cost the build's CPU time +2 to +14 % (cc1, make -j2 on 2
	 * CPUs: docs/benchmarks.md), and the optimized binary it makes helps
	 * only the compilations after it. A build that is over within a
	 * minute has little left to gain from it; a longer one waits a minute
	 * out of its length, then has BOLT beside it as before. */
	*o = (struct opts){ .auto_n = 3, .auto_cpu_ms = 2000, .runs = 10, .min_samples = 2000, .hz = 1000,
			    .instrument = 1, .instrument_auto = 1, .cache_max_mb = 4096,
			    .bolt_timeout_s = 1800, .idle_wait_s = 60 };
	int c;
	while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			if (strchr(optarg, ':') || strlen(targets) + strlen(optarg) + 2 > sizeof(targets)) {
				fprintf(stderr, "ocolos-bam: --target '%s': no ':' in a target, and at most "
					"8 KiB of them\n", optarg);
				return -1;
			}
			if (*targets)
				strcat(targets, ":");
			strcat(targets, optarg);
			o->targets = targets;
			break;
		case 'a': o->auto_n = atol(optarg); o->auto_set = 1; break;
		case 'C': o->auto_cpu_ms = atol(optarg); break;
		case 'r': o->runs = atol(optarg); break;
		case 's': o->min_samples = atol(optarg); break;
		case 'z': o->hz = atol(optarg); break;
		case 'I': {
			char *end;
			errno = 0;
			o->instrument_auto = !strcmp(optarg, "auto");
			o->instrument = o->instrument_auto ? 1 : strtol(optarg, &end, 10);
			if (!o->instrument_auto &&
			    (end == optarg || *end || o->instrument < 0 || errno)) {
				fprintf(stderr, "ocolos-bam: --instrument '%s': a number of runs (0: "
					"sample) or auto\n", optarg);
				return -1;
			}
			break;
		}
		case 'c': o->cache = optarg; break;
		case 'm': o->cache_max_mb = atol(optarg); break;
		case 'b': o->bolt = optarg; break;
		case 'T': {
			char *end;
			errno = 0;
			o->bolt_timeout_s = strtol(optarg, &end, 10);
			if (end == optarg || *end || o->bolt_timeout_s <= 0 ||
			    o->bolt_timeout_s > 86400 * 30 || errno) {
				fprintf(stderr, "ocolos-bam: --bolt-timeout '%s': seconds of CPU time "
					"each BOLT run may use, 1 to 2592000\n", optarg);
				return -1;
			}
			break;
		}
		case 'W': {
			char *end;
			errno = 0;
			o->idle_wait_s = strtol(optarg, &end, 10);
			if (end == optarg || *end || o->idle_wait_s < 0 || o->idle_wait_s > 86400 ||
			    errno) {
				fprintf(stderr, "ocolos-bam: --idle-wait '%s': seconds, 0 to 86400\n",
					optarg);
				return -1;
			}
			break;
		}
		case 'w': o->wait = 1; break;
		case 'S': o->allow_stripped = 1; break;
		case 'p': o->preload = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (o->targets && !o->auto_set)
		o->auto_n = 0;
	if (optind >= argc) {
		usage(stderr);
		return -1;
	}
	return optind;
}

/* ---- the cache root ------------------------------------------------------------ */

/* mkdir -p with mode 0700 for the directories we create. */
static int mkdirs(const char *path)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0700) && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(p, 0700) && errno != EEXIST ? -1 : 0;
}

/* The trust rule (docs/bam.md): a directory of the cache is a real
 * directory (not a symlink), owned by the effective user, writable by
 * nobody else. Returns NULL or why not. */
static const char *untrusted_dir(const char *path)
{
	struct stat st;
	if (lstat(path, &st))
		return "cannot be read";
	if (!S_ISDIR(st.st_mode))
		return "is not a directory";
	if (st.st_uid != geteuid())
		return "is owned by another user";
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return "is writable by other users";
	return NULL;
}

static int setup_root(const struct opts *o)
{
	if (o->cache) {
		snprintf(root, sizeof(root), "%s", o->cache);
	} else {
		const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
		if (x && *x == '/')
			snprintf(root, sizeof(root), "%s/ocolos-bam", x);
		else if (h && *h)
			snprintf(root, sizeof(root), "%s/.cache/ocolos-bam", h);
		else
			return fprintf(stderr, "ocolos-bam: neither XDG_CACHE_HOME nor HOME is set: "
				       "give --cache DIR\n"), -1;
	}
	if (mkdirs(root))
		return fprintf(stderr, "ocolos-bam: cannot create cache directory %s: %s\n", root,
			       strerror(errno)), -1;
	/* Absolute: the processes of the build change directory, and an
	 * instrumented copy has the path of its entry's fdata/ built in. */
	char abs[PATH_MAX];
	if (!realpath(root, abs))
		return fprintf(stderr, "ocolos-bam: cache directory %s: %s\n", root, strerror(errno)), -1;
	snprintf(root, sizeof(root), "%s", abs);
	static const char *const subs[] = { "", "/e", "/s", "/seen", "/probe" };
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char p[PATH_MAX + 16];
		snprintf(p, sizeof(p), "%s%s", root, subs[i]);
		if (*subs[i] && mkdir(p, 0700) && errno != EEXIST)
			return fprintf(stderr, "ocolos-bam: cannot create %s: %s\n", p, strerror(errno)), -1;
		const char *why = untrusted_dir(p);
		if (why) {
			fprintf(stderr, "ocolos-bam: cache directory %s %s (" ERR_UNSAFE "): a binary "
				"there would run as you; running the command unaccelerated. Fix: "
				"chmod 700 it (and check its owner), or use --cache\n", p, why);
			return -2;
		}
	}
	return 0;
}

/* ---- configuration hash: BOLT version and options ------------------------------- */

static const char *const bolt_common[] = { "--reorder-blocks=ext-tsp", "--split-functions",
	"--split-all-cold", "--icf=1", "--use-gnu-stack", "--lite", "--dyno-stats=0", NULL };
static const char *const bolt_relocs[] = { "--reorder-functions=cdsort", NULL };
static const char *const bolt_norelocs[] = { "--relocs=0", NULL };
/* A binary without .symtab (Debian's cc1): BOLT refuses it unless told;
 * it then finds functions from .eh_frame and the dynamic symbols. Seen
 * here: BOLT 22 on Debian's stripped cc1 (gcc 12.2), even with no
 * reordering at all (--reorder-blocks=none --relocs=0), writes a cc1 that
 * faults at once on every input. So stripped binaries are refused (entry
 * `failed`, reason in it) unless --allow-stripped asks to try, and then
 * the fault fallback is what keeps the build right. */
static const char *const bolt_stripped[] = { "--allow-stripped", NULL };
#define BAM_FORMAT "bam-1" /* bump when the spool or entry layout changes */

/* The BOLT "version": its path, size and mtime (a package upgrade changes
 * them), and every option above. */
static void conf_hash(char *out, size_t cap)
{
	uint64_t h = 14695981039346656037ull;
	struct stat st = { 0 };
	stat(bolt_path, &st);
	char buf[PATH_MAX + 128];
	int n = snprintf(buf, sizeof(buf), "%s|%s|%lld|%lld.%ld", BAM_FORMAT, bolt_path,
			 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	for (int i = 0; i < n; i++)
		h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
	const char *const *lists[] = { bolt_common, bolt_relocs, bolt_norelocs, bolt_stripped };
	for (size_t l = 0; l < 4; l++)
		for (size_t i = 0; lists[l][i]; i++)
			for (const char *s = lists[l][i]; *s; s++)
				h = (h ^ (unsigned char)*s) * 1099511628211ull;
	snprintf(out, cap, "%016" PRIx64, h);
}

/* ---- entries ------------------------------------------------------------------- */

struct meta {
	char path[PATH_MAX];
	long long size;
	unsigned long long mtime_ns;
	char build_id[160];
};

static int read_meta(const char *entry, struct meta *m)
{
	char p[PATH_MAX + 8];
	snprintf(p, sizeof(p), "%s/meta", entry);
	FILE *f = fopen(p, "re");
	if (!f)
		return -1;
	int ok = fgets(m->path, sizeof(m->path), f) && fscanf(f, "%lld\n%llu\n%159s", &m->size,
							       &m->mtime_ns, m->build_id) == 3;
	fclose(f);
	if (!ok)
		return -1;
	m->path[strcspn(m->path, "\n")] = 0;
	return 0;
}

/* Does the original still match the entry? */
static int meta_current(const struct meta *m)
{
	struct stat st;
	return !stat(m->path, &st) && st.st_size == m->size &&
	       (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec ==
		       m->mtime_ns;
}

static int has(const char *entry, const char *name)
{
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/%s", entry, name);
	return access(p, F_OK) == 0;
}

static off_t file_size(const char *entry, const char *name)
{
	char p[PATH_MAX + 32];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", entry, name);
	return stat(p, &st) ? 0 : st.st_size;
}

/* The entry's subdirectory `sub` (spool, fdata), or NULL. */
static DIR *open_sub(const char *entry, const char *sub)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/%s", entry, sub);
	/* Not through a symlink: fdata_clear unlinks whatever the directory
	 * holds. */
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (!d)
		close(fd);
	return d;
}

/* Samples in the entry's spool (8 bytes each). */
static uint64_t spool_samples(const char *entry)
{
	DIR *d = open_sub(entry, "spool");
	if (!d)
		return 0;
	uint64_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		struct stat st;
		if (l > 2 && !strcmp(de->d_name + l - 2, ".s") && !fstatat(dirfd(d), de->d_name, &st, 0))
			n += (uint64_t)st.st_size / 8;
	}
	closedir(d);
	return n;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p) && errno != ENOENT ? -1 : 0;
}

/* Remove an entry: first renamed out of e/ (a concurrent exec then no
 * longer finds a half-removed entry), then deleted. */
static void entry_remove(const char *entry)
{
	char t[PATH_MAX + 64];
	snprintf(t, sizeof(t), "%s/trash.%d.%ld", root, (int)getpid(), (long)random());
	if (rename(entry, t))
		return;
	nftw(t, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t dir_bytes;
static int add_bytes(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)p;
	(void)ftw;
	if (flag == FTW_F)
		dir_bytes += (uint64_t)st->st_blocks * 512;
	return 0;
}

/* Remove the files of <root>/<sub> not touched for `days` days: exec
 * counts and CPU-time records (seen/<name>.cpu, appended to by every process of
 * that binary) of binaries long gone, logs of sessions that were killed. */
static void prune_old(const char *sub, int days)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/%s", root, sub);
	DIR *d = opendir(p);
	if (!d)
		return;
	time_t limit = time(NULL) - (time_t)days * 86400;
	struct dirent *de;
	struct stat st;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && !fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) &&
		    S_ISREG(st.st_mode) && st.st_mtime < limit)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

/* The instrumented runs that have ended (fdata/<pid>.done beside a
 * non-empty fdata/prof.<pid>.fdata or fdata/counts.<pid>): how many, and
 * with `pids` (freed by the caller) their pids. */
static size_t counts_done(const char *entry, unsigned long **pids)
{
	if (pids)
		*pids = NULL;
	DIR *dir = open_sub(entry, "fdata");
	if (!dir)
		return 0;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(dir))) {
		char *end;
		unsigned long pid = strtoul(de->d_name, &end, 10);
		if (end == de->d_name || strcmp(end, ".done"))
			continue;
		char f[64], c[64];
		struct stat st;
		snprintf(f, sizeof(f), "prof.%lu.fdata", pid);
		snprintf(c, sizeof(c), "counts.%lu", pid);
		if ((fstatat(dirfd(dir), f, &st, 0) || !S_ISREG(st.st_mode) || !st.st_size) &&
		    (fstatat(dirfd(dir), c, &st, 0) || !S_ISREG(st.st_mode) || !st.st_size))
			continue;
		if (pids && n == cap) {
			unsigned long *nv = realloc(*pids, (cap = cap ? 2 * cap : 16) * sizeof(*nv));
			if (!nv)
				break;
			*pids = nv;
		}
		if (pids)
			(*pids)[n] = pid;
		n++;
	}
	closedir(dir);
	return n;
}

/* Is an instrumented run of the entry still going? Each writes
 * fdata/<pid>.run when it starts (the preload), and <pid>.done after its
 * counts at exit; a pid with the first and not the second is going if it
 * still runs the instrumented copy (/proc/<pid>/exe is that file: not a
 * reused pid, nor a run that exec'd something else). Runs are the user's
 * own processes; another user's pid is not one. While the copy itself is
 * missing, any live pid counts (nothing to compare with: wait). */
static int instr_runs_going(const char *entry)
{
	DIR *dir = open_sub(entry, "fdata");
	if (!dir)
		return 0;
	char copy[PATH_MAX + 32];
	struct stat cst;
	snprintf(copy, sizeof(copy), "%s/instrumented", entry);
	int have_copy = !stat(copy, &cst), going = 0;
	struct dirent *de;
	while (!going && (de = readdir(dir))) {
		char *end, f[64];
		unsigned long pid = strtoul(de->d_name, &end, 10);
		struct stat st;
		if (end == de->d_name || strcmp(end, ".run") || !pid || pid > INT32_MAX)
			continue;
		snprintf(f, sizeof(f), "%lu.done", pid);
		if (!fstatat(dirfd(dir), f, &st, 0) || kill((pid_t)pid, 0))
			continue;
		snprintf(f, sizeof(f), "/proc/%lu/exe", pid);
		going = !have_copy ||
			(!stat(f, &st) && st.st_dev == cst.st_dev && st.st_ino == cst.st_ino);
	}
	closedir(dir);
	return going;
}

/* Every file one instrumented run has in fdata/ (bam.h lists them). */
static void run_files_remove(const char *entry, unsigned long pid)
{
	static const char *const names[] = { "prof.%lu.fdata", "%lu.done", "%lu.run", "counts.%lu",
					     "counts.%lu.tmp", "counts.%lu.fdata", "replay.%lu.fdata" };
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		char name[64], f[PATH_MAX + 64];
		snprintf(name, sizeof(name), names[k], pid);
		snprintf(f, sizeof(f), "%s/fdata/%s", entry, name);
		unlink(f);
	}
}

/* Remove the counts of ended instrumented runs (and their .done and .run),
 * never fdata/ itself: a run still going writes there at its exit. */
static void counts_remove(const char *entry)
{
	unsigned long *pids;
	size_t n = counts_done(entry, &pids);
	for (size_t i = 0; i < n; i++)
		run_files_remove(entry, pids[i]);
	free(pids);
}

/* Once no instrumented run can still be going (instr_running), every file
 * left in fdata/ goes: the counts of runs that were killed before writing
 * their .done, and their .run markers, too. */
static void fdata_clear(const char *entry)
{
	DIR *dir = open_sub(entry, "fdata");
	if (!dir)
		return;
	struct dirent *de;
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			unlinkat(dirfd(dir), de->d_name, 0);
	closedir(dir);
}

/* An instrumented run of the entry may still be going: one was claimed in
 * the last INSTR_RUN_MAX_S, or one that marked its start is alive (a run
 * longer than that). At its exit BOLT's runtime reads the copy's own
 * file (through /proc/self/exe) and writes the counts to the entry's
 * fdata/, built into the copy; if either is gone, the run gives its
 * counts up (the preload's guarded_fini; BOLT's runtime would exit 1):
 * neither may be removed under it. */
#define INSTR_RUN_MAX_S 3600
static int instr_running(const char *entry)
{
	char p[PATH_MAX + 16];
	struct stat st;
	snprintf(p, sizeof(p), "%s/iclaims", entry);
	return (!stat(p, &st) && st.st_mtime > time(NULL) - INSTR_RUN_MAX_S) ||
	       instr_runs_going(entry);
}

/* Invalidate entries whose original changed or is gone, then evict the
 * least recently used entries (by the entry directory's mtime, which every
 * new file in it updates) until the cache fits in max_mb. Entries being
 * worked on (bolt.lock held) or with instrumented runs that may still be
 * going are skipped. */
static void trim_cache(long max_mb)
{
	char e[PATH_MAX + 4];
	snprintf(e, sizeof(e), "%s/e", root);
	DIR *d = opendir(e);
	if (!d)
		return;
	struct ent { char path[PATH_MAX + 300]; time_t used; uint64_t bytes; } *v = NULL;
	size_t n = 0;
	uint64_t total = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[PATH_MAX + 300];
		snprintf(p, sizeof(p), "%s/%s", e, de->d_name);
		struct meta m;
		if (!read_meta(p, &m) && !meta_current(&m)) {
			if (!instr_running(p))
				entry_remove(p);
			continue;
		}
		struct stat st;
		if (lstat(p, &st))
			continue;
		if ((has(p, "optimized") || has(p, "failed")) && !instr_running(p)) {
			/* Done with (optimized, or failed for good): the copy,
			 * counts of runs that ended after BOLT took the others
			 * or failed, and what killed runs left. */
			char c[PATH_MAX + 320];
			snprintf(c, sizeof(c), "%s/instrumented", p);
			unlink(c);
			fdata_clear(p);
		}
		dir_bytes = 0;
		nftw(p, add_bytes, 16, FTW_PHYS);
		struct ent *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		snprintf(v[n].path, sizeof(v[n].path), "%s", p);
		v[n].used = st.st_mtime;
		v[n].bytes = dir_bytes;
		total += dir_bytes;
		n++;
	}
	closedir(d);
	prune_old("seen", 30);
	prune_old("s", 2);
	while (total > (uint64_t)max_mb << 20 && n) {
		size_t old = 0;
		for (size_t i = 1; i < n; i++)
			if (v[i].used < v[old].used)
				old = i;
		char lk[PATH_MAX + 320];
		snprintf(lk, sizeof(lk), "%s/bolt.lock", v[old].path);
		int fd = open(lk, O_RDONLY | O_CLOEXEC);
		int busy = (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB)) || instr_running(v[old].path);
		if (!busy)
			entry_remove(v[old].path);
		if (fd >= 0)
			close(fd);
		total -= v[old].bytes;
		v[old] = v[--n];
	}
	free(v);
}

/* ---- the BOLT worker ------------------------------------------------------------ */

/* Was the binary linked with --emit-relocs? Its code sections then keep
 * their relocations (.rela.text), which BOLT's relocation mode needs.
 * *stripped: it has no .symtab. */
static int has_relocs(const char *path, int *stripped)
{
	*stripped = 1;
	int fd = open(path, O_RDONLY | O_CLOEXEC), yes = 0;
	if (fd < 0)
		return 0;
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	size_t shstr;
	if (e && !elf_getshdrstrndx(e, &shstr)) {
		for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
			GElf_Shdr sh;
			const char *name;
			if (!gelf_getshdr(s, &sh))
				continue;
			if (sh.sh_type == SHT_SYMTAB)
				*stripped = 0;
			if (sh.sh_type == SHT_RELA && (name = elf_strptr(e, shstr, sh.sh_name)) &&
			    !strcmp(name, ".rela.text"))
				yes = 1;
		}
	}
	if (e)
		elf_end(e);
	close(fd);
	return yes;
}

/* The spool, merged: every sample file's link-time PCs in one set. */
static int read_spool(const char *entry, struct sample_set *s)
{
	char p[PATH_MAX + 8];
	snprintf(p, sizeof(p), "%s/spool", entry);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 3 || strcmp(de->d_name + l - 2, ".s"))
			continue;
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		uint64_t buf[4096];
		ssize_t r;
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			for (ssize_t i = 0; i < r / 8; i++)
				if (sample_set_push(s, buf[i])) {
					close(fd);
					closedir(d);
					return -1;
				}
		close(fd);
	}
	closedir(d);
	s->event = "cycles";
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Bare IP samples as BOLT's pre-aggregated basic records (`S`), for a
 * binary the library's own writers cannot model (no --emit-relocs, or no
 * .symtab): BOLT attributes them to the functions it finds itself. */
static int write_basic(const struct sample_set *s, const char *path)
{
	uint64_t *v = malloc((s->n ? s->n : 1) * sizeof(*v));
	FILE *f = fopen(path, "we");
	if (!v || !f) {
		free(v);
		if (f)
			fclose(f);
		return -1;
	}
	memcpy(v, s->ips, s->n * sizeof(*v));
	qsort(v, s->n, sizeof(*v), cmp_u64);
	fprintf(f, "E cycles\n");
	for (size_t i = 0, j; i < s->n; i = j) {
		for (j = i; j < s->n && v[j] == v[i]; j++)
			;
		fprintf(f, "S %" PRIx64 " %zu\n", v[i], j - i);
	}
	free(v);
	return fclose(f) ? -1 : 0;
}

/* How the worker's children are limited. --bolt-timeout is CPU time, not
 * wall time: the worker runs at nice 19 (and its session's group too)
 * beside a build that may keep every CPU busy for hours, and BOLT then
 * gets a sliver of a CPU. A wall limit killed it there and marked the
 * entry failed for good, so the binaries of the longest builds, those
 * that gain most, were never optimized. What wall time still catches is
 * a child that does nothing at all (blocked, or stopped): one whose CPU
 * time has not moved for STALL_S. At nice 19 on a busy machine it still
 * moves, in slices. */
#define STALL_S 600

static uint32_t stall_ms(void)
{
	const char *t = getenv("OCOLOS_TEST_BAM_STALL_S"); /* tests only */
	long s = t ? atol(t) : 0;
	return (uint32_t)(s > 0 && s < 86400 ? s : STALL_S) * 1000u;
}

/* --bolt-timeout S gives each run S seconds of CPU per CPU it may run on:
 * BOLT runs a thread per CPU, so that is what S seconds of wall time gave
 * it on an idle machine, where the limit used to be wall time. */
static long cpu_budget_s(long timeout_s)
{
	cpu_set_t cpus; /* the CPUs it may run on, not the machine's */
	long n = sched_getaffinity(0, sizeof(cpus), &cpus) ? sysconf(_SC_NPROCESSORS_ONLN)
							   : CPU_COUNT(&cpus);
	long long s = (long long)timeout_s * (n > 0 ? n : 1);
	return s > UINT32_MAX - 5ll ? (long)(UINT32_MAX - 5ll) : (long)s;
}

/* Why the last run_bolt() failed, for the entry's marker: "exited with
 * status 1", "used its 1800 s of CPU (--bolt-timeout)"... */
static char bolt_why[192];

static int run_bolt(char **argv, const char *log, long timeout_s)
{
	long cpu_s = cpu_budget_s(timeout_s);
	struct layout_spawn_limits lim = { .cpu_s = (uint32_t)cpu_s, .stall_ms = stall_ms() };
	bolt_why[0] = '\0';
	int st = layout_spawn_wait(argv, log, &lim, NULL);
	if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (st == -1)
		snprintf(bolt_why, sizeof(bolt_why), "cannot run or wait for %s: %s", argv[0],
			 strerror(errno));
	else if (st == -4)
		snprintf(bolt_why, sizeof(bolt_why), "used no CPU for %u s: killed as stuck",
			 lim.stall_ms / 1000u);
	else if (st < 0)
		snprintf(bolt_why, sizeof(bolt_why), "killed (status %d)", st);
	else if (WIFEXITED(st))
		snprintf(bolt_why, sizeof(bolt_why), "exited with status %d", WEXITSTATUS(st));
	else if (WTERMSIG(st) == SIGXCPU)
		snprintf(bolt_why, sizeof(bolt_why), "past its %ld s of CPU (--bolt-timeout %ld "
			 "per CPU): killed by SIGXCPU", cpu_s, timeout_s);
	else if (WTERMSIG(st) == SIGKILL) /* the hard limit, or the OOM killer */
		snprintf(bolt_why, sizeof(bolt_why), "killed by SIGKILL: out of memory, or past "
			 "its %ld s of CPU (--bolt-timeout %ld per CPU)", cpu_s, timeout_s);
	else
		snprintf(bolt_why, sizeof(bolt_why), "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	return -1;
}

static void mark(const char *entry, const char *name, const char *text)
{
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/%s", entry, name);
	FILE *f = fopen(p, "we");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

enum job {
	JOB_BOLT,	 /* the spool's samples -> `optimized` */
	JOB_INSTRUMENT,	 /* the original -> `instrumented` */
	JOB_BOLT_COUNTS, /* finished instrumented runs' counts -> `optimized` */
};

/* Can the entry's binary be instrumented at all? Relocations are
 * required (as for function reordering), and symbols. Otherwise the entry
 * is marked and sampled as without --instrument: at once, by the session
 * (poll_entries), since until then its runs go unprofiled. */
static int instrumentable(const char *entry, const char *path)
{
	int stripped, relocs = has_relocs(path, &stripped);
	if (relocs && !stripped)
		return 1;
	mark(entry, "instrument-failed", !relocs ? "no relocations (-Wl,--emit-relocs): not "
	     "instrumented, sampled instead\n" : "no symbol table: not instrumented\n");
	return 0;
}

/* What `llvm-bolt --instrument` takes at its peak, in MiB, from the
 * binary's file size, and a quarter more for the build beside it:
 * measured with BOLT 22 here (docs/benchmarks.md, "Instrumented runs"),
 * 98x for cc1 (60 MB: 5.9 GB), 80x for fe (22 MB: 1.7 GB), 81 MB for
 * a 0.5 MB Lua. */
static long long instrument_need_mb(long long file_size)
{
	long long mb = (file_size + (1 << 20) - 1) >> 20;
	return (mb * 100 + 128) * 5 / 4;
}

/* A memory shortage waits this long, looked at every SKIP_S while a
 * session runs (the target's runs go unprofiled meanwhile), before the key
 * is sampled instead. A look more than defer_gap_s() after the last one
 * (no session ran, or the worker waited for the user's BOLT lock) starts
 * the wait again: the shortage was not watched in between. Where no CPU
 * is idle, a look (a worker) also waits up to --idle-wait for one, so the
 * gap allowed grows with it: otherwise a long --idle-wait would restart
 * the wait at every look and the key would never be sampled. */
#define DEFER_MAX_S 600
#define DEFER_GAP_S 120
#define SKIP_S 10 /* below, skipped() */

static long defer_gap_s(const struct opts *o)
{
	long g = SKIP_S + o->idle_wait_s + 60;
	return g > DEFER_GAP_S ? g : DEFER_GAP_S;
}

/* --instrument auto: the instrumentation must not push the build into
 * swap or the OOM killer. If the machine (or the cgroup) could never give
 * BOLT what it needs — more than 90 % of its memory: an idle machine
 * rarely has more available — the key is sampled. If it could but does
 * not now (a link, a peak of the build), the worker gives up for now (2:
 * retried SKIP_S later) and records it in `instrument-deferred` (the
 * reason, then the time the wait began; its mtime is the last look); after
 * DEFER_MAX_S of it the key is sampled. A key marked so stays sampled for
 * this binary version (remove the entry to try again). 0: go ahead. */
static int instrument_gate(const char *entry, const struct meta *m, long gap_s)
{
	struct bam_memory mem;
	bam_memory_read("", &mem);
	long long need = instrument_need_mb(m->size);
	char why[320], p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/instrument-deferred", entry);
	if (mem.capacity_mb >= 0 && need > mem.capacity_mb / 10 * 9) {
		snprintf(why, sizeof(why), "BOLT --instrument would need ~%lld MB (about 100x the "
			 "binary, and a quarter more), more than 90%% of the %lld MB this machine "
			 "or cgroup has: sampled instead\n", need, mem.capacity_mb);
		mark(entry, "instrument-failed", why);
		return 1;
	}
	if (mem.available_mb < 0 || need <= mem.available_mb) {
		unlink(p);
		return 0;
	}
	time_t now = time(NULL), since = now;
	struct stat st;
	FILE *f;
	if (!stat(p, &st) && now - st.st_mtime <= gap_s && (f = fopen(p, "re"))) {
		char line[320];
		long long t;
		if (fgets(line, sizeof(line), f) && fgets(line, sizeof(line), f) &&
		    sscanf(line, "%lld", &t) == 1 && t <= now)
			since = (time_t)t;
		fclose(f);
	}
	if (now - since >= DEFER_MAX_S) {
		snprintf(why, sizeof(why), "BOLT --instrument would need ~%lld MB, at most %lld MB "
			 "available for %d minutes: sampled instead\n", need, mem.available_mb,
			 DEFER_MAX_S / 60);
		mark(entry, "instrument-failed", why);
		return 1;
	}
	snprintf(why, sizeof(why), "BOLT --instrument would need ~%lld MB, %lld MB available: "
		 "waiting for it (the target's runs are not profiled meanwhile)\n%lld\n", need,
		 mem.available_mb, (long long)since);
	mark(entry, "instrument-deferred", why);
	return 2;
}

/* merge-fdata, beside llvm-bolt. */
static void merge_fdata_path(char *out, size_t cap)
{
	snprintf(out, cap, "%s", bolt_path);
	char *slash = strrchr(out, '/');
	snprintf(slash ? slash + 1 : out, cap - (size_t)(slash ? slash + 1 - out : 0),
		 "merge-fdata");
}

/* Where the copy keeps its counters, for its runs to hand them over at
 * exit (tools/bam/counts.h): only where the worker can replay them and
 * merge the two halves (merge-fdata), else the runs keep BOLT's own dump. */
static void counters_note(const char *entry, const char *copy)
{
	char merge[PATH_MAX], p[PATH_MAX + 64], text[160];
	uint64_t loc, num;
	struct stat st;
	merge_fdata_path(merge, sizeof(merge));
	snprintf(p, sizeof(p), "%s/" BAM_COUNTERS_FILE, entry);
	unlink(p);
	if (!preload_path[0] || access(merge, X_OK) || bam_counters_locate(copy, &loc, &num) ||
	    stat(copy, &st))
		return;
	snprintf(text, sizeof(text), "%" PRIx64 " %" PRIx64 " %llx %llx\n", loc, num,
		 (unsigned long long)st.st_size, (unsigned long long)st.st_mtime);
	mark(entry, BAM_COUNTERS_FILE, text);
}

/* A replay takes about the CPU time the run's own dump took (cc1: 1.3 to
 * 7 s by machine); one that used this much CPU is stuck. Its wall time is
 * not limited, only its stalls (STALL_S): at nice 19 beside a build it
 * may wait long. */
#define REPLAY_CPU_S 120

/* Run the copy as the replay of `counts`: the preload alone preloaded, the
 * session's variables gone (OCOLOS_BAM=off: the replay is no process of
 * the build), in fdata/, output appended to `logp`, at most REPLAY_CPU_S
 * of CPU, killed if it stalls. Its exit status, or -1. */
static int replay_spawn(const char *copy, const char *counts, const char *dir, const char *logp)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC),
		    lg = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (in < 0 || lg < 0 || dup2(in, 0) < 0 || dup2(lg, 1) < 0 || dup2(lg, 2) < 0 ||
		    chdir(dir))
			_exit(126);
		struct rlimit cpu = { REPLAY_CPU_S, REPLAY_CPU_S };
		if (setenv("LD_PRELOAD", preload_path, 1) || setenv(BAM_ENV_SWITCH, "off", 1) ||
		    setenv(BAM_ENV_REPLAY, counts, 1) || setrlimit(RLIMIT_CPU, &cpu))
			_exit(126);
		unsetenv(BAM_ENV_ROOT);
		unsetenv(BAM_ENV_SESSION);
		execl(copy, copy, (char *)NULL);
		_exit(127);
	}
	struct layout_spawn_limits lim = { .stall_ms = stall_ms() };
	int st = layout_wait(pid, &lim, NULL);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A replay failed, so its run counts for nothing: the run's claim is
 * given back (iclaims, one byte per claim, flock'ed as the preload
 * claims) and a later run is instrumented instead; after a second
 * failure the key is sampled (instrument-failed, with the reason). */
static void replay_failed(const char *entry)
{
	char p[PATH_MAX + 64];
	if (file_size(entry, "replay-failed") >= 1) {
		mark(entry, "instrument-failed", "the replays of the instrumented runs' counters "
		     "failed twice (replay.log): sampled instead\n");
		return;
	}
	mark(entry, "replay-failed", "x");
	snprintf(p, sizeof(p), "%s/iclaims", entry);
	int fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd >= 0 && !flock(fd, LOCK_EX)) {
		if (!fstat(fd, &st) && st.st_size > 0 && ftruncate(fd, st.st_size - 1))
			mark(entry, "instrument-failed", "cannot give a failed replay's claim back: "
			     "sampled instead\n");
		flock(fd, LOCK_UN);
	}
	if (fd >= 0)
		close(fd);
}

/* A run's counters (fdata/counts.<pid>), replayed by the copy itself
 * (handover.c's handover_replay) into the profile the run would have
 * written, fixed for the indirect calls the run wrote itself
 * (fdata/prof.<pid>.fdata) into fdata/replay.<pid>.fdata. In the worker,
 * at nice 19: the build does not wait for it. 0: done. -1: no profile;
 * the run's counters, its own file (without the counters no profile of
 * the run) and its markers are removed: the run no longer counts. */
static int counts_replay(const char *entry, unsigned long pid)
{
	char counts[PATH_MAX + 64], copy[PATH_MAX + 64], logp[PATH_MAX + 64], out[PATH_MAX + 80],
		fixed[PATH_MAX + 64], run[PATH_MAX + 64], dir[PATH_MAX + 16];
	snprintf(counts, sizeof(counts), "%s/fdata/counts.%lu", entry, pid);
	snprintf(copy, sizeof(copy), "%s/instrumented", entry);
	snprintf(logp, sizeof(logp), "%s/replay.log", entry);
	snprintf(dir, sizeof(dir), "%s/fdata", entry);
	snprintf(out, sizeof(out), "%s.fdata", counts);
	snprintf(fixed, sizeof(fixed), "%s/fdata/replay.%lu.fdata", entry, pid);
	snprintf(run, sizeof(run), "%s/fdata/prof.%lu.fdata", entry, pid);
	unlink(out);
	/* The replay's runtime writes prof.<its pid>.fdata first: a pid an
	 * ended run had would cost that run its file, so the preload refuses
	 * it and the replay is started again (another pid). */
	int st = BAM_REPLAY_PID_TAKEN;
	for (int i = 0; i < 8 && st == BAM_REPLAY_PID_TAKEN; i++)
		st = replay_spawn(copy, counts, dir, logp);
	int rc = st == 0 ? bam_counts_correct(out, run, fixed) : -1;
	unlink(out);
	if (rc) {
		run_files_remove(entry, pid);
		replay_failed(entry);
	}
	return rc;
}

/* BOLT's instrumentation of the original: every function counts its
 * blocks and edges exactly, and writes them at exit to
 * fdata/prof.<pid>.fdata (BOLT's runtime, from DT_FINI). Under
 * --instrument auto the choice was ocolos-bam's, so the memory is checked
 * first (instrument_gate). */
static int instrument_main(const char *entry, const struct meta *m, long timeout_s,
			   const struct opts *o)
{
	char out[PATH_MAX + 64], fin[PATH_MAX + 64], logp[PATH_MAX + 64], oarg[PATH_MAX + 80],
		farg[PATH_MAX + 120], dir[PATH_MAX + 16];
	if (!instrumentable(entry, m->path))
		return 1;
	int gate = o->instrument_auto ? instrument_gate(entry, m, defer_gap_s(o)) : 0;
	if (gate)
		return gate;
	snprintf(dir, sizeof(dir), "%s/fdata", entry);
	if (mkdir(dir, 0700) && errno != EEXIST) {
		mark(entry, "instrument-failed", "cannot make fdata/: sampled instead\n");
		return 1;
	}
	snprintf(out, sizeof(out), "%s/instrumented.tmp", entry);
	snprintf(fin, sizeof(fin), "%s/instrumented", entry);
	snprintf(logp, sizeof(logp), "%s/instrument.log", entry);
	snprintf(oarg, sizeof(oarg), "-o=%s", out);
	snprintf(farg, sizeof(farg), "--instrumentation-file=%s/prof", dir);
	/* The runtime reads the copy's own file at exit: through /proc/self/exe
	 * it opens even if the copy was removed meanwhile (the preload's
	 * guarded_fini covers fdata/, the other thing it needs). */
	const char *argv[] = { bolt_path, m->path, "--instrument", farg,
			       "--instrumentation-file-append-pid",
			       "--instrumentation-binpath=/proc/self/exe", oarg, NULL };
	int rc = run_bolt((char **)argv, logp, timeout_s);
	if (!rc && chmod(out, 0500)) /* never writable once it can run */
		rc = -1;
	if (!rc)
		counters_note(entry, out);
	if (!rc)
		rc = rename(out, fin);
	if (rc) {
		unlink(out);
		char why[sizeof(bolt_why) + 80];
		snprintf(why, sizeof(why), "llvm-bolt --instrument failed%s%s%s (instrument.log): "
			 "sampled instead\n", bolt_why[0] ? " (" : "", bolt_why, bolt_why[0] ? ")" : "");
		mark(entry, "instrument-failed", why);
		return 1;
	}
	return 0;
}

/* The counts of the instrumented runs, merged (merge-fdata, beside
 * llvm-bolt) into profile.fdata; -data= for BOLT. The instrumented binary
 * and the counts go once `optimized` is in. */
static int counts_profile(const char *entry, char *darg, size_t cap, long timeout_s)
{
	unsigned long *pids;
	size_t n = counts_done(entry, &pids);
	if (!n)
		return -1;
	char (*files)[PATH_MAX + 64] = malloc(2 * n * sizeof(*files));
	const char **argv = malloc((2 * n + 5) * sizeof(*argv));
	if (!files || !argv) {
		free(files);
		free(argv);
		free(pids);
		return -1;
	}
	/* Two files per run whose counters were handed over (the replay's
	 * profile and the run's indirect calls), else the run's own. */
	size_t nf = 0, runs = 0;
	for (size_t i = 0; i < n; i++) {
		char p[PATH_MAX + 64];
		struct stat st;
		snprintf(p, sizeof(p), "%s/fdata/counts.%lu", entry, pids[i]);
		int handed = !access(p, F_OK);
		if (handed && counts_replay(entry, pids[i]))
			continue; /* no profile of that run */
		if (handed)
			snprintf(files[nf++], sizeof(files[0]), "%s/fdata/replay.%lu.fdata", entry,
				 pids[i]);
		snprintf(p, sizeof(p), "%s/fdata/prof.%lu.fdata", entry, pids[i]);
		if (!stat(p, &st) && st.st_size)
			snprintf(files[nf++], sizeof(files[0]), "%s", p);
		else if (!handed)
			continue;
		runs++;
	}
	free(pids);
	if (!runs) {
		free(files);
		free(argv);
		return -1;
	}
	char cnt[32];
	snprintf(cnt, sizeof(cnt), "%zu\n", runs);
	mark(entry, "instrumented_runs", cnt);
	char merge[PATH_MAX], out[PATH_MAX + 64], logp[PATH_MAX + 64];
	merge_fdata_path(merge, sizeof(merge));
	snprintf(out, sizeof(out), "%s/profile.fdata", entry);
	snprintf(logp, sizeof(logp), "%s/merge.log", entry);
	size_t k = 0;
	argv[k++] = merge;
	argv[k++] = "-q";
	argv[k++] = "-o";
	argv[k++] = out;
	for (size_t i = 0; i < nf; i++)
		argv[k++] = files[i];
	argv[k] = NULL;
	if (nf == 1) {
		snprintf(darg, cap, "-data=%s", files[0]);
	} else if (access(merge, X_OK) || run_bolt((char **)argv, logp, timeout_s)) {
		/* merge-fdata failed: one run's counts are a good profile too
		 * (a replay's without that run's indirect calls). */
		snprintf(darg, cap, "-data=%s", files[0]);
		mark(entry, "instrumented_runs", "1\n");
		bolt_why[0] = '\0'; /* not why a later step fails */
	} else {
		snprintf(darg, cap, "-data=%s", out);
	}
	free(files);
	free(argv);
	return 0;
}

/* One entry, start to end: in a forked child at nice 19, holding the
 * entry's lock and the user's BOLT lock. Exit status 0 when `optimized`
 * (JOB_INSTRUMENT: `instrumented`) was installed. */
static int worker_main(const char *entry, enum job job, const struct opts *o)
{
	long timeout_s = o->bolt_timeout_s;
	int allow_stripped = o->allow_stripped;
	char p[PATH_MAX + 64], prof[PATH_MAX + 64], fdata[PATH_MAX + 64], out[PATH_MAX + 64],
		logp[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/bolt.lock", entry);
	int lk = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lk < 0 || flock(lk, LOCK_EX | LOCK_NB))
		return 2; /* another worker has it */
	if (has(entry, "optimized") || has(entry, "failed") || has(entry, "quarantine") ||
	    (job == JOB_INSTRUMENT && (has(entry, "instrumented") || has(entry, "instrument-failed"))))
		return 2;
	snprintf(p, sizeof(p), "%s/bolt.lock", root);
	int glk = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (glk < 0 || flock(glk, LOCK_EX)) /* one BOLT per user at a time */
		return 2;
	struct meta m;
	if (read_meta(entry, &m) || !meta_current(&m))
		return 2; /* the original changed: the entry is stale */
	if (job == JOB_INSTRUMENT)
		return instrument_main(entry, &m, timeout_s, o);
	struct sample_set s = { 0 };
	char darg[PATH_MAX + 80];
	if (job == JOB_BOLT_COUNTS ? counts_profile(entry, darg, sizeof(darg), timeout_s)
				   : read_spool(entry, &s) || !s.n) {
		sample_set_free(&s);
		return 2;
	}
	/* The spool is removed once BOLT is done: keep its size for the
	 * summary ("bolt_samples"). */
	char cnt[32];
	snprintf(cnt, sizeof(cnt), "%zu\n", s.n);
	if (job == JOB_BOLT)
		mark(entry, "samples", cnt);
	snprintf(logp, sizeof(logp), "%s/bolt.log", entry);
	snprintf(prof, sizeof(prof), "%s/profile.pa", entry);
	snprintf(fdata, sizeof(fdata), "%s/profile.fdata", entry);
	snprintf(out, sizeof(out), "%s/optimized.tmp", entry);
	int stripped, relocs = has_relocs(m.path, &stripped), basic = job == JOB_BOLT;
	if (stripped && !allow_stripped) {
		sample_set_free(&s);
		mark(entry, "mode", relocs ? "relocs,stripped\n" : "no-relocs,stripped\n");
		mark(entry, "failed", "the binary has no symbol table (stripped): not optimized; "
		     "--allow-stripped lets BOLT try\n");
		return 1;
	}
	if (relocs && job == JOB_BOLT) {
		/* With relocations and symbols, libocolos's own model: CFGs and
		 * hybrid edge weights (infer/), better than bare samples. */
		struct elf_binary *b = NULL;
		struct core_err err = { 0 };
		struct infer_profile_stats st;
		if (!elf_binary_open(m.path, &b, &err) &&
		    !infer_write_hybrid(b, 0, &s, prof, &st, &err))
			basic = 0;
		if (b)
			elf_binary_close(b);
	}
	int rc = 0;
	const char *argv[64];
	size_t n = 0;
	char parg[PATH_MAX + 80], oarg[PATH_MAX + 80];
	if (job == JOB_BOLT_COUNTS) {
		/* darg: the counts, BOLT's own format */
	} else if (basic) {
		/* BOLT 22 leaves block counts unknown for --ba read directly:
		 * aggregate first (as lib/layout does for a round). */
		snprintf(parg, sizeof(parg), "-p=%s", prof);
		snprintf(oarg, sizeof(oarg), "-o=%s", fdata);
		const char *agg[] = { bolt_path, m.path, "--aggregate-only", "--pa", "--ba", parg, oarg,
				      stripped ? bolt_stripped[0] : NULL, NULL };
		rc = write_basic(&s, prof) || run_bolt((char **)agg, logp, timeout_s);
		snprintf(darg, sizeof(darg), "-data=%s", fdata);
	} else {
		snprintf(darg, sizeof(darg), "-p=%s", prof);
	}
	sample_set_free(&s);
	if (!rc) {
		char lg2[PATH_MAX + 64];
		snprintf(lg2, sizeof(lg2), "%s/bolt.log.2", entry);
		snprintf(oarg, sizeof(oarg), "-o=%s", out);
		argv[n++] = bolt_path;
		argv[n++] = m.path;
		argv[n++] = oarg;
		argv[n++] = darg;
		if (!basic && job == JOB_BOLT)
			argv[n++] = "--pa";
		for (size_t i = 0; bolt_common[i]; i++)
			argv[n++] = bolt_common[i];
		const char *const *extra = relocs ? bolt_relocs : bolt_norelocs;
		for (size_t i = 0; extra[i]; i++)
			argv[n++] = extra[i];
		for (size_t i = 0; stripped && bolt_stripped[i]; i++)
			argv[n++] = bolt_stripped[i];
		argv[n] = NULL;
		rc = run_bolt((char **)argv, lg2, timeout_s);
		if (!rc && chmod(out, 0500)) /* never writable once it can run */
			rc = -1;
		snprintf(p, sizeof(p), "%s/optimized", entry);
		if (!rc) {
			mark(entry, "mode", job == JOB_BOLT_COUNTS ? "relocs,instrumented\n"
					    : relocs ? "relocs\n" : stripped ? "no-relocs,stripped\n"
									      : "no-relocs\n");
			rc = rename(out, p);
		}
	}
	if (rc) {
		unlink(out);
		char why[sizeof(bolt_why) + 64];
		snprintf(why, sizeof(why), "llvm-bolt failed%s%s%s: see bolt.log and bolt.log.2\n",
			 bolt_why[0] ? " (" : "", bolt_why, bolt_why[0] ? ")" : "");
		mark(entry, "failed", why);
		counts_remove(entry); /* a failed entry is not tried again: they would only take space */
		return 1;
	}
	snprintf(p, sizeof(p), "%s/spool", entry);
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); /* optimized: the samples are done with */
	/* The instrumented copy stays until no run of it can be going
	 * (trim_cache): BOLT's runtime reads its own file at exit, and exits
	 * with status 1 if it is gone. */
	counts_remove(entry);
	return 0;
}

/* Make the calling process (the worker, just after setsid) yield the CPU
 * to everything else. nice 19 alone does not: with autogroups
 * (CONFIG_SCHED_AUTOGROUP, on in Debian's kernels, for tasks in the root
 * CPU cgroup) every session is its own scheduling group, and the scheduler
 * shares the CPU between groups before nice values count within one, so
 * the worker's new session got as much CPU as the whole build (measured:
 * BOLT "at nice 19" ran at 90 % of a core beside make -j2 on 2 cores, and
 * the build took twice its wall time). The group's own nice value fixes
 * that. Where autogroups are compiled out the file is absent; where they
 * are off or do not apply (a CPU cgroup) the write does nothing and the
 * task's nice is what counts. The kernel takes one such write per 100 ms
 * from unprivileged users (EAGAIN): concurrent sessions retry. */
static void yield_to_others(void)
{
	/* SCHED_IDLE was tried as well and not kept: in two interleaved runs
	 * of the same build it was 8.6 % faster and 2 % slower in wall time
	 * than nice 19 (docs/benchmarks.md), and it would starve the worker's
	 * locks and timeouts further on a machine that never idles. */
	setpriority(PRIO_PROCESS, 0, 19);
	int fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (int i = 0; i < 30 && write(fd, "19", 2) < 0 && (errno == EAGAIN || errno == EINTR); i++) {
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	close(fd); /* best effort: refused, nice 19 stays */
}

/* Start the worker for `entry` in the background: its own session (a ^C
 * to the build does not kill it), yielding to the build (yield_to_others),
 * output to the entry's log. Under --wait the session waits for the worker
 * and there is no build left to yield to, so its group keeps the default
 * share: a waiting test or benchmark must not be starved by whatever else
 * runs on the machine. */
static void start_worker(const char *entry, enum job job, const struct opts *o)
{
	sigset_t chld_set;
	sigemptyset(&chld_set);
	sigaddset(&chld_set, SIGCHLD);
	pid_t pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		sigprocmask(SIG_UNBLOCK, &chld_set, NULL);
		if (setsid() < 0 || o->wait)
			setpriority(PRIO_PROCESS, 0, 19); /* the group is the caller's: leave it */
		else
			yield_to_others();
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		_exit(worker_main(entry, job, o));
	}
	worker = pid;
	snprintf(worker_entry, sizeof(worker_entry), "%s", entry);
}

/* Entries whose worker found nothing to do (another session's worker had
 * the entry, or it was done meanwhile), by key: not polled again for
 * SKIP_S, instead of a fork every poll while the other worker runs. */
#define MAX_SKIP 64
static struct { char key[128]; time_t until; } skip[MAX_SKIP];
static int skipped(const char *key)
{
	time_t now = time(NULL);
	for (size_t i = 0; i < MAX_SKIP; i++)
		if (skip[i].until > now && !strcmp(skip[i].key, key))
			return 1;
	return 0;
}
static void skip_for_a_while(const char *key)
{
	size_t old = 0;
	for (size_t i = 1; i < MAX_SKIP; i++)
		if (skip[i].until < skip[old].until)
			old = i;
	snprintf(skip[old].key, sizeof(skip[old].key), "%s", key);
	skip[old].until = time(NULL) + SKIP_S;
}

/* Keys whose binary instrumentable() accepted: not read again each poll. */
#define MAX_CHECKED 64
static char checked[MAX_CHECKED][128];
static int instrumentable_once(const char *entry, const char *key, const char *path)
{
	for (size_t i = 0; i < MAX_CHECKED; i++)
		if (!strcmp(checked[i], key))
			return 1;
	if (!instrumentable(entry, path))
		return 0;
	static size_t next;
	snprintf(checked[next++ % MAX_CHECKED], sizeof(checked[0]), "%s", key);
	return 1;
}

/* ---- when background work may start -------------------------------------------- */

/* Half a CPU idle, on average over a second: a build with -j below the
 * CPU count, a link or a configure step. make -j2 compiling on 2 CPUs
 * leaves 0-5 % of a CPU idle (measured with 0.5 s samples), its final
 * link ~50 %. */
#define IDLE_CPU_MIN 0.5
#define IDLE_INTERVAL_S 1.0

static cpu_set_t our_cpus;	     /* our affinity, read once: the worker inherits it */
static int our_cpus_known;
static struct bam_cpu_sample cpu_last; /* the counters at the start of the interval */
static int cpu_measured;	     /* an interval has been measured */
static double cpu_idle_cpus = -1;    /* idle CPUs over the last interval; -1 unreadable */
static double held_since = -1;	     /* ready work held back since (mono_s), or -1 */
static double held_s;		     /* all the time it was, this session (summary) */
static int gate_reached;	     /* this poll, some work asked worker_may_start */

static double mono_s(void)
{
	return (double)core_now_ns() / 1e9;
}

/* At every poll: a new interval's idle CPUs once the last is a second old.
 * OCOLOS_TEST_BAM_PROC_ROOT: a directory of fixtures read instead of /proc
 * and /sys (test bam.idle makes a machine that idles). */
static void cpu_watch(void)
{
	double now = mono_s();
	const char *proc_root = getenv("OCOLOS_TEST_BAM_PROC_ROOT");
	proc_root = proc_root ? proc_root : "";
	if (!our_cpus_known) {
		/* (more CPUs than a cpu_set_t holds: all of them count) */
		our_cpus_known = sched_getaffinity(0, sizeof(our_cpus), &our_cpus) ? -1 : 1;
		bam_cpu_read(proc_root, our_cpus_known > 0 ? &our_cpus : NULL, now, &cpu_last);
		return;
	}
	if (now - cpu_last.at_s < IDLE_INTERVAL_S)
		return;
	struct bam_cpu_sample cur;
	bam_cpu_read(proc_root, our_cpus_known > 0 ? &our_cpus : NULL, now, &cur);
	cpu_idle_cpus = bam_cpu_idle(&cpu_last, &cur);
	cpu_last = cur;
	cpu_measured = 1;
}

/* Work is ready for a worker: may it start now? Yes when a CPU is idle
 * (or idleness cannot be read: the behaviour before this rule), when CMD
 * has ended (`final`: there is no build to slow down), or once the work
 * has been held --idle-wait seconds. */
static int worker_may_start(const struct opts *o, int final)
{
	double now = mono_s();
	gate_reached = 1;
	int go = final || o->idle_wait_s == 0 ||
		 (cpu_measured && (cpu_idle_cpus < 0 || cpu_idle_cpus >= IDLE_CPU_MIN)) ||
		 (held_since >= 0 && now - held_since >= (double)o->idle_wait_s);
	if (go && held_since >= 0) {
		held_s += now - held_since;
		held_since = -1;
	} else if (!go && held_since < 0) {
		held_since = now;
	}
	return go;
}

static void start_worker_when_idle(const char *entry, enum job job, const struct opts *o, int final)
{
	if (worker_may_start(o, final))
		start_worker(entry, job, o);
}

/* After a poll: work held back that is no longer ready (another session's
 * worker did it, the binary changed) is no longer held. Without this the
 * next work to be ready would find its wait already spent. */
static void held_work_gone(void)
{
	if (!gate_reached && held_since >= 0) {
		held_s += mono_s() - held_since;
		held_since = -1;
	}
}

/* Look for an entry with enough profile and no optimized binary yet, and
 * start its worker (one at a time). `final`: CMD has exited, so every
 * profiled process has written its spool; an entry whose profiled runs are
 * all used up then goes to BOLT with whatever profile it has. */
static void poll_entries(const struct opts *o, int final)
{
	char e[PATH_MAX + 4];
	snprintf(e, sizeof(e), "%s/e", root);
	cpu_watch();
	gate_reached = 0;
	DIR *d = opendir(e);
	if (!d)
		return;
	struct dirent *de;
	/* Every entry is looked at even while a worker runs (it may wait
	 * long for the user's BOLT lock): a new target that cannot be
	 * instrumented is marked at once, so that its runs are sampled. */
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[PATH_MAX + 300];
		snprintf(p, sizeof(p), "%s/%s", e, de->d_name);
		if (has(p, "optimized") || has(p, "failed") || has(p, "quarantine") || !has(p, "meta") ||
		    skipped(de->d_name))
			continue;
		int instr = o->instrument > 0 && !has(p, "instrument-failed");
		if (worker > 0 && (!instr || has(p, "instrumented")))
			continue; /* only the check below can be done while a worker runs */
		struct meta m;
		if (read_meta(p, &m) || !meta_current(&m))
			continue; /* stale: the next session removes it */
		if (instr && !has(p, "instrumented") && !instrumentable_once(p, de->d_name, m.path))
			continue; /* marked: sampled from now on */
		if (worker > 0)
			continue;
		if (instr) {
			/* Instrumented runs: make the instrumented binary first;
			 * BOLT once --instrument runs have ended, or, at the end
			 * of CMD, any. */
			size_t done = counts_done(p, NULL);
			if (!has(p, "instrumented")) {
				start_worker_when_idle(p, JOB_INSTRUMENT, o, final);
			} else if (done >= (size_t)o->instrument || (final && done > 0)) {
				start_worker_when_idle(p, JOB_BOLT_COUNTS, o, final);
			} else if (final && file_size(p, "iclaims") >= o->instrument &&
				   !instr_runs_going(p)) {
				/* Every run claimed, none wrote its counts, none is
				 * still going (another session's may be): they ended
				 * by _exit, a signal or an exec. Without this the key
				 * would wait for counts for good. */
				mark(p, "instrument-failed", "the instrumented runs wrote no counts (they "
				     "ended by _exit, a signal or an exec): sampled instead\n");
			}
			continue;
		}
		uint64_t n = spool_samples(p);
		int ready = n >= (uint64_t)o->min_samples ||
			    (final && n > 0 && file_size(p, "claims") >= o->runs);
		if (ready)
			start_worker_when_idle(p, JOB_BOLT, o, final);
	}
	closedir(d);
	held_work_gone();
}

static void reap_worker(int block)
{
	if (worker <= 0)
		return;
	int st;
	pid_t w = waitpid(worker, &st, block ? 0 : WNOHANG);
	if (w == worker && WIFEXITED(st) && WEXITSTATUS(st) == 2) {
		const char *b = strrchr(worker_entry, '/');
		skip_for_a_while(b ? b + 1 : worker_entry);
	}
	if (w == worker || (w < 0 && errno == ECHILD))
		worker = -1;
}

/* ---- the summary ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

struct target {
	char key[128];
	char path[PATH_MAX];
	long inv, prof, opt, fallback, unsafe, instr, ifallback;
};

/* The first line of an entry's file `name` (without its newline) in buf;
 * 1 if the file is there ("" if empty), 0 if not. */
static int entry_line(const char *entry, const char *name, char *buf, size_t cap)
{
	char p[PATH_MAX + 240];
	snprintf(p, sizeof(p), "%s/%s", entry, name);
	buf[0] = 0;
	FILE *f = fopen(p, "re");
	if (!f)
		return 0;
	if (fgets(buf, (int)cap, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
	return 1;
}

/* The number an entry's file `name` starts with, or -1. */
static long entry_number(const char *entry, const char *name)
{
	char p[PATH_MAX + 240];
	long v = -1;
	snprintf(p, sizeof(p), "%s/%s", entry, name);
	FILE *f = fopen(p, "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Read the session log and print the one-line summary. */
static void summary(const char *session, const char *error, int status)
{
	struct target *t = NULL;
	size_t nt = 0;
	long inv = 0, prof = 0, opt = 0, fb = 0, instr = 0, ifb = 0;
	FILE *f = session ? fopen(session, "re") : NULL;
	char line[2 * PATH_MAX + 64];
	while (f && fgets(line, sizeof(line), f)) {
		char ev[16], key[128], path[PATH_MAX];
		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, "%15s %127s %4095[^\n]", ev, key, path) != 3)
			continue;
		size_t i;
		for (i = 0; i < nt && strcmp(t[i].key, key); i++)
			;
		if (i == nt) {
			struct target *nv = realloc(t, (nt + 1) * sizeof(*t));
			if (!nv)
				break;
			t = nv;
			memset(&t[nt], 0, sizeof(*t));
			snprintf(t[nt].key, sizeof(t[nt].key), "%s", key);
			snprintf(t[nt].path, sizeof(t[nt].path), "%s", path);
			nt++;
		}
		if (!strcmp(ev, "exec"))
			t[i].inv++, inv++;
		else if (!strcmp(ev, "prof"))
			t[i].prof++, prof++;
		else if (!strcmp(ev, "opt"))
			t[i].opt++, opt++;
		else if (!strcmp(ev, "fallback"))
			t[i].fallback++, fb++;
		else if (!strcmp(ev, "instr"))
			t[i].instr++, instr++;
		else if (!strcmp(ev, "ifallback"))
			t[i].ifallback++, ifb++;
		else if (!strcmp(ev, "unsafe"))
			t[i].unsafe++;
	}
	if (f)
		fclose(f);
	fprintf(stderr, "{\"tool\":\"ocolos-bam\",\"status\":%d,\"enabled\":%s", status,
		session ? "true" : "false");
	if (error) {
		fprintf(stderr, ",\"error\":");
		json_str(stderr, error);
	}
	fprintf(stderr, ",\"invocations\":%ld,\"invocations_profiled\":%ld,"
		"\"invocations_optimized\":%ld,\"invocations_instrumented\":%ld,\"fallbacks\":%ld,"
		"\"worker_held_ms\":%lld,\"targets\":[", inv, prof, opt - fb, instr - ifb, fb + ifb,
		(long long)((held_s + (held_since >= 0 ? mono_s() - held_since : 0)) * 1000));
	for (size_t i = 0; i < nt; i++) {
		char e[PATH_MAX + 200];
		snprintf(e, sizeof(e), "%s/e/%s", root, t[i].key);
		char mode[32], why[256];
		entry_line(e, "mode", mode, sizeof(mode));
		const char *state = has(e, "quarantine") ? "quarantined" : has(e, "failed") ? "failed"
				  : has(e, "optimized") ? "optimized"
				  : worker > 0 && !strcmp(worker_entry, e) ? "optimizing"
				  : "profiling";
		fprintf(stderr, "%s{\"path\":", i ? "," : "");
		json_str(stderr, t[i].path);
		fprintf(stderr, ",\"key\":");
		json_str(stderr, t[i].key);
		fprintf(stderr, ",\"state\":\"%s\"", state);
		if (entry_line(e, "failed", why, sizeof(why))) {
			fprintf(stderr, ",\"reason\":");
			json_str(stderr, why);
		}
		fprintf(stderr, ",\"mode\":");
		if (*mode)
			json_str(stderr, mode);
		else
			fputs("null", stderr);
		fprintf(stderr, ",\"invocations\":%ld,\"profiled\":%ld,\"optimized\":%ld,"
			"\"instrumented\":%ld,\"fallbacks\":%ld,\"refused_unsafe\":%ld,"
			"\"samples\":%" PRIu64, t[i].inv, t[i].prof, t[i].opt - t[i].fallback,
			t[i].instr - t[i].ifallback, t[i].fallback + t[i].ifallback, t[i].unsafe,
			spool_samples(e));
		/* The samples the entry's BOLT run was given (the spool is gone
		 * once it is done): written by the worker before BOLT starts;
		 * or the instrumented runs whose counts it was given. */
		long bs = entry_number(e, "samples"), ir = entry_number(e, "instrumented_runs");
		if (bs >= 0)
			fprintf(stderr, ",\"bolt_samples\":%ld", bs);
		if (ir >= 0)
			fprintf(stderr, ",\"bolt_instrumented_runs\":%ld", ir);
		if (*instrument_on && entry_line(e, "instrument-failed", why, sizeof(why))) {
			fprintf(stderr, ",\"instrument_failed\":");
			json_str(stderr, why);
		} else if (*instrument_on && !has(e, "instrumented") && !has(e, "optimized") &&
			   !has(e, "failed") && !has(e, "quarantine") &&
			   entry_line(e, "instrument-deferred", why, sizeof(why))) {
			fprintf(stderr, ",\"instrument_deferred\":");
			json_str(stderr, why);
		}
		fputc('}', stderr);
	}
	fprintf(stderr, "]}\n");
	free(t);
}

/* libocolos's BOLT discovery (layout_bolt_probe) runs llvm-bolt for its
 * help text; its result is remembered in <root>/probe/bolt with the file's
 * size and mtime, so a session (one per `make` in a script) does not pay
 * it again until BOLT changes. */
static int find_bolt(const char *hint, struct core_err *err)
{
	char p[PATH_MAX + 16], want[PATH_MAX] = "", line[PATH_MAX];
	snprintf(p, sizeof(p), "%s/probe/bolt", root);
	if (hint && !realpath(hint, want))
		want[0] = 0;
	FILE *f = fopen(p, "re");
	long long size = -1, mt = -1;
	if (f) {
		int ok = fgets(line, sizeof(line), f) && fscanf(f, "%lld %lld", &size, &mt) == 2;
		fclose(f);
		line[strcspn(line, "\n")] = 0;
		struct stat st;
		if (ok && (!hint || !strcmp(want, line)) && !stat(line, &st) && st.st_size == size &&
		    (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec == mt) {
			snprintf(bolt_path, sizeof(bolt_path), "%s", line);
			return 0;
		}
	}
	char dir[PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s/probe", root);
	int rc = layout_bolt_probe(hint, dir, bolt_path, err);
	struct stat st;
	char rp[PATH_MAX];
	if (rc || !realpath(bolt_path, rp) || stat(rp, &st))
		return rc ? rc : -1;
	char tmp[PATH_MAX + 32];
	snprintf(tmp, sizeof(tmp), "%s.%d", p, (int)getpid());
	if ((f = fopen(tmp, "we"))) {
		fprintf(f, "%s\n%lld %lld\n", rp, (long long)st.st_size,
			(long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
		if (fclose(f) || rename(tmp, p))
			unlink(tmp);
	}
	snprintf(bolt_path, sizeof(bolt_path), "%s", rp);
	return 0;
}

/* ---- main ------------------------------------------------------------------------ */

static int run_plain(char **cmd)
{
	pid_t pid = fork();
	if (pid == 0) {
		execvp(cmd[0], cmd);
		fprintf(stderr, "ocolos-bam: cannot run %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return 127;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* libocolos-bam.so: --preload, else beside this program, else in
 * ../lib/ocolos/ relative to it (an installed layout). */
static int find_preload(const struct opts *o, char *out)
{
	if (o->preload)
		return realpath(o->preload, out) ? 0 : -1;
	char self[PATH_MAX];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (l <= 0)
		return -1;
	self[l] = 0;
	char *slash = strrchr(self, '/');
	*slash = 0;
	char p[2 * PATH_MAX];
	snprintf(p, sizeof(p), "%s/libocolos-bam.so", self);
	if (!access(p, R_OK))
		return realpath(p, out) ? 0 : -1;
	snprintf(p, sizeof(p), "%s/../lib/ocolos/libocolos-bam.so", self);
	if (realpath(p, out))
		return 0;
#ifdef OCOLOS_BAM_PRELOAD_INSTALLED
	/* Where `make install` put it (the libdir may be lib/<multiarch>). */
	return realpath(OCOLOS_BAM_PRELOAD_INSTALLED, out) ? 0 : -1;
#else
	return -1;
#endif
}

int main(int argc, char **argv)
{
	struct opts o;
	int first = parse(argc, argv, &o);
	if (first < 0)
		return 2;
	char **cmd = argv + first;
	const char *sw = getenv(BAM_ENV_SWITCH);
	if (sw && !strcmp(sw, "off")) {
		int st = run_plain(cmd);
		summary(NULL, NULL, st);
		return st;
	}
	int r = setup_root(&o);
	if (r) {
		int st = run_plain(cmd);
		summary(NULL, r == -2 ? ERR_UNSAFE : "cache unusable", st);
		return st;
	}
	struct core_err err = { 0 };
	if (find_bolt(o.bolt, &err)) {
		fprintf(stderr, "ocolos-bam: %s; running the command unaccelerated\n", err.msg);
		int st = run_plain(cmd);
		summary(NULL, "no usable llvm-bolt", st);
		return st;
	}
	char preload[PATH_MAX];
	if (!find_preload(&o, preload))
		snprintf(preload_path, sizeof(preload_path), "%s", preload);
	if (!preload_path[0]) {
		fprintf(stderr, "ocolos-bam: libocolos-bam.so not found beside ocolos-bam: give "
			"--preload PATH; running the command unaccelerated\n");
		int st = run_plain(cmd);
		summary(NULL, "preload library not found", st);
		return st;
	}
	srandom((unsigned)getpid());
	trim_cache(o.cache_max_mb);

	char session[PATH_MAX + 64], conf[32], num[32];
	snprintf(session, sizeof(session), "%s/s/%d.log", root, (int)getpid());
	int sfd = open(session, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (sfd < 0) {
		fprintf(stderr, "ocolos-bam: cannot create %s: %s\n", session, strerror(errno));
		return 125;
	}
	close(sfd);
	conf_hash(conf, sizeof(conf));

	/* The environment every process of the build inherits. */
	const char *old = getenv("LD_PRELOAD");
	char *pl = malloc(strlen(preload) + (old ? strlen(old) : 0) + 2);
	if (!pl)
		return 125;
	sprintf(pl, "%s%s%s", preload, old && *old ? ":" : "", old && *old ? old : "");
	setenv("LD_PRELOAD", pl, 1);
	free(pl);
	setenv(BAM_ENV_ROOT, root, 1);
	setenv(BAM_ENV_SESSION, session, 1);
	setenv(BAM_ENV_CONF, conf, 1);
	if (o.targets)
		setenv(BAM_ENV_TARGETS, o.targets, 1);
	else
		unsetenv(BAM_ENV_TARGETS);
	snprintf(num, sizeof(num), "%ld", o.auto_n);
	setenv(BAM_ENV_AUTO, num, 1);
	snprintf(num, sizeof(num), "%ld", o.auto_cpu_ms);
	setenv(BAM_ENV_AUTO_CPU, num, 1);
	snprintf(num, sizeof(num), "%ld", o.runs);
	setenv(BAM_ENV_RUNS, num, 1);
	snprintf(num, sizeof(num), "%ld", o.hz);
	setenv(BAM_ENV_HZ, num, 1);
	instrument_on[0] = o.instrument > 0 ? '1' : 0;
	snprintf(num, sizeof(num), "%ld", o.instrument > 0 ? o.instrument : 0);
	setenv(BAM_ENV_INSTRUMENT, num, 1);

	/* SIGCHLD blocked: the watch loop below waits for it with a timeout,
	 * so the build's end is seen at once, not at the next poll. */
	sigset_t chld, prev;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &prev);
	pid_t child = fork();
	if (child < 0)
		return 125;
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &prev, NULL);
		execvp(cmd[0], cmd);
		fprintf(stderr, "ocolos-bam: cannot run %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	/* The build runs; we watch the cache. Signals meant for the build
	 * (^C) reach it through the terminal's process group; we stay to
	 * report. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	int st = 0;
	for (;;) {
		pid_t w = waitpid(child, &st, WNOHANG);
		if (w == child)
			break;
		if (w < 0 && errno != EINTR) {
			st = 127 << 8;
			break;
		}
		reap_worker(0);
		poll_entries(&o, 0);
		struct timespec ts = { 0, 200 * 1000000L };
		sigtimedwait(&chld, NULL, &ts);
	}
	int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	reap_worker(0);
	poll_entries(&o, 1);
	if (o.wait) {
		/* Tests and benchmarks: every ready entry, one after another. */
		while (worker > 0) {
			reap_worker(1);
			poll_entries(&o, 1);
		}
	}
	summary(session, NULL, status);
	unlink(session);
	return status;
}

/*
 * BOLT backend of the layout engine (see layout.h).
 *
 * Options and why:
 *  --pa                  pre-aggregated branch profile written by us (B/F
 *                        records); bare IP samples (S records) are first
 *                        aggregated by BOLT itself (see aggregate())
 *  --custom-allocation-vma  new code goes exactly into the range reserved in
 *                        the process, so PIE needs no heap-shifting tricks
 *  --enable-bat          address translation, to map later samples in C1
 *                        back to C0 for the next round
 *  --lite                only sampled functions move: C1 stays small
 *  --jump-tables=move    moved functions get their own jump tables in the
 *                        new segment; C0's tables stay untouched
 *  --no-huge-pages       no 2 MiB padding of the new text
 *  --split-functions     cold blocks out of the hot code; left out when new
 *                        code lies beyond AArch64 BL reach (see no_split)
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "layout/layout.h"

extern char **environ;

#define MAX_ARGS 64

/* The caller's environment without LD_PRELOAD: what the target preloads
 * (an allocator, a sanitizer runtime) is not BOLT's business. NULL-ended
 * array of pointers into environ; free() the array only. */
static char **bolt_environment(void)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **env = calloc(n + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0, k = 0; i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11))
			env[k++] = environ[i];
	return env;
}

/* The CPU time child `pid` has used, in ns, from its CPU clock or, if
 * there is none (clock_getcpuclockid may fail, e.g. under some seccomp
 * profiles), from /proc/PID/stat in clock ticks. 0 if neither answers. */
static int child_cpu_ns(pid_t pid, int have_clock, clockid_t cpu_clock, uint64_t *ns)
{
	struct timespec ts;
	if (have_clock) {
		if (clock_gettime(cpu_clock, &ts))
			return 0;
		*ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		return 1;
	}
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* After "(comm) ": state is field 3, utime and stime 14 and 15. */
	const char *c = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!c || sscanf(c + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &ut, &st) != 2)
		return 0;
	long hz = sysconf(_SC_CLK_TCK);
	*ns = (ut + st) * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
	return 1;
}

/* See layout.h. */
int layout_wait(pid_t pid, const struct layout_spawn_limits *lim, const atomic_int *cancel)
{
	clockid_t cpu_clock = 0;
	int have_clock = lim->stall_ms && !getenv("OCOLOS_TEST_NO_CPU_CLOCK") /* tests */ &&
			 !clock_getcpuclockid(pid, &cpu_clock);
	uint64_t t0 = core_now_ns(), last_cpu = 0, moved = t0, looked = t0;
	for (;;) {
		int status;
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		if (w < 0 && errno != EINTR)
			return -1;
		uint64_t now = core_now_ns();
		int canceled = cancel && atomic_load(cancel);
		int late = lim->wall_ms && now - t0 > (uint64_t)lim->wall_ms * 1000000ull;
		int stalled = 0;
		/* Once a second: has it used any CPU since the last look? A
		 * look long overdue means this process was stopped or frozen
		 * too (SIGSTOP, a cgroup freezer, a paused VM): the child had no
		 * chance to run either, so the wait starts again. */
		uint64_t c;
		if (lim->stall_ms && now - looked >= 1000000000ull) {
			if (now - looked > 5000000000ull)
				moved = now;
			looked = now;
			if (child_cpu_ns(pid, have_clock, cpu_clock, &c)) {
				if (c != last_cpu)
					moved = now;
				last_cpu = c;
			} else {
				moved = now; /* cannot tell: never stalled */
			}
			stalled = now - moved > (uint64_t)lim->stall_ms * 1000000ull;
		}
		if (canceled || late || stalled) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return canceled ? -3 : late ? -2 : -4;
		}
		struct timespec ts = { 0, 5 * 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* Spawn argv with stdout/stderr to `log` (or /dev/null) and wait within
 * `lim` (layout.h), or until *cancel (may be NULL) is set. Returns the wait
 * status, -1 on spawn failure (errno set), -2 on timeout, -3 on cancel or
 * -4 when it stalled (the child killed and reaped in each case). */
static int spawn_wait(char *const argv[], const char *log, const struct layout_spawn_limits *lim,
		      const atomic_int *cancel)
{
	char **env = bolt_environment();
	if (!env) {
		errno = ENOMEM;
		return -1;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log ? log : "/dev/null",
					 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	if (rc) {
		errno = rc;
		return -1;
	}
	/* The CPU limit is set from outside once the child exists (posix_spawn
	 * has no hook in the child); what it ran before counts all the same.
	 * The hard limit is the kernel's SIGKILL for a child that outlives
	 * its SIGXCPU (LLVM's handler prints a stack trace first). */
	if (lim->cpu_s) {
		/* Within the hard limit the caller may have inherited (ulimit
		 * -t, a batch scheduler): raising it is not ours to do. And no
		 * core file of a BOLT of gigabytes that SIGXCPU stops. */
		struct rlimit cpu = { lim->cpu_s, (rlim_t)lim->cpu_s + 5 }, old, none = { 0, 0 };
		if (!prlimit(pid, RLIMIT_CPU, NULL, &old) && old.rlim_max != RLIM_INFINITY) {
			cpu.rlim_max = cpu.rlim_max < old.rlim_max ? cpu.rlim_max : old.rlim_max;
			cpu.rlim_cur = cpu.rlim_cur < cpu.rlim_max ? cpu.rlim_cur : cpu.rlim_max;
		}
		prlimit(pid, RLIMIT_CORE, &none, NULL);
		if (prlimit(pid, RLIMIT_CPU, &cpu, NULL) && errno != ESRCH) {
			int e = errno;
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			errno = e;
			return -1;
		}
	}
	return layout_wait(pid, lim, cancel);
}

static int spawn_wait_ms(char *const argv[], const char *log, uint32_t timeout_ms,
			 const atomic_int *cancel)
{
	struct layout_spawn_limits lim = { .wall_ms = timeout_ms };
	return spawn_wait(argv, log, &lim, cancel);
}

int layout_spawn_wait(char *const argv[], const char *log, const struct layout_spawn_limits *lim,
		      const atomic_int *cancel)
{
	return spawn_wait(argv, log, lim, cancel);
}

/* Last `max` bytes of a file, as one line, for error messages. */
static void log_tail(const char *path, char *out, size_t max)
{
	out[0] = '\0';
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, len > (long)max - 1 ? len - (long)max + 1 : 0, SEEK_SET);
	size_t n = fread(out, 1, max - 1, f);
	out[n] = '\0';
	fclose(f);
	for (size_t i = 0; i < n; i++)
		if (out[i] == '\n')
			out[i] = i + 1 < n ? ' ' : '\0';
}

static int bolt_has_custom_vma(const char *path, const char *dir)
{
	char tmpl[PATH_MAX];
	snprintf(tmpl, sizeof(tmpl), "%s/bolt-help.txt", dir);
	char *argv[] = { (char *)path, "--help-hidden", NULL };
	int st = spawn_wait_ms(argv, tmpl, 20000, NULL);
	int ok = 0;
	FILE *f = fopen(tmpl, "re");
	if (f && st >= 0) {
		char line[512];
		while (!ok && fgets(line, sizeof(line), f))
			ok = strstr(line, "--custom-allocation-vma") != NULL;
	}
	if (f)
		fclose(f);
	unlink(tmpl);
	return ok;
}

int layout_bolt_probe(const char *hint, const char *dir, char *out, struct core_err *err)
{
	int custom;
	return layout_bolt_probe_for(hint, dir, EM_X86_64, out, &custom, err);
}

/* AArch64: a BOLT without --custom-allocation-vma places new code after
 * the image (reserved early, inject/reserve.c). Which BOLT handles
 * AArch64 inputs cannot be told from its help text: BOLT 22 crashed on
 * every AArch64 input tried here and BOLT 19 did not, so 19 is tried
 * first; opts.bolt_path overrides. */
static int probe_aarch64(const char *hint, const char *dir, char *out, int *custom_vma,
			 struct core_err *err)
{
	static const char *const known[] = { "/usr/lib/llvm-19/bin/llvm-bolt",
		"/usr/lib/llvm-20/bin/llvm-bolt", "/usr/lib/llvm-21/bin/llvm-bolt",
		"/usr/lib/llvm-22/bin/llvm-bolt", NULL };
	for (size_t i = 0; hint ? i < 1 : known[i] != NULL; i++) {
		const char *c = hint ? hint : known[i];
		if (access(c, X_OK) != 0)
			continue;
		*custom_vma = bolt_has_custom_vma(c, dir);
		snprintf(out, PATH_MAX, "%s", c);
		return 0;
	}
	return core_errf(err, OCOLOS_ENOBOLT, hint
			 ? "llvm-bolt '%s' does not exist or is not executable; fix opts.bolt_path (the tools' --bolt) "
			   "or leave it NULL and install Debian's bolt-19 (apt-get install bolt-19)"
			 : "no llvm-bolt found in /usr/lib/llvm-{19,20,21,22}/bin for this AArch64 "
			   "program%s; install Debian's bolt-19 (apt-get install bolt-19) or set "
			   "opts.bolt_path (the tools' --bolt)", hint ? hint : "");
}

int layout_bolt_probe_for(const char *hint, const char *dir, uint16_t machine, char *out,
			  int *custom_vma, struct core_err *err)
{
	if (machine == EM_AARCH64)
		return probe_aarch64(hint, dir, out, custom_vma, err);
	*custom_vma = 1;
	static const char *const known[] = { "/usr/lib/llvm-22/bin/llvm-bolt",
		"/usr/lib/llvm-21/bin/llvm-bolt", "/usr/lib/llvm-20/bin/llvm-bolt", NULL };
	const char *cands[8];
	size_t nc = 0;
	char pathbuf[PATH_MAX];
	if (hint) {
		cands[nc++] = hint;
	} else {
		for (size_t i = 0; known[i]; i++)
			cands[nc++] = known[i];
		const char *p = getenv("PATH");
		while (p && *p && nc < 7) { /* first llvm-bolt on $PATH */
			const char *e = strchr(p, ':');
			size_t l = e ? (size_t)(e - p) : strlen(p);
			if (l && l + 12 < sizeof(pathbuf)) {
				snprintf(pathbuf, sizeof(pathbuf), "%.*s/llvm-bolt", (int)l, p);
				if (access(pathbuf, X_OK) == 0) {
					cands[nc++] = pathbuf;
					break;
				}
			}
			p = e ? e + 1 : NULL;
		}
	}
	const char *found_old = NULL; /* named in the message: which one is too old */
	for (size_t i = 0; i < nc; i++) {
		if (access(cands[i], X_OK) != 0)
			continue;
		if (!bolt_has_custom_vma(cands[i], dir)) {
			if (!found_old)
				found_old = cands[i];
			continue;
		}
		snprintf(out, PATH_MAX, "%s", cands[i]);
		return 0;
	}
	if (hint && !found_old)
		return core_errf(err, OCOLOS_ENOBOLT,
				 "llvm-bolt '%s' does not exist or is not executable; fix opts.bolt_path (the tools' --bolt) "
				 "or leave it NULL and install Debian's bolt-22 (apt-get install bolt-22)", hint);
	if (found_old)
		return core_errf(err, OCOLOS_ENOBOLT,
				 "'%s'%s lacks --custom-allocation-vma (BOLT 20 or newer is needed); "
				 "install Debian's bolt-22 (apt-get install bolt-22) or set opts.bolt_path (the tools' --bolt)",
				 found_old, hint ? "" : " (the first llvm-bolt in /usr/lib/llvm-{22,21,20}/bin "
							"and $PATH)");
	return core_errf(err, OCOLOS_ENOBOLT,
			 "no llvm-bolt found in /usr/lib/llvm-*/bin or $PATH; install Debian's bolt-22 "
			 "(apt-get install bolt-22) or set opts.bolt_path (the tools' --bolt)");
}

/* Turn a spawn_wait() status into 0 or a named error. */
static int bolt_status(const struct layout_request *req, int st, const char *log,
		       struct core_err *err)
{
	if (st == -3)
		return core_errf(err, OCOLOS_ECANCELED,
				 "canceled (ocolos_cancel) while llvm-bolt ran on '%s'; it was killed "
				 "and the round abandoned", req->binary);
	if (st == -2)
		return core_errf(err, OCOLOS_ETIMEDOUT,
				 "llvm-bolt did not finish within %u ms and was killed; raise "
				 "opts.bolt_timeout_ms (the tools' --bolt-timeout; large binaries take "
				 "minutes)", req->timeout_ms);
	if (st == -1)
		return core_errf(err, OCOLOS_ENOBOLT, "cannot run '%s': %s", req->bolt_path, strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char tail[400];
		log_tail(log, tail, sizeof(tail));
		/* A crash used to read "killed by signal 11 ...; its output
		 * ends: " and nothing: name the signal, say there was no output. */
		char sig[64] = "";
		if (!WIFEXITED(st))
			snprintf(sig, sizeof(sig), " (%s)", strsignal(WTERMSIG(st)));
		return core_errf(err, OCOLOS_EBOLT, "llvm-bolt %s %d%s on '%s'; %s%s",
				 WIFEXITED(st) ? "exited with status" : "was killed by signal",
				 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), sig, req->binary,
				 tail[0] ? "its output ends: " : "it printed nothing", tail);
	}
	return 0;
}

/*
 * Basic (IP) samples go through BOLT's aggregation first: one llvm-bolt
 * call with `--pa --ba -p` attaches them to functions only (BOLT 22 leaves
 * every block count unknown), while `--aggregate-only` writes the fdata
 * perf2bolt would, from which the layout run gets real block counts.
 */
static int aggregate(const struct layout_request *req, char *fdata, uint64_t deadline_ns,
		     struct core_err *err)
{
	char prof[PATH_MAX + 8], out[PATH_MAX + 8], log[PATH_MAX + 32];
	/* Its own log beside the layout run's, which would overwrite it. */
	const char *slash = req->log_path ? strrchr(req->log_path, '/') : NULL;
	if (slash)
		snprintf(log, sizeof(log), "%.*s/bolt-aggregate.log", (int)(slash - req->log_path),
			 req->log_path);
	else
		snprintf(log, sizeof(log), "%s", req->log_path ? req->log_path : "/dev/null");
	snprintf(fdata, PATH_MAX, "%s.fdata", req->profile);
	snprintf(prof, sizeof(prof), "-p=%s", req->profile);
	snprintf(out, sizeof(out), "-o=%s", fdata);
	const char *argv[] = { req->bolt_path, req->binary, "--aggregate-only", "--pa", "--ba",
		prof, out, NULL };
	uint64_t now = core_now_ns();
	uint32_t left = deadline_ns > now ? (uint32_t)((deadline_ns - now) / 1000000) : 0;
	int st = spawn_wait_ms((char *const *)argv, log, left, req->cancel);
	/* BOLT 19 (the AArch64 BOLT here) has no --ba, and its pre-aggregated
	 * reader takes only B/F records (its --nl refuses S lines): it cannot
	 * take bare samples this way at all. */
	char tail[400];
	if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0) {
		log_tail(log, tail, sizeof(tail));
		if (strstr(tail, "Unknown command line argument '--ba'"))
			return core_errf(err, OCOLOS_ENOTSUP,
					 "llvm-bolt '%s' cannot read bare IP samples (no --ba; BOLT 19's "
					 "pre-aggregated reader takes branch records only): use the default "
					 "edges (opts.edges = OCOLOS_EDGES_AUTO or OCOLOS_EDGES_HYBRID)",
					 req->bolt_path);
	}
	return bolt_status(req, st, log, err);
}

/*
 * A BOLT without --custom-allocation-vma puts new code at the end of the
 * highest PT_LOAD (p_vaddr + p_memsz), aligned up (inject/reserve.c). A
 * copy whose highest PT_LOAD's p_memsz reaches `vma` gets its new code at
 * `vma`: more zero-fill at the end of the image changes no byte BOLT
 * disassembles, relocates or maps a profile to. Only the program header
 * changes; section headers, symbols, build-id and code stay as they are.
 */
int layout_bolt_run(const struct layout_request *req, uint64_t *elapsed_ns,
		    struct core_err *err)
{
	char vma[64], data[2 * PATH_MAX], outarg[PATH_MAX + 8], fdata[PATH_MAX];
	uint64_t t0 = core_now_ns(), deadline = t0 + (uint64_t)req->timeout_ms * 1000000ull;
	int rc = 0;
	if (req->basic_samples && req->fdata_ready)
		snprintf(fdata, sizeof(fdata), "%s.fdata", req->profile);
	else if (req->basic_samples)
		rc = aggregate(req, fdata, deadline, err);
	if (rc) {
		*elapsed_ns = core_now_ns() - t0;
		return rc;
	}
	snprintf(vma, sizeof(vma), "--custom-allocation-vma=0x%llx",
		 (unsigned long long)req->alloc_vma);
	if (req->basic_samples)
		snprintf(data, sizeof(data), "-data=%s", fdata);
	else
		snprintf(data, sizeof(data), "-p=%s", req->profile);
	snprintf(outarg, sizeof(outarg), "-o=%s", req->output);
	/* Without --custom-allocation-vma (BOLT 19), new code goes right after
	 * the image, into the range reserved early for it (inject/reserve.c). */
	static const char *const common[] = { "--enable-bat", "--lite",
		"--reorder-blocks=ext-tsp", "--reorder-functions=cdsort",
		"--jump-tables=move", "--no-huge-pages", NULL };
	const char *argv[MAX_ARGS] = { req->bolt_path, req->binary, outarg, data, NULL };
	size_t n = 4;
	if (!req->basic_samples)
		argv[n++] = "--pa"; /* our branch records, read directly */
	if (!req->self_placed)
		argv[n++] = vma;
	for (size_t i = 0; common[i]; i++)
		argv[n++] = common[i];
	if (!req->no_split)
		argv[n++] = "--split-functions";
	if (req->keep_nops)
		argv[n++] = "--keep-nops";
	for (size_t i = 0; req->extra_args && req->extra_args[i]; i++) {
		if (n + 1 >= MAX_ARGS)
			return core_errf(err, OCOLOS_EINVAL, "too many extra BOLT arguments");
		argv[n++] = req->extra_args[i];
	}
	argv[n] = NULL;
	if (req->args_out && req->args_out_size) {
		size_t k = 0, i;
		req->args_out[0] = '\0';
		for (i = 2; i < n && k + 1 < req->args_out_size; i++)
			k += (size_t)snprintf(req->args_out + k, req->args_out_size - k, "%s%s",
					      i > 2 ? " " : "", argv[i]);
		/* A record cut short says so: an artifact's reader must not
		 * take it for the whole command. */
		if ((k >= req->args_out_size || i < n) && req->args_out_size > 4)
			memcpy(req->args_out + req->args_out_size - 5, " ...", 5);
	}
	uint64_t now = core_now_ns();
	uint32_t left = deadline > now ? (uint32_t)((deadline - now) / 1000000) : 0;
	int st = spawn_wait_ms((char *const *)argv, req->log_path, left, req->cancel);
	*elapsed_ns = core_now_ns() - t0;
	if ((rc = bolt_status(req, st, req->log_path, err)))
		return rc;
	struct stat sb;
	if (stat(req->output, &sb) != 0)
		return core_errf(err, OCOLOS_EBOLT, "llvm-bolt succeeded but wrote no '%s'", req->output);
	return 0;
}

void layout_bolt_version(const char *bolt_path, const char *dir, char *out, size_t size)
{
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/bolt-version.txt", dir);
	char *argv[] = { (char *)bolt_path, "--version", NULL };
	int st = spawn_wait_ms(argv, log, 20000, NULL);
	snprintf(out, size, "unknown");
	FILE *f = st >= 0 ? fopen(log, "re") : NULL;
	size_t k = 0;
	char line[256];
	/* "Debian LLVM version 22.1.8", "BOLT revision <unknown>" */
	while (f && fgets(line, sizeof(line), f) && k + 1 < size) {
		line[strcspn(line, "\n")] = '\0';
		const char *t = line + strspn(line, " ");
		if (strstr(t, "LLVM version") || strstr(t, "BOLT revision"))
			k += (size_t)snprintf(out + k, size - k, "%s%s", k ? "; " : "", t);
	}
	if (f)
		fclose(f);
	unlink(log);
}

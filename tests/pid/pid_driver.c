/*
 * Driver of the pid-mode integration and fault tests. It links the shared
 * libocolos (as an agent or supervisor does) and works on target programs
 * that do not (pid_target, pid_target_cxx): it starts them, optimizes them
 * through the public API or through the ocolos-agent / ocolos-supervise
 * tools, and judges them only from outside — /proc, their output, their
 * exit status.
 *
 *   pid_driver round TARGET              two rounds (ocolos_round, then the
 *                                        three stages), where / revert /
 *                                        reapply, output as unoptimized
 *   pid_driver seize TARGET              target held by another tracer
 *                                        (PTRACE_SEIZE) -> OCOLOS_EATTACH
 *   pid_driver traceme TARGET            target started under PTRACE_TRACEME
 *                                        by a helper -> OCOLOS_EATTACH
 *   pid_driver gone TARGET               pid that exited -> OCOLOS_ENOPROC at open
 *   pid_driver exiting TARGET            target exits during the profile
 *                                        window -> OCOLOS_ENOPROC (reaped
 *                                        at once by its parent)
 *   pid_driver exiting-zombie TARGET     the same, but we are the parent and
 *                                        it stays a zombie until the round
 *                                        ends -> OCOLOS_ENOPROC
 *   pid_driver norelocs TARGET_NORELOCS  -> OCOLOS_ENORELOCS before sampling
 *   pid_driver stale TARGET OTHER        binary deleted and replaced on disk
 *                                        (binary_path = its name), or
 *                                        binary_path naming another file
 *                                        -> OCOLOS_ESTALE; by default the
 *                                        deleted original is used: success
 *   pid_driver boltfail TARGET SCRIPT    -> OCOLOS_EBOLT
 *   pid_driver reserve TARGET            target fills the 2 GiB above its
 *                                        image -> OCOLOS_ERESERVE
 *   pid_driver artifact TARGET           opts.artifact_out on one process,
 *                                        artifact_in on a second (no BOLT
 *                                        run, C1 at the same offset, output
 *                                        as unoptimized); on a third whose
 *                                        range is taken -> OCOLOS_ETAKEN, an
 *                                        altered copy -> OCOLOS_EBADARTIFACT,
 *                                        one others may write ->
 *                                        OCOLOS_EUNTRUSTED, each leaving C0
 *                                        and the address space as they were
 *   pid_driver agent TARGET AGENT        ocolos-agent --pid, JSON "ok":true
 *   pid_driver agent-kill TARGET AGENT   SIGKILL the agent at random moments
 *   pid_driver agent-die-at TARGET AGENT POINT[:N][,...]  the agent
 *                                        SIGKILLed at each named point of its
 *                                        rounds in turn (the N-th time it gets
 *                                        there; OCOLOS_TEST_KILL_AT); after
 *                                        each, the next agent's rounds succeed
 *                                        and the target lives on
 *   pid_driver agent-cancel TARGET AGENT SCRIPT  SIGINT to the agent while it
 *                                        samples, SIGTERM while llvm-bolt
 *                                        (SCRIPT, which hangs) runs: exit
 *                                        130 / 143, an ECANCELED report, no
 *                                        reservation, work dir or BOLT left
 *   pid_driver continue TARGET           rounds by successive agents (each a
 *                                        new process): each continues from
 *                                        the state record in the target
 *                                        (next generation, older version
 *                                        retired), revert and retire to C0,
 *                                        a record overwritten with garbage
 *                                        (the other one is used), both
 *                                        overwritten -> OCOLOS_ESTATE
 *   pid_driver kill-continue TARGET N    N agents in turn run continuous
 *                                        rounds and are SIGKILLed at a
 *                                        seeded random moment; each next
 *                                        agent's first round succeeds
 *   pid_driver supervise TARGET SUPERVISE  ocolos-supervise end to end:
 *                                        JSON line, signal forwarding, exit
 *                                        status of the child
 *   pid_driver supervise-round TARGET SUPERVISE  its first case only: one
 *                                        round, samples in C1, SIGTERM, the
 *                                        child's output and exit status
 *
 * After every fault the target must run its original code unchanged (C0
 * bytes hashed through /proc/PID/mem before and after, no anonymous
 * executable mapping left), must not be stopped or traced (TracerPid 0),
 * must keep making progress, and must print what an unoptimized run prints
 * (its laps all matched); and no child of ours may be left (no zombie).
 *
 * Environment: OCOLOS_TEST_SCALE (default 1) multiplies the waits and time
 * limits (the AArch64 guest runs under emulation, scripts/a64vm.sh:
 * tests/aarch64 sets it); OCOLOS_TEST_KILLS (default 10) is how many times
 * agent-kill kills the agent; OCOLOS_TEST_SEED repeats an agent-kill run.
 *
 * Exit 0 pass, 1 fail, 77 skip (no perf_event access).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* Time a started target gets before it is measured or attached to, scaled:
 * an emulated C++ target is still in the dynamic linker and libstdc++'s
 * start-up after 1 s (1.4% of its samples in the binary, against ~18%
 * once it runs its loop). */
#define WARMUP_MS scaled(1000)

static char tmpdir[512]; /* short: paths under it fit PATH_MAX */
static unsigned scale = 1; /* OCOLOS_TEST_SCALE */

/* A wait or time limit of `ms` on a machine `scale` times slower. */
static unsigned scaled(unsigned ms)
{
	return ms * scale;
}

/* 1 s scaled, as a tool's seconds argument ("1", "4"). */
static char scale_s[16] = "1";

/* A target process we started, with its stdout in a file. */
struct tgt {
	pid_t pid;
	char out[PATH_MAX];
};

static void cleanup_tmp(void)
{
	char cmd[PATH_MAX + 16];
	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
}

/* Start argv with stdin from /dev/null, stdout into `out` and stderr into
 * `err` (NULL: ours). A target never gets the sanitizer runtime this driver
 * may run with (LD_PRELOAD); the tools, which link the instrumented
 * library, keep it. */
static pid_t spawn_as(char *const argv[], const char *out, const char *err, int is_target)
{
	pid_t pid = fork();
	check(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (in < 0 || fd < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0)
			_exit(126);
		int efd = err ? open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600) : 2;
		if (efd < 0 || dup2(efd, 2) < 0)
			_exit(126);
		signal(SIGALRM, SIG_DFL);
		/* Nothing we start may outlive a failed driver (ctest would wait
		 * for it, and it would run forever). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (is_target)
			unsetenv("LD_PRELOAD");
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static pid_t spawn(char *const argv[], const char *out)
{
	return spawn_as(argv, out, NULL, 1);
}

static pid_t spawn_tool(char *const argv[], const char *out)
{
	return spawn_as(argv, out, NULL, 0);
}

/* Wait for `pid` to end; stops reported to us as its tracer are skipped. */
static int wait_end(pid_t pid)
{
	for (;;) {
		int st;
		pid_t w = waitpid(pid, &st, 0);
		if (w == pid && (WIFEXITED(st) || WIFSIGNALED(st)))
			return st;
		check(w == pid || errno == EINTR,
		      "waitpid(%d): %s — was our child reaped by someone else (the library)?",
		      (int)pid, strerror(errno));
	}
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f && errno == ENOENT)
		return calloc(1, 1); /* not created yet by a child just started */
	check(f != NULL, "open %s: %s", path, strerror(errno));
	char *buf = calloc(1, 1 << 16);
	check(buf != NULL, "calloc");
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void describe_status(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit %d", WEXITSTATUS(st));
	else
		snprintf(buf, n, "killed by signal %d", WTERMSIG(st));
}

/* What the target prints when nothing is done to it (it runs 1 ms). */
static char *reference(const char *target)
{
	char out[PATH_MAX];
	snprintf(out, sizeof(out), "%s/ref.out", tmpdir);
	char *argv[] = { (char *)target, (char *)"--exit-after", (char *)"1", NULL };
	int st = wait_end(spawn(argv, out));
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reference run of %s failed", target);
	char *s = slurp(out);
	check(test_contains(s, "ok\n"), "reference run printed no 'ok': %s", s);
	return s;
}

static void start_target(struct tgt *t, const char *target, const char *extra1,
			 const char *extra2)
{
	static int n;
	snprintf(t->out, sizeof(t->out), "%s/target%d.out", tmpdir, n++);
	char *argv[] = { (char *)target, (char *)extra1, (char *)extra2, NULL };
	t->pid = spawn(argv, t->out);
	fprintf(stderr, "started %s (pid %d)\n", target, (int)t->pid);
}

/* ---- the target seen from /proc ------------------------------------------ */

/* Value of `key` in /proc/PID/status ("" if absent). */
static void status_field(pid_t pid, const char *key, char *val, size_t n)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	val[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			char *v = line + kl + 1;
			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = '\0';
			snprintf(val, n, "%s", v);
			break;
		}
	}
	fclose(f);
}

static int tracer_of(pid_t pid)
{
	char v[64];
	status_field(pid, "TracerPid", v, sizeof(v));
	return atoi(v);
}

/* utime + stime of the whole process, clock ticks. */
static unsigned long long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long long ut = 0, stt = 0;
	/* after ")": state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime */
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) == 2)
		return ut + stt;
	return 0;
}

/* For a failure message: whether the target died (it stays our zombie, so
 * /proc still shows it and the checks above pass) and, if not, the state,
 * wait channel and system call of each of its threads. */
static void describe_target(pid_t pid, char *buf, size_t n)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	size_t k = 0;
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
		snprintf(buf, n, "it has ended (%s %d)",
			 si.si_code == CLD_EXITED ? "exit" : "killed by signal", si.si_status);
		return;
	}
	char path[96];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	struct dirent *e;
	buf[0] = '\0';
	while (d && (e = readdir(d)) && k + 1 < n) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0)
			continue;
		char st[64] = "?", wchan[64] = "?", sc[128] = "?";
		const char *names[3] = { "stat", "wchan", "syscall" };
		char *vals[3] = { st, wchan, sc };
		size_t sizes[3] = { sizeof(st), sizeof(wchan), sizeof(sc) };
		for (int i = 0; i < 3; i++) {
			snprintf(path, sizeof(path), "/proc/%d/task/%d/%s", (int)pid, (int)tid, names[i]);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			char line[1024];
			size_t m = fread(line, 1, sizeof(line) - 1, f);
			fclose(f);
			line[m] = '\0';
			line[strcspn(line, "\n")] = '\0';
			const char *v = line;
			if (i == 0 && strrchr(line, ')')) /* only the state letter */
				snprintf(st, sizeof(st), "%c", strrchr(line, ')')[2]);
			else
				snprintf(vals[i], sizes[i], "%s", v);
		}
		k += (size_t)snprintf(buf + k, n - k, "[tid %d state %s wchan %s syscall %s] ",
				      (int)tid, st, wchan, sc);
	}
	if (d)
		closedir(d);
}

/* Not stopped (in any thread), not traced, and burning CPU: the target
 * runs freely. A tracer that died is detached by the kernel before its
 * exit is reported, so no grace period is needed for TracerPid. */
static void check_free(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	check(d != NULL, "process %d is gone", (int)pid);
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		char st[300], tp[300], full[96];
		if (tid <= 0)
			continue;
		snprintf(full, sizeof(full), "/proc/%d/task/%d/status", (int)pid, (int)tid);
		FILE *f = fopen(full, "r");
		st[0] = tp[0] = '\0';
		if (f) {
			char line[256];
			while (fgets(line, sizeof(line), f)) {
				if (!strncmp(line, "State:", 6))
					snprintf(st, sizeof(st), "%s", line + 7);
				if (!strncmp(line, "TracerPid:", 10))
					snprintf(tp, sizeof(tp), "%s", line + 11);
			}
			fclose(f);
		}
		check(!strchr(st, 't') && !strchr(st, 'T'),
		      "thread %d of process %d is stopped: State %s", (int)tid, (int)pid, st);
		check(atoi(tp) == 0, "thread %d of process %d is still traced by %d", (int)tid,
		      (int)pid, atoi(tp));
	}
	closedir(d);
	unsigned long long c0 = cpu_ticks(pid);
	test_sleep_ms(400);
	unsigned long long c1 = cpu_ticks(pid);
	char why[2048] = "";
	if (c1 < c0 + 5)
		describe_target(pid, why, sizeof(why));
	check(c1 >= c0 + 5, "process %d makes no progress (%llu -> %llu CPU ticks in 400 ms): %s",
	      (int)pid, c0, c1, why);
}

/* FNV-1a over the executable mappings of the target's own binary: equal
 * before and after a failed round means C0 was not patched. */
static uint64_t text_hash(pid_t pid)
{
	char path[64], exe[PATH_MAX], line[PATH_MAX + 128];
	uint64_t h = 0xcbf29ce484222325ULL;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	check(n > 0, "readlink %s", path);
	exe[n] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int mem = open(path, O_RDONLY);
	check(f && mem >= 0, "cannot read the memory of %d", (int)pid);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		char perms[8];
		char *p = strchr(line, '/');
		if (!p || sscanf(line, "%llx-%llx %7s", &s, &e, perms) != 3 || perms[2] != 'x')
			continue;
		p[strcspn(p, "\n")] = '\0';
		if (strcmp(p, exe))
			continue;
		static unsigned char buf[1 << 16];
		for (unsigned long long a = s; a < e; a += sizeof(buf)) {
			size_t len = e - a < sizeof(buf) ? (size_t)(e - a) : sizeof(buf);
			check(pread(mem, buf, len, (off_t)a) == (ssize_t)len, "pread mem");
			for (size_t i = 0; i < len; i++)
				h = (h ^ buf[i]) * 0x100000001b3ULL;
		}
	}
	fclose(f);
	close(mem);
	return h;
}

/* Executable mappings backed by no file: where C1 would be. */
static unsigned anon_exec(pid_t pid)
{
	char path[64], line[PATH_MAX + 128];
	unsigned n = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	check(f != NULL, "open %s", path);
	while (fgets(line, sizeof(line), f)) {
		char perms[8];
		if (sscanf(line, "%*x-%*x %7s", perms) == 1 && perms[2] == 'x' &&
		    !strchr(line, '/') && !strstr(line, "[vdso]") && !strstr(line, "[vsyscall]"))
			n++;
	}
	fclose(f);
	return n;
}

/* Fail if any process has us as parent (running or zombie). */
static void check_no_children(void)
{
	DIR *d = opendir("/proc");
	check(d != NULL, "opendir /proc");
	struct dirent *e;
	pid_t self = getpid();
	while ((e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);
		char v[32];
		if (pid <= 0)
			continue;
		status_field(pid, "PPid", v, sizeof(v));
		if (atoi(v) == self) {
			char st[64];
			status_field(pid, "State", st, sizeof(st));
			check(0, "child %d is left behind (State %s)", (int)pid, st);
		}
	}
	closedir(d);
}

/* SIGTERM the target, reap it, and require exit `want` and the reference
 * output (every lap matched, final checksums as without optimization). */
static void finish(struct tgt *t, const char *ref, int want)
{
	char how[64];
	kill(t->pid, SIGTERM);
	int st = wait_end(t->pid);
	describe_status(st, how, sizeof(how));
	char *out = slurp(t->out);
	check(WIFEXITED(st) && WEXITSTATUS(st) == want, "target %d: %s, want exit %d; stdout:\n%s",
	      (int)t->pid, how, want, out);
	check(!strcmp(out, ref), "target output differs from an unoptimized run:\n%s--- want:\n%s",
	      out, ref);
	free(out);
}

/* Everything a fault must leave intact, then the target's end. */
static void after_fault(struct tgt *t, uint64_t hash_before, const char *ref)
{
	check_free(t->pid);
	check(text_hash(t->pid) == hash_before, "the target's code (C0) changed although the round failed");
	check(anon_exec(t->pid) == 0, "a failed round left an executable mapping in the target");
	finish(t, ref, 0);
	check_no_children();
}

static void expect_rc(int rc, int want, const struct ocolos_ctx *ctx)
{
	const char *msg = ocolos_last_error(ctx);
	fprintf(stderr, "  -> %d %s: %s\n", rc, ocolos_strerror(rc), msg);
	check(rc == want, "got %d (%s), want %d (%s): %s", rc, ocolos_strerror(rc), want,
	      ocolos_strerror(want), msg);
	check(msg && msg[0], "no message for %s", ocolos_strerror(rc));
}

static struct ocolos_ctx *open_ctx(pid_t pid, const struct ocolos_opts *o)
{
	struct ocolos_ctx *ctx = NULL;
	int rc = ocolos_open_pid(pid, o, &ctx);
	check(rc == 0 && ctx, "ocolos_open_pid(%d): %d %s", (int)pid, rc, ocolos_strerror(rc));
	return ctx;
}

/* ---- round: the whole API on a healthy target ---------------------------- */

static void where(struct ocolos_ctx *ctx, struct ocolos_where_result *w, const char *when)
{
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = scaled(1000), .sample_hz = 2000);
	memset(w, 0, sizeof(*w));
	w->sz = sizeof(*w);
	int rc = ocolos_where(ctx, &wo, w);
	check(rc == 0, "ocolos_where: %d %s: %s", rc, ocolos_strerror(rc), ocolos_last_error(ctx));
	fprintf(stderr, "  where %-14s samples %llu: C0 %llu, C1 %llu, elsewhere %llu\n", when,
		(unsigned long long)w->samples, (unsigned long long)w->in_original,
		(unsigned long long)w->in_optimized, (unsigned long long)w->elsewhere);
	check(w->in_original + w->in_optimized >= 200 / scale,
	      "only %llu samples in the binary (%s)",
	      (unsigned long long)(w->in_original + w->in_optimized), when);
}

static void check_stats(int rc, const struct ocolos_stats *st, struct ocolos_ctx *ctx)
{
	test_print_stats(rc, st);
	check(rc == 0, "round failed: %d %s: %s", rc, ocolos_strerror(rc), ocolos_last_error(ctx));
	check(st->samples_in_binary > 0, "no samples in the binary");
	check(st->functions_moved > 0, "no function moved");
	check(st->c1_bytes > 0 && st->c1_addr, "no C1 mapped");
	/* Calls reach C1 through entries; call sites only from code that
	 * stays in C0 (inject/plan.c), which a small program may not have. */
	check(st->entries_patched + st->call_sites_patched > 0, "no entry or call site patched");
	/* main thread + 2 workers */
	check(st->threads_stopped >= 3, "only %u threads stopped", st->threads_stopped);
	check(st->pause_ns > 0 && st->pause_ns < 2000000000ull, "pause %llu ns",
	      (unsigned long long)st->pause_ns);
	check(st->bolt_ns > 0, "no BOLT time");
}

static void mode_round(const char *target)
{
	char *ref = reference(target);
	struct tgt t;
	OCOLOS_OPTS(ocolos_stats, st);
	OCOLOS_OPTS(ocolos_where_result, w);
	OCOLOS_OPTS(ocolos_switch_stats, sw);
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = scaled(1500), .log_fn = test_log);
	struct ocolos_ctx *ctx = open_ctx(t.pid, &o);

	/* Round 1, all at once. */
	int rc = ocolos_round(ctx, &st);
	check_stats(rc, &st, ctx);
	check_free(t.pid);
	where(ctx, &w, "after round 1");
	check(w.in_optimized > w.in_original, "most samples are not in C1 after the round");

	/* Revert: calls lead to C0 again; threads leave C1 as their calls return. */
	rc = ocolos_revert(ctx, &sw);
	check(rc == 0 && sw.call_sites + sw.entries > 0 && sw.mismatched == 0,
	      "revert: %d %s (%u sites, %u entries, %u mismatched): %s", rc, ocolos_strerror(rc),
	      sw.call_sites, sw.entries, sw.mismatched, ocolos_last_error(ctx));
	where(ctx, &w, "after revert");
	check(w.in_optimized * 50 <= w.in_original,
	      "after the revert %llu samples are still in C1 (C0: %llu)",
	      (unsigned long long)w.in_optimized, (unsigned long long)w.in_original);
	check(ocolos_revert(ctx, NULL) == OCOLOS_EINVAL, "a second revert must be refused");

	rc = ocolos_reapply(ctx, &sw);
	check(rc == 0 && sw.call_sites + sw.entries > 0 && sw.mismatched == 0, "reapply: %d %s: %s", rc,
	      ocolos_strerror(rc), ocolos_last_error(ctx));
	where(ctx, &w, "after reapply");
	check(w.in_optimized > w.in_original, "most samples are not in C1 after the reapply");

	/* A new round from the original code, stage by stage; a stage out of
	 * order is refused and abandons nothing. */
	check(ocolos_revert(ctx, NULL) == 0, "revert before round 2: %s", ocolos_last_error(ctx));
	check(ocolos_stage_optimize(ctx, NULL) == OCOLOS_EINVAL, "optimize before profile must fail");
	rc = ocolos_stage_profile(ctx, &st);
	check(rc == 0, "profile: %d %s", rc, ocolos_last_error(ctx));
	check(st.samples_in_binary > 0, "profile stage: no samples in the binary");
	check(ocolos_stage_replace(ctx, NULL) == OCOLOS_EINVAL, "replace before optimize must fail");
	rc = ocolos_stage_optimize(ctx, &st);
	check(rc == 0, "optimize: %d %s", rc, ocolos_last_error(ctx));
	check(st.functions_moved > 0, "optimize stage: nothing moved");
	rc = ocolos_stage_replace(ctx, &st);
	check_stats(rc, &st, ctx);
	where(ctx, &w, "after round 2");
	check(w.in_optimized > w.in_original, "most samples are not in C1 after round 2");

	ocolos_close(ctx);
	check_free(t.pid);
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

/* ---- faults ------------------------------------------------------------- */

/* Run a round expecting `want`; return the round's wall time, ms. */
static uint64_t failing_round(pid_t pid, const struct ocolos_opts *o, int want)
{
	struct ocolos_ctx *ctx = NULL;
	OCOLOS_OPTS(ocolos_stats, st);
	uint64_t t0 = test_now_ms();
	int rc = ocolos_open_pid(pid, o, &ctx);
	if (rc == 0) {
		rc = ocolos_round(ctx, &st);
		expect_rc(rc, want, ctx);
		ocolos_close(ctx);
	} else {
		/* the reason went to the log callback */
		fprintf(stderr, "  open -> %d %s\n", rc, ocolos_strerror(rc));
		check(rc == want, "open: %d (%s), want %s", rc, ocolos_strerror(rc), ocolos_strerror(want));
	}
	return test_now_ms() - t0;
}

/* Another process holds the target with PTRACE_SEIZE (a debugger). */
static void mode_seize(const char *target)
{
	char *ref = reference(target);
	struct tgt t;
	int p[2];
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(300);
	check(pipe(p) == 0, "pipe");
	pid_t helper = fork();
	check(helper >= 0, "fork");
	if (helper == 0) {
		/* Seize every thread, as a debugger would; PTRACE_SEIZE does not
		 * stop them. */
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/task", (int)t.pid);
		DIR *d = opendir(path);
		struct dirent *e;
		int ok = d != NULL;
		while (d && (e = readdir(d)))
			if (atoi(e->d_name) > 0)
				ok &= ptrace(PTRACE_SEIZE, atoi(e->d_name), 0, 0) == 0;
		if (write(p[1], ok ? "y" : "n", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char c = 0;
	check(read(p[0], &c, 1) == 1 && c == 'y', "the helper could not seize the target");
	check(tracer_of(t.pid) == helper, "TracerPid %d, want the helper %d", tracer_of(t.pid),
	      (int)helper);
	uint64_t h = text_hash(t.pid);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 500, .log_fn = test_log);
	failing_round(t.pid, &o, OCOLOS_EATTACH);
	check(tracer_of(t.pid) == helper, "the other tracer lost the target");
	kill(helper, SIGKILL);
	wait_end(helper);
	close(p[0]);
	close(p[1]);
	after_fault(&t, h, ref);
	free(ref);
}

/*
 * The target is started by a helper that traces it from the first
 * instruction (PTRACE_TRACEME, as strace or gdb do) and passes its signals
 * on. The helper exits with the target's status.
 */
static void mode_traceme(const char *target)
{
	char *ref = reference(target);
	struct tgt t;
	int p[2];
	snprintf(t.out, sizeof(t.out), "%s/traced.out", tmpdir);
	check(pipe(p) == 0, "pipe");
	pid_t helper = fork();
	check(helper >= 0, "fork");
	if (helper == 0) {
		char *argv[] = { (char *)target, NULL };
		pid_t gc = fork();
		if (gc == 0) {
			ptrace(PTRACE_TRACEME, 0, 0, 0);
			int in = open("/dev/null", O_RDONLY);
			int fd = open(t.out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (in < 0 || fd < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0)
				_exit(126);
			signal(SIGALRM, SIG_DFL);
			unsetenv("LD_PRELOAD");
			execv(target, argv);
			_exit(127);
		}
		if (write(p[1], &gc, sizeof(gc)) != sizeof(gc))
			_exit(1);
		for (;;) {
			int st;
			if (waitpid(gc, &st, 0) != gc)
				_exit(1);
			if (WIFEXITED(st))
				_exit(WEXITSTATUS(st));
			if (WIFSIGNALED(st))
				_exit(128 + WTERMSIG(st));
			int sig = WSTOPSIG(st);
			ptrace(PTRACE_CONT, gc, 0, (void *)(long)(sig == SIGTRAP ? 0 : sig));
		}
	}
	check(read(p[0], &t.pid, sizeof(t.pid)) == sizeof(t.pid), "read pid");
	test_sleep_ms(500);
	check(tracer_of(t.pid) == helper, "TracerPid %d, want the helper %d", tracer_of(t.pid),
	      (int)helper);
	uint64_t h = text_hash(t.pid);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 500, .log_fn = test_log);
	failing_round(t.pid, &o, OCOLOS_EATTACH);
	check(tracer_of(t.pid) == helper, "the helper lost the target");
	check(text_hash(t.pid) == h, "C0 changed");
	check(anon_exec(t.pid) == 0, "a failed round left an executable mapping");
	/* The target is the helper's child: stop it, the helper reports. */
	kill(t.pid, SIGTERM);
	int st = wait_end(helper);
	char *out = slurp(t.out);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "traced target ended badly (%d): %s", st, out);
	check(!strcmp(out, ref), "target output differs:\n%s", out);
	free(out);
	close(p[0]);
	close(p[1]);
	check_no_children();
	free(ref);
}

static void mode_gone(void)
{
	pid_t pid = fork();
	check(pid >= 0, "fork");
	if (pid == 0)
		_exit(0);
	wait_end(pid);
	struct ocolos_ctx *ctx = (struct ocolos_ctx *)1;
	OCOLOS_OPTS(ocolos_opts, o, .log_fn = test_log);
	int rc = ocolos_open_pid(pid, &o, &ctx);
	fprintf(stderr, "  open(%d) -> %d %s\n", (int)pid, rc, ocolos_strerror(rc));
	check(rc == OCOLOS_ENOPROC, "open of a dead pid: %d (%s)", rc, ocolos_strerror(rc));
	check(ctx == NULL, "*ctx not NULL after a failed open");
	check(ocolos_open_pid(0, &o, &ctx) == OCOLOS_EINVAL, "pid 0");
	check(ocolos_open_pid(getpid(), &o, &ctx) == OCOLOS_EINVAL, "own pid");
	check_no_children();
}

/*
 * The target exits on its own during the sampling window.
 *  exiting         its parent (a helper, as for an agent's target) reaps it
 *                  at once: /proc/PID disappears mid-round
 *  exiting-zombie  we are its parent and reap it only after the round, as
 *                  ocolos-supervise does: mid-round it is a zombie
 * Either way the round must end with OCOLOS_ENOPROC, and the target's exit
 * status must still be its parent's to collect.
 */
static void mode_exiting(const char *target, int zombie)
{
	char *ref = reference(target);
	struct tgt t;
	pid_t helper = 0;
	int p[2];
	if (zombie) {
		start_target(&t, target, "--exit-after", "1500");
	} else {
		check(pipe(p) == 0, "pipe");
		helper = fork();
		check(helper >= 0, "fork");
		if (helper == 0) {
			start_target(&t, target, "--exit-after", "1500");
			if (write(p[1], &t, sizeof(t)) != sizeof(t))
				_exit(1);
			int st = wait_end(t.pid);
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		}
		check(read(p[0], &t, sizeof(t)) == sizeof(t), "read target");
		close(p[0]);
		close(p[1]);
	}
	test_sleep_ms(500);
	/* The window scales: under emulation the target's final phase after
	 * --exit-after lasts seconds, and a 3 s window plus BOLT ended before
	 * it did (the round succeeded in the AArch64 guest). */
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = scaled(3000), .log_fn = test_log);
	uint64_t ms = failing_round(t.pid, &o, OCOLOS_ENOPROC);
	fprintf(stderr, "  failed after %llu ms\n", (unsigned long long)ms);
	/* It exited by itself, cleanly; the status is still its parent's. */
	int st = wait_end(zombie ? t.pid : helper);
	char *out = slurp(t.out);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "target ended with status %d", st);
	check(!strcmp(out, ref), "output differs:\n%s", out);
	free(out);
	check_no_children();
	free(ref);
}

static void mode_norelocs(const char *target)
{
	char *ref = reference(target);
	struct tgt t;
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(300);
	uint64_t h = text_hash(t.pid);
	struct ocolos_ctx *ctx;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 3000, .log_fn = test_log);
	ctx = open_ctx(t.pid, &o);
	uint64_t t0 = test_now_ms();
	int rc = ocolos_round(ctx, NULL);
	uint64_t ms = test_now_ms() - t0;
	expect_rc(rc, OCOLOS_ENORELOCS, ctx);
	check(test_contains(ocolos_last_error(ctx), "--emit-relocs"),
	      "the message does not name the fix: %s", ocolos_last_error(ctx));
	check(ms < 1500, "found after %llu ms: must be before sampling", (unsigned long long)ms);
	ocolos_close(ctx);
	after_fault(&t, h, ref);
	free(ref);
}

static void copy_file(const char *from, const char *to)
{
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	check(system(cmd) == 0, "%s", cmd);
}

/*
 * The binary on disk is not the one running. A running executable cannot
 * be rewritten in place (open for writing fails with ETXTBSY, checked
 * below), so "replaced" means deleted and recreated under the same name —
 * what package upgrades do.
 */
static void mode_stale(const char *target, const char *other)
{
	char *ref = reference(target);
	char path[PATH_MAX];
	struct tgt t;
	snprintf(path, sizeof(path), "%s/prog", tmpdir);
	copy_file(target, path);
	start_target(&t, path, NULL, NULL);
	test_sleep_ms(300);
	uint64_t h = text_hash(t.pid);

	int fd = open(path, O_WRONLY);
	check(fd < 0 && errno == ETXTBSY,
	      "a running executable could be opened for writing (%s): this kernel allows "
	      "in-place rewrites; add a test for them",
	      fd < 0 ? strerror(errno) : "ok");

	check(unlink(path) == 0, "unlink");
	copy_file(other, path);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 1000, .binary_path = path,
		    .log_fn = test_log);
	fprintf(stderr, "binary_path = the replaced file:\n");
	failing_round(t.pid, &o, OCOLOS_ESTALE);
	/* A file that never was the running one. */
	OCOLOS_OPTS(ocolos_opts, o2, .profile_ms = 1000, .binary_path = other,
		    .log_fn = test_log);
	fprintf(stderr, "binary_path = another binary:\n");
	failing_round(t.pid, &o2, OCOLOS_ESTALE);
	check_free(t.pid);
	check(text_hash(t.pid) == h, "C0 changed although the rounds failed");
	check(anon_exec(t.pid) == 0, "a failed round left an executable mapping");

	/* By default the library reads the binary through /proc/PID/exe,
	 * which still opens the deleted file the process runs: no error then,
	 * the round optimizes the right code. */
	OCOLOS_OPTS(ocolos_opts, o3, .profile_ms = 1000, .log_fn = test_log);
	struct ocolos_ctx *ctx = open_ctx(t.pid, &o3);
	OCOLOS_OPTS(ocolos_stats, st);
	fprintf(stderr, "default binary_path (/proc/PID/exe -> '%s (deleted)'):\n", path);
	check_stats(ocolos_round(ctx, &st), &st, ctx);
	ocolos_close(ctx);
	check_free(t.pid);
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

static void mode_boltfail(const char *target, const char *script)
{
	char *ref = reference(target);
	struct tgt t;
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	uint64_t h = text_hash(t.pid);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 500, .bolt_path = script,
		    .bolt_timeout_ms = 30000, .log_fn = test_log);
	struct ocolos_ctx *ctx = open_ctx(t.pid, &o);
	int rc = ocolos_round(ctx, NULL);
	expect_rc(rc, OCOLOS_EBOLT, ctx);
	check(test_contains(ocolos_last_error(ctx), "simulated BOLT failure"),
	      "the message does not carry BOLT's error: %s", ocolos_last_error(ctx));
	ocolos_close(ctx);
	after_fault(&t, h, ref);
	free(ref);
}

static void mode_reserve(const char *target)
{
	char *ref = reference(target);
	struct tgt t;
	start_target(&t, target, "--block-reserve", NULL);
	test_sleep_ms(500);
	uint64_t h = text_hash(t.pid);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 1000, .log_fn = test_log);
	failing_round(t.pid, &o, OCOLOS_ERESERVE);
	after_fault(&t, h, ref);
	free(ref);
}

/* ---- artifacts: one BOLT per build --------------------------------------- */

/* The first mapping of the target's binary: load bias + lowest p_vaddr. */
static uint64_t image_start(pid_t pid)
{
	char path[64], exe[PATH_MAX], line[PATH_MAX + 128];
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	uint64_t lo = 0;
	if (n > 0 && f) {
		exe[n] = '\0';
		while (!lo && fgets(line, sizeof(line), f)) {
			unsigned long long a;
			line[strcspn(line, "\n")] = '\0';
			size_t l = strlen(line), e = strlen(exe);
			if (l > e && !strcmp(line + l - e, exe) && sscanf(line, "%llx-", &a) == 1)
				lo = a;
		}
	}
	if (f)
		fclose(f);
	return lo;
}

/* Is something mapped at `addr` in process `pid`? */
static int mapped_at(pid_t pid, uint64_t addr)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	int found = 0;
	while (f && !found && fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;
		found = sscanf(line, "%llx-%llx", &lo, &hi) == 2 && lo <= addr && addr < hi;
	}
	if (f)
		fclose(f);
	return found;
}

static void mode_artifact(const char *target)
{
	char *ref = reference(target);
	char art[PATH_MAX], bad[PATH_MAX];
	snprintf(art, sizeof(art), "%s/c1.art", tmpdir);
	snprintf(bad, sizeof(bad), "%s/altered.art", tmpdir);
	struct tgt a, b, c;
	start_target(&a, target, NULL, NULL);
	start_target(&b, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);

	/* The round that writes it: an ordinary one. */
	OCOLOS_OPTS(ocolos_stats, sa);
	OCOLOS_OPTS(ocolos_opts, oa, .profile_ms = scaled(1500), .log_fn = test_log,
		    .artifact_out = art);
	struct ocolos_ctx *ctx = open_ctx(a.pid, &oa);
	int rc = ocolos_round(ctx, &sa);
	check_stats(rc, &sa, ctx);
	ocolos_close(ctx);
	char *text = slurp(art);
	const char *v = text ? strstr(text, "\nvma=0x") : NULL;
	check(v != NULL, "no vma in the artifact's header");
	unsigned long long vma = v ? strtoull(v + 5, NULL, 16) : 0;
	uint64_t off_a = sa.c1_addr - image_start(a.pid);

	/* The second process: no sampling, no BOLT — a BOLT that cannot run
	 * would fail any round that tried. */
	OCOLOS_OPTS(ocolos_stats, sb);
	OCOLOS_OPTS(ocolos_opts, ob, .log_fn = test_log, .artifact_in = art,
		    .bolt_path = "/nonexistent/llvm-bolt");
	ctx = open_ctx(b.pid, &ob);
	rc = ocolos_round(ctx, &sb);
	test_print_stats(rc, &sb);
	check(rc == 0, "artifact round: %d %s: %s", rc, ocolos_strerror(rc), ocolos_last_error(ctx));
	check(sb.bolt_ns == 0 && sb.samples == 0 && !strcmp(sb.sampler, "artifact"),
	      "artifact round: bolt_ns %llu, %llu samples, sampler '%s'",
	      (unsigned long long)sb.bolt_ns, (unsigned long long)sb.samples, sb.sampler);
	check(sb.functions_moved == sa.functions_moved &&
	      sb.call_sites_patched + sb.entries_patched > 0 && sb.generation == 1,
	      "artifact round: %u functions moved (the writer: %u), %u call sites, %u entries, "
	      "generation %u", sb.functions_moved, sa.functions_moved, sb.call_sites_patched,
	      sb.entries_patched, sb.generation);
	/* The same offset from the image in both; C1 - vma is the load bias,
	 * at most the lowest p_vaddr (non-PIE: 4 MiB) below the image. */
	uint64_t off_b = sb.c1_addr - image_start(b.pid);
	uint64_t bias_b = sb.c1_addr - vma;
	check(off_a == off_b && bias_b <= image_start(b.pid) &&
	      image_start(b.pid) - bias_b < (16ull << 20),
	      "C1 at image + 0x%llx in the writer, + 0x%llx in the applier (vma 0x%llx)",
	      (unsigned long long)off_a, (unsigned long long)off_b, vma);
	/* First round only. */
	OCOLOS_OPTS(ocolos_stats, s2);
	rc = ocolos_round(ctx, &s2);
	expect_rc(rc, OCOLOS_ENOTSUP, ctx);
	ocolos_close(ctx);
	check_free(b.pid);

	/* A third process whose range is taken; an altered and an untrusted
	 * copy: each refused, nothing of the target changed. */
	char at[32]; /* where C1 went in the others: inside the range it needs */
	snprintf(at, sizeof(at), "%llx", (unsigned long long)off_a);
	start_target(&c, target, "--block-at", at);
	/* until it has blocked the range (a loaded machine may take a while) */
	for (int i = 0; i < 200 && !(image_start(c.pid) && mapped_at(c.pid, image_start(c.pid) + off_a)); i++)
		test_sleep_ms(50);
	check(mapped_at(c.pid, image_start(c.pid) + off_a), "the third process did not block "
	      "image + 0x%llx", (unsigned long long)off_a);
	test_sleep_ms(200);
	uint64_t h = text_hash(c.pid);
	OCOLOS_OPTS(ocolos_opts, oc, .log_fn = test_log, .artifact_in = art,
		    .bolt_path = "/nonexistent/llvm-bolt");
	failing_round(c.pid, &oc, OCOLOS_ETAKEN);
	FILE *f = fopen(bad, "we");
	size_t len = 0;
	struct stat stt;
	if (f && stat(art, &stt) == 0) {
		len = (size_t)stt.st_size;
		FILE *in = fopen(art, "re");
		char *all = malloc(len);
		if (in && all && fread(all, 1, len, in) == len) {
			all[len - 40] ^= 0x20; /* a byte of the last record's code */
			fwrite(all, 1, len, f);
		}
		free(all);
		if (in)
			fclose(in);
	}
	if (f)
		fclose(f);
	oc.artifact_in = bad;
	failing_round(c.pid, &oc, OCOLOS_EBADARTIFACT);
	oc.artifact_in = art;
	chmod(art, 0666);
	failing_round(c.pid, &oc, OCOLOS_EUNTRUSTED);
	chmod(art, 0644);
	check_free(c.pid);
	check(text_hash(c.pid) == h, "the target's code (C0) changed although no artifact applied");
	check(anon_exec(c.pid) == 0, "a refused artifact left an executable mapping in the target");
	finish(&c, ref, 0);

	finish(&b, ref, 0);
	finish(&a, ref, 0);
	check_no_children();
	free(text);
	free(ref);
}

/* ---- the tools ------------------------------------------------------------ */

/* Run a tool to its end with stdout in a file; return its wait status. */
static int run_tool(char *const argv[], const char *out)
{
	return wait_end(spawn_tool(argv, out));
}

/* Fraction of `pid`'s samples that lie in its binary's original code,
 * from a fresh context (code another context optimized counts as
 * elsewhere). A round that moved the hot code to C1 lowers it. */
static double original_fraction(pid_t pid, const char *when)
{
	OCOLOS_OPTS(ocolos_opts, o, .log_fn = test_log);
	struct ocolos_ctx *ctx = open_ctx(pid, &o);
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = scaled(1000), .sample_hz = 2000);
	OCOLOS_OPTS(ocolos_where_result, w);
	int rc = ocolos_where(ctx, &wo, &w);
	check(rc == 0, "ocolos_where: %d %s: %s", rc, ocolos_strerror(rc), ocolos_last_error(ctx));
	ocolos_close(ctx);
	double f = w.samples ? (double)w.in_original / (double)w.samples : 0;
	fprintf(stderr, "  where %-16s samples %llu: original code %llu (%.1f%%), elsewhere %llu\n",
		when, (unsigned long long)w.samples, (unsigned long long)w.in_original, 100 * f,
		(unsigned long long)w.elsewhere);
	check(w.samples >= 200 / scale, "only %llu samples (%s)", (unsigned long long)w.samples,
	      when);
	return f;
}

/* The samples left the original code: at most half the fraction there was
 * before. Not all of it: a thread's outermost loop (a worker's main
 * function) keeps running in C0, whose frame never returns, and functions
 * with too few samples stay. */
static void check_moved(double before, double after)
{
	check(before > 0.05 && after * 2 <= before,
	      "the samples did not move out of the original code: %.1f%% before, %.1f%% after",
	      100 * before, 100 * after);
}

/* The fraction for a fresh run of `target` (for a supervisor's child,
 * which cannot be observed before its round). */
static double baseline_fraction(const char *target, const char *ref)
{
	struct tgt t;
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	double f = original_fraction(t.pid, "unoptimized");
	finish(&t, ref, 0);
	return f;
}

static void mode_agent(const char *target, const char *agent)
{
	char *ref = reference(target);
	struct tgt t;
	char out[PATH_MAX], pid[16];
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	double before = original_fraction(t.pid, "before the agent");
	snprintf(out, sizeof(out), "%s/agent.out", tmpdir);
	snprintf(pid, sizeof(pid), "%d", (int)t.pid);
	/* A scaled window: an emulated C++ target spends most of its time in
	 * libstdc++, and a second leaves too few samples in the binary. */
	char *argv[] = { (char *)agent, (char *)"--pid", pid, (char *)"--profile", scale_s,
			 NULL };
	int st = run_tool(argv, out);
	char *json = slurp(out);
	fprintf(stderr, "agent: %s", json);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ocolos-agent failed (%d): %s", st, json);
	check(test_contains(json, "\"ok\":true") && test_contains(json, "\"functions_moved\":"),
	      "no successful round reported: %s", json);
	free(json);
	check_free(t.pid);
	check_moved(before, original_fraction(t.pid, "after the agent"));
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

/*
 * SIGKILL the agent at random moments of its rounds (sampling, BOLT, the
 * injected calls, the stop-the-world): every other kill at a random time,
 * the others at a random moment shortly after the agent said it started
 * the replace stage (mapping C1 with injected system calls, the cache
 * maintenance and unwind registration calls, the stop). The kernel
 * detaches a dead tracer's tracees; the target must then run on, untraced,
 * unstopped and correct, and the next agent continues from the state
 * record: every round it reports succeeded. OCOLOS_TEST_SEED repeats a run.
 */
static void mode_agent_kill(const char *target, const char *agent)
{
	char *ref = reference(target);
	struct tgt t;
	char out[PATH_MAX], err[PATH_MAX], pid[16];
	unsigned seed = getenv("OCOLOS_TEST_SEED") ? (unsigned)atoi(getenv("OCOLOS_TEST_SEED"))
						  : (unsigned)time(NULL);
	int kills = getenv("OCOLOS_TEST_KILLS") ? atoi(getenv("OCOLOS_TEST_KILLS")) : 10;
	fprintf(stderr, "seed %u (OCOLOS_TEST_SEED)\n", seed);
	srand(seed);
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	snprintf(out, sizeof(out), "%s/agent.out", tmpdir);
	snprintf(pid, sizeof(pid), "%d", (int)t.pid);
	/* Short windows and continuous rounds: every phase recurs often. */
	char *argv[] = { (char *)agent, (char *)"--pid", pid, (char *)"--profile", (char *)"0.3",
			 (char *)"--every", (char *)"0.1", NULL };
	for (int i = 0; i < kills; i++) {
		snprintf(err, sizeof(err), "%s/agent%d.err", tmpdir, i);
		pid_t a = spawn_as(argv, out, err, 0);
		unsigned ms;
		const char *when = "after start";
		if (i % 2 == 0) {
			ms = 100 + (unsigned)rand() % scaled(3500);
		} else {
			/* Polled finely: the stage lasts milliseconds natively. */
			uint64_t end = test_now_ms() + scaled(60000);
			char *e = NULL;
			while (!test_contains((e = slurp(err)), "replace:") && test_now_ms() < end) {
				free(e);
				struct timespec ts = { 0, 1000000 };
				nanosleep(&ts, NULL);
			}
			check(test_contains(e, "replace:"), "the agent never reached the replace "
			      "stage:\n%s", e);
			free(e);
			ms = (unsigned)rand() % scaled(100);
			when = "after 'replace:'";
		}
		test_sleep_ms(ms);
		kill(a, SIGKILL);
		int st = wait_end(a);
		char *json = slurp(out), *log = slurp(err);
		size_t lines = 0;
		for (char *c = json; *c; c++)
			lines += *c == '\n';
		fprintf(stderr, "kill %d %u ms %s (%s; %zu rounds reported)\n%s", i, ms, when,
			WIFSIGNALED(st) ? "killed" : "had exited", lines, log);
		fprintf(stderr, "%s", json);
		if (test_contains(json, "\"ok\":false")) {
			/* Say how the target ended, if it did (seen once in the
			 * AArch64 guest: gone after a round, cause unknown). */
			char how[64] = "still running";
			int tst = 0;
			test_sleep_ms(500);
			if (waitpid(t.pid, &tst, WNOHANG) == t.pid)
				describe_status(tst, how, sizeof(how));
			char *o = slurp(t.out);
			size_t n = strlen(o);
			fprintf(stderr, "target %d: %s; the end of its output:\n%s\n", (int)t.pid,
				how, n > 1500 ? o + n - 1500 : o);
			free(o);
		}
		check(!test_contains(json, "\"ok\":false"), "an agent after a killed one failed a "
		      "round:\n%s", json);
		free(json);
		free(log);
		check_free(t.pid);
	}
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

/*
 * The agent dies (SIGKILL, OCOLOS_TEST_KILL_AT) exactly at a named point of
 * its rounds — between two steps the state record must cover together —
 * rather than at a random moment that rarely lands there. After each kill
 * the next agent runs a round, which must succeed without finding any
 * location other than the record says, and the target must live on,
 * unstopped; then the next point, on the same target (what one
 * kill left, the next agent inherits). At the end an agent reverts it, and
 * it must print what it prints unoptimized.
 */
/* The target has not ended (`when`: at which step after the kill). */
static void check_target_on(const struct tgt *t, const char *when, const char *point)
{
	char how[64];
	int tst = 0;
	if (waitpid(t->pid, &tst, WNOHANG) == t->pid) {
		describe_status(tst, how, sizeof(how));
		check(0, "the target ended %s (agent killed at '%s'): %s", when, point, how);
	}
}

static void die_at_one(struct tgt *t, const char *agent, const char *point)
{
	char out[PATH_MAX], err[PATH_MAX], pid[16];
	snprintf(out, sizeof(out), "%s/agent.out", tmpdir);
	snprintf(err, sizeof(err), "%s/agent.err", tmpdir);
	snprintf(pid, sizeof(pid), "%d", (int)t->pid);
	/* OCOLOS_TEST_AGENT_DEBUG: the library's debug log too. */
	const char *v = getenv("OCOLOS_TEST_AGENT_DEBUG") ? "-vv" : "-v";
	char window[16]; /* half a second (scaled): the C++ target gives ~15,000 samples */
	snprintf(window, sizeof(window), "%.1f", 0.5 * scale);
	char *argv[] = { (char *)agent, (char *)v, (char *)"--pid", pid, (char *)"--profile",
			 window, (char *)"--every", (char *)"0.1", NULL, NULL, NULL };
	check(setenv("OCOLOS_TEST_KILL_AT", point, 1) == 0, "setenv");
	pid_t a = spawn_as(argv, out, err, 0);
	unsetenv("OCOLOS_TEST_KILL_AT");
	uint64_t end = test_now_ms() + scaled(120000);
	int st = 0;
	while (waitpid(a, &st, WNOHANG) != a) {
		if (test_now_ms() > end) {
			kill(a, SIGKILL);
			wait_end(a);
			char *e = slurp(err);
			check(0, "the agent never reached '%s' in %u s:\n%s", point,
			      scaled(120000) / 1000, e);
		}
		test_sleep_ms(20);
	}
	char *json = slurp(out), *log = slurp(err);
	fprintf(stderr, "== killed at '%s':\n%s%s", point, log, json);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the agent ended otherwise than killed at "
	      "'%s' (status 0x%x)", point, st);
	check(!test_contains(json, "\"ok\":false"), "a round before the kill failed:\n%s", json);
	free(json);
	free(log);
	check_target_on(t, "when its agent was killed", point);
	check_free(t->pid);

	/* The next agent finishes what was cut short, and its round reads
	 * back what the killed one left (a second round would read only its
	 * own). */
	argv[8] = (char *)"--rounds";
	argv[9] = (char *)"1";
	st = wait_end(spawn_as(argv, out, err, 0));
	json = slurp(out);
	log = slurp(err);
	fprintf(stderr, "== the next agent:\n%s%s", log, json);
	check_target_on(t, "during the next agent's round", point);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0 && !test_contains(json, "\"ok\":false"),
	      "after a kill at '%s', the next agent failed a round (status 0x%x):\n%s", point, st,
	      json);
	/* What it read from the state record matches the target: no location
	 * it switched held other bytes than it expected (an AArch64 version
	 * read back as x86-64 once made every older entry "mismatched", and
	 * the few that matched by chance got 5 bytes of x86 jump). */
	unsigned switches = 0;
	for (const char *l = strstr(log, "redirect to C"); l; l = strstr(l + 1, "redirect to C")) {
		switches++;
		const char *m = strstr(l, " mismatched");
		const char *eol = strchr(l, '\n');
		check(m && (!eol || m < eol) && m - l > 2 && m[-1] == '0' && m[-2] == ' ',
		      "after a kill at '%s', a switch found locations holding other bytes than the "
		      "state record said: %.*s", point, eol ? (int)(eol - l) : (int)strlen(l), l);
	}
	check(switches == 1, "after a kill at '%s', the next agent's log shows %u switches, not "
	      "its round's one (has the line changed? lib/api/round.c):\n%s", point, switches, log);
	free(json);
	free(log);
	/* Long enough for a thread to run into anything left unfilled (the
	 * check below watches it for another 400 ms). */
	test_sleep_ms(scaled(500));
	check_target_on(t, "after the next agent's round", point);
	check_free(t->pid);
}

static void mode_agent_die_at(const char *target, const char *agent, const char *points)
{
	char *ref = reference(target), out[PATH_MAX], pid[16];
	struct tgt t;
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	char *list = strdup(points), *save = NULL;
	check(list != NULL, "strdup");
	for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
		die_at_one(&t, agent, p);
	free(list);
	snprintf(out, sizeof(out), "%s/agent.out", tmpdir);
	snprintf(pid, sizeof(pid), "%d", (int)t.pid);
	char *rv[] = { (char *)agent, (char *)"--pid", pid, (char *)"--revert", NULL };
	int st = run_tool(rv, out);
	char *json = slurp(out);
	fprintf(stderr, "revert: %s", json);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ocolos-agent --revert failed (0x%x): %s", st,
	      json);
	free(json);
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

/* Bytes of PROT_NONE mappings backed by no file within 4 GiB of the
 * target's code: its reservation for C1 while a round runs (thread stacks'
 * guard pages and malloc arenas lie far away, in the mmap area). */
static uint64_t reserved_near_code(pid_t pid)
{
	char path[64], exe[PATH_MAX], line[PATH_MAX + 128];
	uint64_t lo = UINT64_MAX, hi = 0, bytes = 0;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	check(n > 0, "readlink %s", path);
	exe[n] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	check(f != NULL, "open %s", path);
	for (int pass = 0; pass < 2; pass++) {
		rewind(f);
		while (fgets(line, sizeof(line), f)) {
			unsigned long long s, e;
			char perms[8];
			char *p = strchr(line, '/');
			if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) != 3)
				continue;
			if (p)
				p[strcspn(p, "\n")] = '\0';
			if (pass == 0 && p && perms[2] == 'x' && !strcmp(p, exe)) {
				lo = s < lo ? s : lo;
				hi = e > hi ? e : hi;
			} else if (pass == 1 && !strcmp(perms, "---p") && !strchr(line, '/') &&
				   !strchr(line, '[') && e + (4ull << 30) > lo && s < hi + (4ull << 30)) {
				bytes += e - s;
			}
		}
	}
	fclose(f);
	check(hi > 0, "no code of %s mapped in %d", exe, (int)pid);
	return bytes;
}

/* Wait until file `path` contains `needle`; return its text. */
static char *wait_text(const char *path, const char *needle, unsigned timeout_ms)
{
	uint64_t end = test_now_ms() + timeout_ms;
	for (;;) {
		char *s = slurp(path);
		if (strstr(s, needle))
			return s;
		check(test_now_ms() < end, "no '%s' after %u ms in %s:\n%s", needle, timeout_ms, path, s);
		free(s);
		test_sleep_ms(50);
	}
}

/* Entries of directory `dir` but . and .. */
static unsigned dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	check(d != NULL, "opendir %s", dir);
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* The first child of process `parent` found in /proc, or 0. */
static pid_t child_of(pid_t parent)
{
	DIR *d = opendir("/proc");
	check(d != NULL, "opendir /proc");
	struct dirent *e;
	pid_t found = 0;
	while (!found && (e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);
		char v[32];
		if (pid <= 0)
			continue;
		status_field(pid, "PPid", v, sizeof(v));
		if (atoi(v) == parent)
			found = pid;
	}
	closedir(d);
	return found;
}

/*
 * A signal to the agent cancels its round (ocolos_cancel from the handler),
 * once in each of the two long waits: SIGINT in the sampling window, SIGTERM
 * while llvm-bolt runs (SCRIPT never finishes). Each time the agent must
 * exit 128 + the signal within seconds, report the round as canceled, and
 * leave the target as if nothing had happened: C0 unchanged, no executable
 * or reserved mapping, untraced and running, its output as unoptimized;
 * the work directory removed and BOLT killed. The reservation and the work
 * directory are seen to exist before the signal, so their absence after it
 * proves the cleanup.
 */
static void mode_agent_cancel(const char *target, const char *agent, const char *script)
{
	char *ref = reference(target);
	struct tgt t;
	char out[PATH_MAX], err[PATH_MAX], pid[16], work[PATH_MAX];
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	snprintf(pid, sizeof(pid), "%d", (int)t.pid);
	snprintf(work, sizeof(work), "%s/work", tmpdir);
	check(mkdir(work, 0700) == 0, "mkdir %s: %s", work, strerror(errno));
	uint64_t hash = text_hash(t.pid), reserved = reserved_near_code(t.pid);
	static const struct {
		int sig;
		const char *stage, *wait_for;
	} cases[] = {
		{ SIGINT, "profile", "profile: sampling" },
		{ SIGTERM, "optimize", "optimize: running llvm-bolt" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fprintf(stderr, "== signal %d during %s\n", cases[i].sig, cases[i].stage);
		snprintf(out, sizeof(out), "%s/cancel%zu.out", tmpdir, i);
		snprintf(err, sizeof(err), "%s/cancel%zu.err", tmpdir, i);
		char *argv[] = { (char *)agent, (char *)"--json", (char *)"--pid", pid,
				 (char *)"--profile", (char *)(i == 0 ? "60" : "0.5"), (char *)"--bolt",
				 (char *)script, (char *)"--bolt-timeout", (char *)"120",
				 (char *)"--tmp-dir", work, NULL };
		pid_t a = spawn_as(argv, out, err, 0);
		free(wait_text(err, cases[i].wait_for, scaled(60000)));
		/* Into the wait: polled, since on a loaded machine the agent
		 * may print the stage well before its reservation exists. */
		uint64_t until = test_now_ms() + scaled(10000);
		test_sleep_ms(500);
		while (!(reserved_near_code(t.pid) > reserved && dir_entries(work) == 1) &&
		       test_now_ms() < until)
			test_sleep_ms(50);
		pid_t bolt = i == 1 ? child_of(a) : 0;
		check(reserved_near_code(t.pid) > reserved && dir_entries(work) == 1,
		      "no reservation or no work directory while the round ran: the checks below "
		      "would prove nothing");
		check(i == 0 || bolt > 0, "no llvm-bolt running under the agent");
		uint64_t t0 = test_now_ms();
		kill(a, cases[i].sig);
		int st = wait_end(a);
		uint64_t ms = test_now_ms() - t0;
		char how[64], *json = slurp(out), *log = slurp(err);
		describe_status(st, how, sizeof(how));
		fprintf(stderr, "%s%s(%s after %llu ms)\n", log, json, how, (unsigned long long)ms);
		check(WIFEXITED(st) && WEXITSTATUS(st) == 128 + cases[i].sig, "agent: %s, want exit %d",
		      how, 128 + cases[i].sig);
		check(ms < 5000, "the agent took %llu ms to stop", (unsigned long long)ms);
		check(test_contains(json, "\"ok\":false") && test_contains(json, "\"error_code\":-21") &&
		      test_contains(json, cases[i].stage), "no canceled round reported: %s", json);
		check(!bolt || (kill(bolt, 0) != 0 && errno == ESRCH), "llvm-bolt %d still runs",
		      (int)bolt);
		check_free(t.pid);
		check(text_hash(t.pid) == hash, "the target's code (C0) changed");
		check(anon_exec(t.pid) == 0, "a canceled round left an executable mapping");
		check(reserved_near_code(t.pid) == reserved, "the reservation is still mapped");
		check(dir_entries(work) == 0, "the work directory was left in %s", work);
		free(json);
		free(log);
	}
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

/* `env`: /usr/bin/env, or the first on PATH (the AArch64 guest has
 * busybox's). */
static const char *env_program(void)
{
	static char found[PATH_MAX];
	if (access("/usr/bin/env", X_OK) == 0)
		return "/usr/bin/env";
	const char *path = getenv("PATH");
	for (const char *p = path; p && *p;) {
		const char *c = strchr(p, ':');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		snprintf(found, sizeof(found), "%.*s/env", (int)n, p);
		if (n && access(found, X_OK) == 0)
			return found;
		p += n + (c != NULL);
	}
	return "/usr/bin/env";
}

/* Start ocolos-supervise ARGS -- TARGET EXTRA; return its pid. */
static pid_t supervise_after(const char *sup, const char *after, const char *target,
			     const char *every, const char *extra1, const char *extra2,
			     const char *out)
{
	char *argv[20];
	int n = 0;
	argv[n++] = (char *)sup;
	argv[n++] = (char *)"--after";
	argv[n++] = (char *)after;
	argv[n++] = (char *)"--profile";
	argv[n++] = scale_s; /* see mode_agent */
	if (every) {
		argv[n++] = (char *)"--every";
		argv[n++] = (char *)every;
	}
	argv[n++] = (char *)"--";
	/* env execs the target in place (same pid), without the sanitizer
	 * runtime the supervisor itself may need. */
	argv[n++] = (char *)env_program();
	argv[n++] = (char *)"-u";
	argv[n++] = (char *)"LD_PRELOAD";
	argv[n++] = (char *)target;
	if (extra1)
		argv[n++] = (char *)extra1;
	if (extra2)
		argv[n++] = (char *)extra2;
	argv[n] = NULL;
	return spawn_tool(argv, out);
}

/* The same with a warm-up of 1 s (OCOLOS_TEST_SCALE s: an emulated C++
 * child is still starting after 1 s). */
static pid_t supervise(const char *sup, const char *target, const char *every, const char *extra1,
		       const char *extra2, const char *out)
{
	char after[16];
	snprintf(after, sizeof(after), "%u", scale);
	return supervise_after(sup, after, target, every, extra1, extra2, out);
}

/* Wait until `out` holds `count` JSON lines; return the text. */
static char *wait_json(const char *out, int count, unsigned timeout_ms)
{
	uint64_t end = test_now_ms() + timeout_ms;
	for (;;) {
		char *s = slurp(out);
		int n = 0;
		for (char *c = s; (c = strstr(c, "{\"pid\":")); c++)
			n++;
		if (n >= count)
			return s;
		check(test_now_ms() < end, "no %d JSON lines after %u ms: %s", count, timeout_ms, s);
		free(s);
		test_sleep_ms(100);
	}
}

/* The target's own lines: everything but the JSON. */
static char *target_lines(const char *s)
{
	char *r = calloc(1, strlen(s) + 1), *o = r;
	check(r != NULL, "calloc");
	while (*s) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s + 1) : strlen(s);
		if (strncmp(s, "{\"pid\":", 7)) {
			memcpy(o, s, len);
			o += len;
		}
		s += len;
	}
	return r;
}

static int json_pid(const char *s)
{
	const char *p = strstr(s, "{\"pid\":");
	return p ? atoi(p + 7) : 0;
}

static void mode_supervise(const char *target, const char *sup, int full)
{
	char *ref = reference(target);
	double before = baseline_fraction(target, ref);
	char out[PATH_MAX], how[64];
	/* A new file for each case: a JSON line left from the previous case
	 * would name a dead child. */
#define NEXT_OUT() snprintf(out, sizeof(out), "%s/sup%d.out", tmpdir, ++cases)
	int cases = 0;
	NEXT_OUT();

	/* 1. One round; SIGTERM to the supervisor reaches the child, which
	 *    ends cleanly; the supervisor exits with its status. */
	fprintf(stderr, "== one round, then SIGTERM\n");
	pid_t s = supervise(sup, target, NULL, NULL, NULL, out);
	char *json = wait_json(out, 1, scaled(60000));
	fprintf(stderr, "%s", json);
	check(test_contains(json, "\"ok\":true"), "round failed: %s", json);
	int child = json_pid(json);
	check(child > 0, "no pid in the JSON line");
	test_sleep_ms(300); /* the round is over: stays on C1 */
	check_free(child);
	check_moved(before, original_fraction(child, "after the round"));
	kill(s, SIGTERM);
	int st = wait_end(s);
	describe_status(st, how, sizeof(how));
	free(json);
	json = slurp(out);
	char *mine = target_lines(json);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "supervisor: %s, want exit 0", how);
	check(!strcmp(mine, ref), "child output differs:\n%s", mine);
	check(kill(child, 0) != 0 && errno == ESRCH, "child %d still exists", child);
	free(mine);
	free(json);
	if (!full) {
		check_no_children();
		free(ref);
		return;
	}

	/* 2. Exit code passed through; continuous rounds meanwhile. */
	fprintf(stderr, "== --every 0.5, child exits 3 on SIGTERM\n");
	NEXT_OUT();
	s = supervise(sup, target, "0.5", "--exit-code", "3", out);
	json = wait_json(out, 2, scaled(90000));
	free(json);
	kill(s, SIGTERM);
	st = wait_end(s);
	describe_status(st, how, sizeof(how));
	json = slurp(out);
	fprintf(stderr, "%s", json);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "supervisor: %s, want exit 3", how);
	/* The SIGTERM cancels a round that is running (ECANCELED); a round
	 * that was past its last safe point may fail as the child exits. */
	check(!test_contains(json, "\"ok\":false") || test_contains(json, "ENOPROC") ||
	      test_contains(json, "ECANCELED"), "a round failed: %s", json);
	mine = target_lines(json);
	check(!strcmp(mine, ref), "child output differs:\n%s", mine);
	free(mine);
	free(json);

	/* 3. Child killed by a signal (not through us) -> 128 + 9. */
	fprintf(stderr, "== child SIGKILLed during --every rounds\n");
	NEXT_OUT();
	s = supervise(sup, target, "0.2", NULL, NULL, out);
	json = wait_json(out, 1, scaled(60000));
	child = json_pid(json);
	free(json);
	test_sleep_ms((unsigned)(rand() % 1500));
	kill(child, SIGKILL);
	st = wait_end(s);
	describe_status(st, how, sizeof(how));
	check(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGKILL, "supervisor: %s, want exit 137",
	      how);

	/* 4. Child ends before the warm-up is over: no round, its status. */
	fprintf(stderr, "== child exits during the warm-up\n");
	NEXT_OUT();
	uint64_t t0 = test_now_ms();
	s = supervise(sup, target, NULL, "--exit-after", "200", out);
	st = wait_end(s);
	describe_status(st, how, sizeof(how));
	json = slurp(out);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "supervisor: %s", how);
	check(!strstr(json, "{\"pid\":"), "a round was attempted: %s", json);
	check(test_now_ms() - t0 < scaled(1000) + scaled(500),
	      "supervisor did not notice the exit at once");
	free(json);

	/* 5. CMD that cannot be run: 127, as a shell says. */
	NEXT_OUT();
	char *argv[] = { (char *)sup, (char *)"--", (char *)"/nonexistent/prog", NULL };
	st = run_tool(argv, out);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 127, "missing CMD: status %d", st);
	check_no_children();
	free(ref);
}

/* ---- continuous rounds by successive agents ------------------------------ */

/* What an agent (a child process of ours with its own context) did. */
struct agent_res {
	int rc;
	struct ocolos_stats st;
	struct ocolos_switch_stats sw;
	struct ocolos_where_result w;
	char msg[512];
};

enum agent_op { OP_ROUND, OP_REVERT, OP_RETIRE, OP_WHERE };

/* Run `op` on `pid` from a new process, as a new ocolos-agent would. */
static struct agent_res agent(pid_t pid, enum agent_op op, uint32_t profile_ms)
{
	int p[2];
	check(pipe(p) == 0, "pipe");
	pid_t a = fork();
	check(a >= 0, "fork");
	if (a == 0) {
		close(p[0]);
		struct agent_res r;
		memset(&r, 0, sizeof(r));
		r.st.sz = sizeof(r.st);
		r.sw.sz = sizeof(r.sw);
		r.w.sz = sizeof(r.w);
		OCOLOS_OPTS(ocolos_opts, o, .profile_ms = profile_ms, .log_fn = test_log);
		struct ocolos_ctx *ctx = NULL;
		r.rc = ocolos_open_pid(pid, &o, &ctx);
		OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = 800, .sample_hz = 2000);
		if (!r.rc)
			r.rc = op == OP_ROUND ? ocolos_round(ctx, &r.st)
			       : op == OP_REVERT ? ocolos_revert(ctx, &r.sw)
			       : op == OP_RETIRE ? ocolos_retire(ctx, &r.st)
			       : ocolos_where(ctx, &wo, &r.w);
		snprintf(r.msg, sizeof(r.msg), "%s", ocolos_last_error(ctx));
		ocolos_close(ctx);
		_exit(write(p[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1);
	}
	close(p[1]);
	struct agent_res r;
	memset(&r, 0, sizeof(r));
	ssize_t n = read(p[0], &r, sizeof(r));
	close(p[0]);
	int st = wait_end(a);
	check(n == (ssize_t)sizeof(r) && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "the agent process died (status %d)", st);
	static const char *const names[] = { "round", "revert", "retire", "where" };
	fprintf(stderr, "  agent %s -> %d %s%s%s | generation %u, versions mapped %u, retired %u "
		"(%llu KiB)\n", names[op], r.rc, ocolos_strerror(r.rc), r.rc ? ": " : "",
		r.rc ? r.msg : "", r.st.generation, r.st.versions_mapped, r.st.versions_retired,
		(unsigned long long)(r.st.bytes_retired >> 10));
	return r;
}

/* The target's mappings named `prefix` (e.g. "/memfd:ocolos-state"); the
 * addresses of the first `max` in addr[] (may be NULL). */
static unsigned named_mappings(pid_t pid, const char *prefix, int exec_only, uint64_t *addr,
			       unsigned max)
{
	char path[64], line[PATH_MAX + 128];
	unsigned n = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	check(f != NULL, "open %s", path);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, off;
		char perms[8];
		char *p = strchr(line, '/');
		if (!p || sscanf(line, "%llx-%*x %7s %llx", &s, perms, &off) != 3 ||
		    strncmp(p, prefix, strlen(prefix)) || off || (exec_only && perms[2] != 'x'))
			continue;
		if (addr && n < max)
			addr[n] = s;
		n++;
	}
	fclose(f);
	return n;
}

/* Overwrite the first bytes of the state record at `addr` (a read-only
 * private mapping: /proc/PID/mem writes through, as a debugger's would). */
static void garble(pid_t pid, uint64_t addr)
{
	char path[64];
	unsigned char junk[256];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(rand() & 0xff);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDWR);
	check(fd >= 0 && pwrite(fd, junk, sizeof(junk), (off_t)addr) == (ssize_t)sizeof(junk),
	      "cannot write the record at 0x%llx: %s", (unsigned long long)addr, strerror(errno));
	close(fd);
}

/* The sequence number of the record at `addr` (its header's 5th word). */
static uint64_t record_seq(pid_t pid, uint64_t addr)
{
	char path[64];
	uint64_t seq = 0;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDONLY);
	check(fd >= 0 && pread(fd, &seq, 8, (off_t)(addr + 32)) == 8, "read record");
	close(fd);
	return seq;
}

static void mode_continue(const char *target)
{
	char *ref = reference(target);
	struct tgt t;
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	uint64_t h0 = text_hash(t.pid);
	const uint32_t prof = 800;

	fprintf(stderr, "== agent 1: round\n");
	struct agent_res r = agent(t.pid, OP_ROUND, prof);
	check(r.rc == 0 && r.st.generation == 1, "first round: %d, generation %u: %s", r.rc,
	      r.st.generation, r.msg);
	check(named_mappings(t.pid, "/memfd:ocolos-c1", 1, NULL, 0) >= 1,
	      "C1 is not named in /proc/%d/maps", (int)t.pid);
	unsigned recs = named_mappings(t.pid, "/memfd:ocolos-state", 0, NULL, 0);
	check(recs >= 1 && recs <= 2, "%u state records mapped", recs);

	fprintf(stderr, "== agent 2: round (continues: C2, C1 retired)\n");
	r = agent(t.pid, OP_ROUND, prof);
	check(r.rc == 0 && r.st.generation == 2 && r.st.versions_mapped <= 2,
	      "second agent: %d, generation %u, %u mapped: %s", r.rc, r.st.generation,
	      r.st.versions_mapped, r.msg);
	check_free(t.pid);

	fprintf(stderr, "== agent 3: where, revert, where, retire\n");
	r = agent(t.pid, OP_WHERE, prof);
	check(r.rc == 0 && r.w.in_optimized > r.w.in_original,
	      "where: %d, C0 %llu, optimized %llu: the new agent does not see the versions", r.rc,
	      (unsigned long long)r.w.in_original, (unsigned long long)r.w.in_optimized);
	r = agent(t.pid, OP_REVERT, prof);
	check(r.rc == 0 && r.sw.call_sites + r.sw.entries > 0,
	      "revert by a new agent: %d (%u call sites, %u entries): %s", r.rc, r.sw.call_sites,
	      r.sw.entries, r.msg);
	r = agent(t.pid, OP_WHERE, prof);
	check(r.rc == 0 && r.w.in_optimized * 50 <= r.w.in_original,
	      "after the revert %llu samples are still in optimized code (C0 %llu)",
	      (unsigned long long)r.w.in_optimized, (unsigned long long)r.w.in_original);
	/* A look can find a thread holding a C2 address for a moment: in
	 * libgcc's FDE search over C2's table (still registered until C2 is
	 * retired), a register holds the pc_begin it compares with (CI saw
	 * rax = C2's chain). Retire is tried again, as a caller would. */
	for (int k = 0; k < 10; k++) {
		r = agent(t.pid, OP_RETIRE, prof);
		check(r.rc == 0, "retire after revert: %d: %s", r.rc, r.msg);
		if (!r.st.versions_mapped)
			break;
		test_sleep_ms(100);
	}
	check(r.st.versions_mapped == 0, "retire after revert: %u still mapped: %s",
	      r.st.versions_mapped, r.msg);
	check(named_mappings(t.pid, "/memfd:ocolos-c", 1, NULL, 0) == 0,
	      "code versions still mapped after revert + retire");
	check(text_hash(t.pid) == h0, "C0 is not back to its original bytes after the revert");

	fprintf(stderr, "== agent 4: round after the revert (next generation)\n");
	r = agent(t.pid, OP_ROUND, prof);
	check(r.rc == 0 && r.st.generation == 3, "round after revert: %d, generation %u: %s", r.rc,
	      r.st.generation, r.msg);

	fprintf(stderr, "== the newest record overwritten: the other one is used\n");
	uint64_t at[2] = { 0, 0 };
	recs = named_mappings(t.pid, "/memfd:ocolos-state", 0, at, 2);
	check(recs == 2, "%u state records mapped, want 2", recs);
	uint64_t newest = record_seq(t.pid, at[0]) > record_seq(t.pid, at[1]) ? at[0] : at[1];
	garble(t.pid, newest);
	r = agent(t.pid, OP_ROUND, prof);
	check(r.rc == 0 && r.st.generation == 4 && r.st.versions_mapped <= 2,
	      "round with one record garbled: %d, generation %u: %s", r.rc, r.st.generation, r.msg);
	check_free(t.pid);

	fprintf(stderr, "== every record overwritten: OCOLOS_ESTATE, nothing changed\n");
	recs = named_mappings(t.pid, "/memfd:ocolos-state", 0, at, 2);
	for (unsigned i = 0; i < recs && i < 2; i++)
		garble(t.pid, at[i]);
	uint64_t h = text_hash(t.pid);
	unsigned code = named_mappings(t.pid, "/memfd:ocolos-c", 1, NULL, 0);
	r = agent(t.pid, OP_ROUND, prof);
	check(r.rc == OCOLOS_ESTATE && test_contains(r.msg, "state record"),
	      "garbled records: %d %s: %s", r.rc, ocolos_strerror(r.rc), r.msg);
	r = agent(t.pid, OP_REVERT, prof);
	check(r.rc == OCOLOS_ESTATE, "revert with garbled records: %d: %s", r.rc, r.msg);
	check(text_hash(t.pid) == h && named_mappings(t.pid, "/memfd:ocolos-c", 1, NULL, 0) == code,
	      "the target was changed although its records are unusable");
	check_free(t.pid);
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

/* The agent of kill-continue: killed by us after a while, or by itself at
 * its `kill_at`-th log message (0: never) — messages mark the moments a
 * random delay rarely hits: right after unwind tables are registered,
 * right after a switch or an unmap, before the record says so. */
static unsigned agent_messages, agent_kill_at;

static void agent_log(enum ocolos_log_level level, const char *msg, void *user)
{
	test_log(level, msg, user);
	if (++agent_messages == agent_kill_at) {
		fprintf(stderr, "agent: killing myself at message %u\n", agent_messages);
		raise(SIGKILL);
	}
}

/*
 * Agents killed at random moments of continuous rounds (sampling, BOLT,
 * mapping, registering unwind tables, the switch, retiring), each the
 * next agent's problem: it must find the state record, finish or undo what
 * the dead one left, and succeed. Half the kills come after a random
 * delay, half at a random log message of the agent. OCOLOS_TEST_SEED
 * repeats a run.
 */
static void mode_kill_continue(const char *target, int kills)
{
	char *ref = reference(target);
	struct tgt t;
	unsigned seed = getenv("OCOLOS_TEST_SEED") ? (unsigned)atoi(getenv("OCOLOS_TEST_SEED"))
						  : (unsigned)time(NULL);
	fprintf(stderr, "seed %u (OCOLOS_TEST_SEED), %d kills\n", seed, kills);
	srand(seed);
	start_target(&t, target, NULL, NULL);
	test_sleep_ms(WARMUP_MS);
	uint64_t h0 = text_hash(t.pid);
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/rounds.log", tmpdir);
	int judged = 0, first_failed = 0;
	uint32_t last_gen = 0;
	for (int i = 0; i < kills; i++) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		check(fd >= 0, "open %s", log);
		unsigned at_msg = i % 2 ? 1 + (unsigned)(rand() % 40) : 0;
		pid_t a = fork();
		check(a >= 0, "fork");
		if (a == 0) {
			agent_kill_at = at_msg;
			OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 300, .log_fn = agent_log,
				    .log_user = (void *)"agent");
			struct ocolos_ctx *ctx = NULL;
			int rc = ocolos_open_pid(t.pid, &o, &ctx);
			for (int k = 0; !rc || k == 0; k++) {
				OCOLOS_OPTS(ocolos_stats, st);
				if (!rc)
					rc = ocolos_round(ctx, &st);
				dprintf(fd, "%d %u %u %s\n", rc, st.generation, st.versions_mapped,
					rc ? ocolos_last_error(ctx) : "");
				if (rc)
					break;
			}
			_exit(0);
		}
		close(fd);
		unsigned ms = at_msg ? 15000 : 50 + (unsigned)(rand() % 2500);
		uint64_t t0 = test_now_ms();
		while (test_now_ms() - t0 < ms) {
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			if (waitid(P_PID, (id_t)a, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == a)
				break;
			test_sleep_ms(10);
		}
		kill(a, SIGKILL);
		int st = wait_end(a);
		char *lines = slurp(log);
		int rc = -999;
		unsigned gen = 0, mapped = 0;
		int got = sscanf(lines, "%d %u %u", &rc, &gen, &mapped);
		if (at_msg)
			fprintf(stderr, "kill %d at its message %u (%s):\n%s", i, at_msg,
				WIFSIGNALED(st) ? "killed" : "had ended", lines);
		else
			fprintf(stderr, "kill %d after %u ms (%s):\n%s", i, ms,
				WIFSIGNALED(st) ? "killed" : "had ended", lines);
		if (got == 3) {
			/* Its first round came after its predecessor's death. */
			judged++;
			if (rc != 0 || gen <= last_gen || mapped > 2)
				first_failed++;
			check(rc == 0, "agent %d could not continue after its predecessor was killed: "
			      "%s", i, lines);
			check(gen > last_gen, "agent %d made generation %u after %u", i, gen, last_gen);
		}
		for (char *l = lines; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
			if (sscanf(l, "%d %u", &rc, &gen) == 2 && rc == 0 && gen > last_gen)
				last_gen = gen;
		free(lines);
		check_free(t.pid);
	}
	fprintf(stderr, "%d agents started after a kill finished their first round, %d failed\n",
		judged, first_failed);
	fprintf(stderr, "== a last agent: round, revert, retire\n");
	struct agent_res r = agent(t.pid, OP_ROUND, 500);
	check(r.rc == 0 && r.st.generation > last_gen && r.st.versions_mapped <= 2,
	      "last round: %d, generation %u: %s", r.rc, r.st.generation, r.msg);
	r = agent(t.pid, OP_REVERT, 500);
	check(r.rc == 0, "revert: %d: %s", r.rc, r.msg);
	/* A thread may still be inside the version for a while (its frames
	 * return to C0): retire is tried again, as a caller would. */
	for (int k = 0; k < 10; k++) {
		r = agent(t.pid, OP_RETIRE, 500);
		check(r.rc == 0, "retire: %d: %s", r.rc, r.msg);
		if (!r.st.versions_mapped)
			break;
		test_sleep_ms(300);
	}
	check(r.st.versions_mapped == 0, "%u versions still mapped after revert + retire",
	      r.st.versions_mapped);
	check(text_hash(t.pid) == h0, "C0 is not back to its original bytes after the revert");
	unsigned left = named_mappings(t.pid, "/memfd:ocolos-c", 1, NULL, 0);
	fprintf(stderr, "code mappings left after revert + retire: %u (kept for good: an agent "
		"died while registering or deregistering unwind tables)\n", left);
	check(left <= (unsigned)kills / 3, "%u code mappings left after revert + retire", left);
	check_free(t.pid);
	finish(&t, ref, 0);
	check_no_children();
	free(ref);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *a = argc > 2 ? argv[2] : NULL, *b = argc > 3 ? argv[3] : NULL;
	const char *c = argc > 4 ? argv[4] : NULL;
	const char *sc = getenv("OCOLOS_TEST_SCALE");
	scale = sc && atoi(sc) > 0 && atoi(sc) <= 50 ? (unsigned)atoi(sc) : 1;
	snprintf(scale_s, sizeof(scale_s), "%u", scale);
	/* kill-continue runs as long as its kills need. */
	test_watchdog(argc > 3 && !strcmp(argv[1], "kill-continue")
			      ? scaled(60 + 12 * (unsigned)atoi(argv[3]))
			      : scaled(170));
	test_require_perf();
	snprintf(tmpdir, sizeof(tmpdir), "%s/ocolos-pid.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	check(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
	atexit(cleanup_tmp);
	int need_b = !strcmp(mode, "stale") || !strcmp(mode, "kill-continue") || !strcmp(mode, "boltfail") ||
		     !strcmp(mode, "agent") || !strcmp(mode, "agent-kill") ||
		     !strcmp(mode, "supervise") || !strcmp(mode, "supervise-round") ||
		     !strcmp(mode, "agent-cancel") || !strcmp(mode, "agent-die-at");
	int need_c = !strcmp(mode, "agent-cancel") || !strcmp(mode, "agent-die-at");
	check(!strcmp(mode, "gone") || (a && (!need_b || b) && (!need_c || c)),
	      "usage: %s MODE TARGET [OTHER|SCRIPT|TOOL] [SCRIPT] (see the file's header)", argv[0]);

	if (!strcmp(mode, "round"))
		mode_round(a);
	else if (!strcmp(mode, "seize"))
		mode_seize(a);
	else if (!strcmp(mode, "traceme"))
		mode_traceme(a);
	else if (!strcmp(mode, "gone"))
		mode_gone();
	else if (!strcmp(mode, "exiting"))
		mode_exiting(a, 0);
	else if (!strcmp(mode, "exiting-zombie"))
		mode_exiting(a, 1);
	else if (!strcmp(mode, "norelocs"))
		mode_norelocs(a);
	else if (!strcmp(mode, "stale"))
		mode_stale(a, b);
	else if (!strcmp(mode, "boltfail"))
		mode_boltfail(a, b);
	else if (!strcmp(mode, "reserve"))
		mode_reserve(a);
	else if (!strcmp(mode, "artifact"))
		mode_artifact(a);
	else if (!strcmp(mode, "agent"))
		mode_agent(a, b);
	else if (!strcmp(mode, "agent-kill"))
		mode_agent_kill(a, b);
	else if (!strcmp(mode, "agent-die-at"))
		mode_agent_die_at(a, b, c);
	else if (!strcmp(mode, "agent-cancel"))
		mode_agent_cancel(a, b, c);
	else if (!strcmp(mode, "supervise"))
		mode_supervise(a, b, 1);
	else if (!strcmp(mode, "supervise-round"))
		mode_supervise(a, b, 0);
	else if (!strcmp(mode, "continue"))
		mode_continue(a);
	else if (!strcmp(mode, "kill-continue"))
		mode_kill_continue(a, atoi(b));
	else
		check(0, "unknown mode '%s'", mode);
	printf("ok %s\n", mode);
	return 0;
}

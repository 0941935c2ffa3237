/*
 * Implementation of the shared test harness declared in common.h. Uses the
 * library's ocolos_where_self() to see where the process runs after a round;
 * everything else is plain POSIX / Linux.
 */
#include "common.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


uint64_t test_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t test_now_ms(void)
{
	return test_now_ns() / 1000000u;
}

void test_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

pid_t test_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void watchdog_fired(int sig)
{
	static const char msg[] = "FAIL: watchdog: the test hung\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

void test_watchdog(unsigned seconds)
{
	signal(SIGALRM, watchdog_fired);
	alarm(seconds);
}

void test_log(enum ocolos_log_level level, const char *msg, void *user)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *name = (unsigned)level < 4 ? names[level] : "?";

	fprintf(stderr, "%s[ocolos %s] %s\n", user ? (const char *)user : "",
		name, msg);
}

void test_print_stats(int rc, const struct ocolos_stats *st)
{
	fprintf(stderr,
		"round: rc=%d (%s)\n"
		"  last_error: %s\n"
		"  samples=%llu in_binary=%llu threads_sampled=%u\n"
		"  functions_moved=%u c1=[0x%llx, +%llu)\n"
		"  call_sites_patched=%u pointer_slots_patched=%u "
		"threads_stopped=%u\n"
		"  profile=%.1fms bolt=%.1fms pause=%.3fms round=%.1fms\n",
		rc, ocolos_strerror(rc), ocolos_last_error(NULL),
		(unsigned long long)st->samples,
		(unsigned long long)st->samples_in_binary, st->threads_sampled,
		st->functions_moved, (unsigned long long)st->c1_addr,
		(unsigned long long)st->c1_bytes, st->call_sites_patched,
		st->pointer_slots_patched, st->threads_stopped,
		st->profile_ns / 1e6, st->bolt_ns / 1e6, st->pause_ns / 1e6,
		st->round_ns / 1e6);
}

int test_contains(const char *s, const char *needle)
{
	return s && needle && strstr(s, needle) != NULL;
}

/* ---- /proc/self/maps ---------------------------------------------------- */

struct maps_line {
	uint64_t lo, hi;
	char perms[8];
	char path[PATH_MAX];
};

/* Parse one line of /proc/self/maps; returns 0 on success. */
static int maps_parse(const char *line, struct maps_line *ml)
{
	unsigned long long lo, hi;
	int pathpos = 0;
	size_t len;

	if (sscanf(line, "%llx-%llx %7s %*x %*x:%*x %*u %n", &lo, &hi,
		   ml->perms, &pathpos) < 3)
		return -1;
	ml->lo = lo;
	ml->hi = hi;
	ml->path[0] = '\0';
	if (pathpos > 0) {
		snprintf(ml->path, sizeof(ml->path), "%s", line + pathpos);
		len = strlen(ml->path);
		while (len > 0 && (ml->path[len - 1] == '\n' ||
				   ml->path[len - 1] == ' '))
			ml->path[--len] = '\0';
	}
	return 0;
}

/* Call `fn` on every line of /proc/self/maps. */
static void maps_each(void (*fn)(const struct maps_line *, void *), void *arg)
{
	struct maps_line ml;
	char line[PATH_MAX + 128];
	FILE *f = fopen("/proc/self/maps", "r");

	check(f != NULL, "open /proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (maps_parse(line, &ml) == 0)
			fn(&ml, arg);
	}
	fclose(f);
}

struct exe_map_arg {
	struct test_exe_map *m;
	char exe[PATH_MAX];
};

static void exe_map_cb(const struct maps_line *ml, void *p)
{
	struct exe_map_arg *a = p;
	struct test_exe_map *m = a->m;

	if (strcmp(ml->path, a->exe) != 0)
		return;
	check(m->n < TEST_MAX_RANGES, "too many mappings of %s", a->exe);
	m->r[m->n].lo = ml->lo;
	m->r[m->n].hi = ml->hi;
	m->r[m->n].exec = strchr(ml->perms, 'x') != NULL;
	m->n++;
}

void test_exe_map_load(struct test_exe_map *m)
{
	struct exe_map_arg a;
	ssize_t len;

	memset(m, 0, sizeof(*m));
	a.m = m;
	len = readlink("/proc/self/exe", a.exe, sizeof(a.exe) - 1);
	check(len > 0, "readlink /proc/self/exe: %s", strerror(errno));
	a.exe[len] = '\0';
	maps_each(exe_map_cb, &a);
	check(m->n > 0, "no mapping of %s in /proc/self/maps", a.exe);
}

int test_exe_map_contains(const struct test_exe_map *m, uint64_t addr)
{
	for (size_t i = 0; i < m->n; i++) {
		if (addr >= m->r[i].lo && addr < m->r[i].hi)
			return 1;
	}
	return 0;
}

uint64_t test_exe_text_hash(void)
{
	struct test_exe_map m;
	uint64_t h = 0xcbf29ce484222325ULL;

	test_exe_map_load(&m);
	for (size_t i = 0; i < m.n; i++) {
		if (!m.r[i].exec)
			continue;
		for (const volatile unsigned char *p =
			     (const unsigned char *)(uintptr_t)m.r[i].lo;
		     p < (const unsigned char *)(uintptr_t)m.r[i].hi; p++) {
			h ^= *p;
			h *= 0x100000001b3ULL;
		}
	}
	return h;
}

static int is_fileless(const char *path)
{
	size_t len = strlen(path);

	return path[0] == '\0' || strncmp(path, "/memfd:", 7) == 0 ||
	       strncmp(path, "[anon", 5) == 0 ||
	       (len > 10 && strcmp(path + len - 10, " (deleted)") == 0);
}

static void anon_exec_cb(const struct maps_line *ml, void *p)
{
	unsigned *n = p;

	if (strchr(ml->perms, 'x') && is_fileless(ml->path)) {
		fprintf(stderr, "  fileless executable mapping: %llx-%llx %s %s\n",
			(unsigned long long)ml->lo, (unsigned long long)ml->hi,
			ml->perms, ml->path);
		(*n)++;
	}
}

unsigned test_anon_exec_mappings(void)
{
	unsigned n = 0;

	maps_each(anon_exec_cb, &n);
	return n;
}

struct reserved_arg {
	uint64_t lo, hi, bytes;
};

static void reserved_cb(const struct maps_line *ml, void *p)
{
	struct reserved_arg *a = p;

	if (!strcmp(ml->perms, "---p") && ml->path[0] == '\0' && ml->hi > a->lo &&
	    ml->lo < a->hi)
		a->bytes += ml->hi - ml->lo;
}

uint64_t test_reserved_near_exe(void)
{
	struct test_exe_map m;
	struct reserved_arg a = { UINT64_MAX, 0, 0 };
	const uint64_t reach = 4ull << 30;

	/* Around the code only: the library maps the binary's file read-only
	 * elsewhere while it models it. */
	test_exe_map_load(&m);
	for (size_t i = 0; i < m.n; i++) {
		if (!m.r[i].exec)
			continue;
		if (m.r[i].lo < a.lo)
			a.lo = m.r[i].lo;
		if (m.r[i].hi > a.hi)
			a.hi = m.r[i].hi;
	}
	a.lo = a.lo > reach ? a.lo - reach : 0;
	a.hi += reach;
	maps_each(reserved_cb, &a);
	return a.bytes;
}

static void wx_cb(const struct maps_line *ml, void *p)
{
	(void)p;
	check(!(strchr(ml->perms, 'w') && strchr(ml->perms, 'x')),
	      "writable+executable mapping left: %llx-%llx %s %s",
	      (unsigned long long)ml->lo, (unsigned long long)ml->hi,
	      ml->perms, ml->path);
}

void test_check_no_wx(void)
{
	maps_each(wx_cb, NULL);
}

void test_check_no_children(void)
{
	int status;
	pid_t pid = waitpid(-1, &status, WNOHANG);

	check(pid == -1 && errno == ECHILD,
	      "a child process is left behind (waitpid -> %d): the library "
	      "must kill and reap llvm-bolt",
	      (int)pid);
}

/* ---- a thread blocked in read(2) on a pipe ------------------------------- */

static struct {
	int fds[2];
	pthread_t th;
	ssize_t got;
	int err;
	unsigned char byte;
} blocker;

static void *blocker_main(void *arg)
{
	(void)arg;
	blocker.got = read(blocker.fds[0], &blocker.byte, 1);
	blocker.err = errno;
	return NULL;
}

void test_blocker_start(void)
{
	check(pipe(blocker.fds) == 0, "pipe: %s", strerror(errno));
	check(pthread_create(&blocker.th, NULL, blocker_main, NULL) == 0,
	      "pthread_create");
}

int test_blocker_release(void)
{
	unsigned char c = 'k';

	check(write(blocker.fds[1], &c, 1) == 1, "write: %s", strerror(errno));
	check(pthread_join(blocker.th, NULL) == 0, "pthread_join");
	check(blocker.got == 1,
	      "blocked read() returned %zd (%s): a thread blocked in a "
	      "syscall must not see the stop signal (SA_RESTART)",
	      blocker.got, strerror(blocker.err));
	check(blocker.byte == c, "read() returned byte %d", blocker.byte);
	close(blocker.fds[0]);
	close(blocker.fds[1]);
	return blocker.byte;
}

/* ---- after a successful round -------------------------------------------- */

uint64_t test_stub_target(uint64_t addr)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
#if defined(__aarch64__)
	uint32_t w[2];
	uint64_t to;
	memcpy(w, p, 8);
	if (w[0] == 0x58000050u && w[1] == 0xd61f0200u) { /* ldr x16, #8; br x16 */
		memcpy(&to, p + 8, 8);
		return to;
	}
#else
	int32_t rel;
	if (p[0] == 0xe9 && p[5] == 0xcc) { /* jmp rel32; int3 */
		memcpy(&rel, p + 1, 4);
		return addr + 5 + (uint64_t)(int64_t)rel;
	}
#endif
	return addr;
}

int test_version_range(unsigned gen, uint64_t *lo, uint64_t *hi)
{
	char want[64], line[512];
	snprintf(want, sizeof(want), "/memfd:ocolos-c%u ", gen);
	FILE *m = fopen("/proc/self/maps", "re");
	int found = 0;
	while (m && !found && fgets(line, sizeof(line), m))
		found = strstr(line, want) && strstr(line, "r-xp") &&
			sscanf(line, "%" SCNx64 "-%" SCNx64, lo, hi) == 2;
	if (m)
		fclose(m);
	return found;
}

static void info_lines(enum ocolos_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level <= OCOLOS_LOG_INFO)
		fprintf(stderr, "  ocolos: %s\n", msg);
}

void test_retire_round(unsigned k, unsigned profile_ms, struct ocolos_stats *st)
{
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = profile_ms, .log_fn = info_lines);
	int rc = ocolos_optimize_self(&o, st);
	fprintf(stderr, "round %u: rc %d gen %u mapped %u retired %u moved %u%s%s\n", k, rc,
		st->generation, st->versions_mapped, st->versions_retired, st->functions_moved,
		rc ? ": " : "", rc ? ocolos_last_error(NULL) : "");
	check(rc == 0, "round %u failed: %s", k, ocolos_last_error(NULL));
}

unsigned test_retire_first(struct ocolos_stats *st, uint64_t *lo, uint64_t *hi)
{
	test_retire_round(1, 600, st);
	check(test_version_range(st->generation, lo, hi), "C%u is not in /proc/self/maps",
	      st->generation);
	return st->generation;
}

int test_in_c1(const struct ocolos_stats *st, uint64_t addr)
{
	uint64_t to = test_stub_target(addr);
	return to >= st->c1_addr && to - st->c1_addr < st->c1_bytes;
}

#if defined(__aarch64__)
#define TEST_BRANCH_REACH (128ULL << 20) /* BL imm26 */
#else
#define TEST_BRANCH_REACH (2ULL << 30) /* call rel32 */
#endif

/* C1 must be reachable by a direct call from every byte of C0's code. */
static void check_c1_placement(const struct ocolos_stats *st)
{
	struct test_exe_map m;
	uint64_t c1_end = st->c1_addr + st->c1_bytes;

	test_exe_map_load(&m);
	for (size_t i = 0; i < m.n; i++) {
		uint64_t lo = m.r[i].lo, hi = m.r[i].hi;

		check(c1_end <= lo || st->c1_addr >= hi,
		      "C1 [%llx,%llx) overlaps the binary's mapping [%llx,%llx)",
		      (unsigned long long)st->c1_addr,
		      (unsigned long long)c1_end, (unsigned long long)lo,
		      (unsigned long long)hi);
		if (!m.r[i].exec)
			continue;
		uint64_t span_lo = lo < st->c1_addr ? lo : st->c1_addr;
		uint64_t span_hi = hi > c1_end ? hi : c1_end;

		check(span_hi - span_lo < TEST_BRANCH_REACH,
		      "C1 [%llx,%llx) is out of direct-branch reach of C0 "
		      "code [%llx,%llx)",
		      (unsigned long long)st->c1_addr,
		      (unsigned long long)c1_end, (unsigned long long)lo,
		      (unsigned long long)hi);
	}
}

void test_check_round(int rc, const struct ocolos_stats *st, unsigned workers,
		      unsigned blocked)
{
	test_print_stats(rc, st);
	check(rc == 0, "ocolos_optimize_self: %s: %s", ocolos_strerror(rc),
	      ocolos_last_error(NULL));
	check(st->samples > 0 && st->samples_in_binary > 0 &&
		      st->samples_in_binary <= st->samples,
	      "samples=%llu in_binary=%llu", (unsigned long long)st->samples,
	      (unsigned long long)st->samples_in_binary);
	check(st->threads_sampled >= workers, "threads_sampled=%u < %u",
	      st->threads_sampled, workers);
	check(st->functions_moved > 0, "no function moved");
	check(st->call_sites_patched > 0, "no call site patched");
	check(st->pointer_slots_patched > 0,
	      "no v-table / function-pointer slot patched");
	check(st->c1_addr != 0 && st->c1_bytes > 0, "no C1 mapping reported");
	check(st->threads_stopped >= workers + blocked,
	      "threads_stopped=%u, expected >= %u", st->threads_stopped,
	      workers + blocked);
	check(st->pause_ns > 0 && st->pause_ns < st->round_ns,
	      "pause_ns=%llu round_ns=%llu", (unsigned long long)st->pause_ns,
	      (unsigned long long)st->round_ns);
	check(st->profile_ns > 0 && st->bolt_ns > 0 &&
		      st->profile_ns + st->bolt_ns <= st->round_ns,
	      "profile_ns=%llu bolt_ns=%llu round_ns=%llu",
	      (unsigned long long)st->profile_ns,
	      (unsigned long long)st->bolt_ns,
	      (unsigned long long)st->round_ns);
	check_c1_placement(st);
	test_check_no_wx();
}

double test_c1_share(const struct ocolos_stats *st, uint32_t hz,
		     uint32_t window_ms, size_t min_samples)
{
	/* Up to four windows, their samples added, until min_samples land in
	 * the binary: a loaded machine (qemu-user beside other jobs) gives
	 * the process less CPU per window, not a different share. */
	unsigned long long in_c0 = 0, in_c1 = 0;
	(void)st;
	for (int i = 0; i < 4 && in_c0 + in_c1 < min_samples; i++) {
		OCOLOS_OPTS(ocolos_where_opts, o, .window_ms = window_ms, .sample_hz = hz);
		OCOLOS_OPTS(ocolos_where_result, w);
		int rc = ocolos_where_self(&o, &w);
		check(rc == 0, "ocolos_where_self: %s: %s", ocolos_strerror(rc),
		      ocolos_last_error(NULL));
		fprintf(stderr,
			"after round (window %d): %llu samples: %llu in C0, %llu in C1, %llu "
			"elsewhere\n", i + 1, (unsigned long long)w.samples,
			(unsigned long long)w.in_original, (unsigned long long)w.in_optimized,
			(unsigned long long)w.elsewhere);
		in_c0 += w.in_original;
		in_c1 += w.in_optimized;
	}
	check(in_c0 + in_c1 >= min_samples,
	      "only %llu samples in the binary after the round, in 4 windows (want >= %zu)",
	      in_c0 + in_c1, min_samples);
	return (double)in_c1 / (double)(in_c0 + in_c1);
}

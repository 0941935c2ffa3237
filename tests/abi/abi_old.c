/*
 * A program of libocolos 0.1 run against today's library: compiled with
 * the 0.1 header (ocolos-0.1.h, a verbatim copy) and linked, as it was in
 * 0.1, against a libocolos.so.0 whose calls are versioned OCOLOS_0.1 (the
 * stand-in stub01.c; run_old.sh checks that every ocolos_* reference of
 * this binary is @OCOLOS_0.1). At run time the loader gives it today's
 * libocolos.so.0, whose OCOLOS_0.1 calls (lib/api/compat01.c) must read
 * the 0.1 option structs and write the 0.1 result structs exactly, never
 * a byte past them: each result here is followed by GUARD bytes of
 * GUARD_BYTE that must come back untouched.
 *
 * Checked, in this order (failures first: they take no time):
 *   - every 0.1 call is reachable; those on a NULL context refuse it;
 *   - options read at their 0.1 offsets: a bad sampler / edges value is
 *     refused naming that field; a bad sz; a non-zero byte past the struct
 *     names its offset; non-zero tail padding is accepted, as 0.1 did;
 *   - ocolos_last_error(NULL) says why after a failure;
 *   - ocolos_open_pid() of a process that is gone: OCOLOS_ENOPROC;
 *   - a real round (ocolos_optimize_self), whose stats are consistent with
 *     the options given and with each other (so no field landed at the
 *     wrong offset), then where / revert / where / re-apply / where.
 * argv: llvm-bolt. Exit 77 (skipped) without perf_event access.
 * Build: -O2 -fno-jump-tables -Wl,--emit-relocs (a round's target).
 */
#include <dirent.h>
#include <ftw.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ocolos-0.1.h"

#include "check.h"
#include "hot.h"

_Static_assert(OCOLOS_VERSION_MINOR == 1, "abi_old must be built against the 0.1 header");

/*
 * The 0.1 layouts (x86-64 and AArch64, LP64), by hand from ocolos-0.1.h:
 *  ocolos_self_opts: sz 0, profile_ms 8, sample_hz 12, bolt_path 16,
 *    bolt_timeout_ms 24, stop_timeout_ms 28, stop_signal 32, (pad 36),
 *    binary_path 40, tmp_dir 48, keep_work_dir 56, (pad 60), log_fn 64,
 *    log_user 72, bolt_extra_args 80, sampler 88, edges 92,
 *    redirect_writable_slots 96: its last field ends at 100, and the
 *    struct, aligned to 8, is 104 (4 bytes of tail padding).
 *  ocolos_pid_opts: the same but call_timeout_ms at 32 instead of
 *    stop_signal: 100 / 104.
 *  ocolos_stats: 8+8+4+4+8+8+4+4+4 = 52, padded to 56 for profile_ns;
 *    four u64 to 88, sampler[16] to 104, entries_patched 104,
 *    entries_blocked 108: 112.
 *  ocolos_switch_stats: four u32 (16), pause_ns 16, entries 24: 32.
 *  ocolos_where_result: four u64: 32.
 * If the copy of the header changed, these fail before anything runs.
 */
_Static_assert(offsetof(struct ocolos_self_opts, sampler) == 88, "0.1 layout");
_Static_assert(offsetof(struct ocolos_self_opts, redirect_writable_slots) == 96, "0.1 layout");
_Static_assert(sizeof(struct ocolos_self_opts) == 104, "0.1 layout");
_Static_assert(sizeof(struct ocolos_pid_opts) == 104, "0.1 layout");
_Static_assert(offsetof(struct ocolos_stats, sampler) == 88, "0.1 layout");
_Static_assert(sizeof(struct ocolos_stats) == 112, "0.1 layout");
_Static_assert(sizeof(struct ocolos_switch_stats) == 32, "0.1 layout");
_Static_assert(sizeof(struct ocolos_where_result) == 32, "0.1 layout");

/* Where the tail padding of the 0.1 option structs starts. */
#define SELF_OPTS_END (offsetof(struct ocolos_self_opts, redirect_writable_slots) + sizeof(int))
#define PID_OPTS_END (offsetof(struct ocolos_pid_opts, redirect_writable_slots) + sizeof(int))

#define GUARD 64
#define GUARD_BYTE 0xa5
/* A 0.1 result struct followed by its guard. */
#define GUARDED(name, type)                                                    \
	struct name {                                                          \
		type v;                                                        \
		unsigned char guard[GUARD];                                    \
	}
GUARDED(g_stats, struct ocolos_stats);
GUARDED(g_switch, struct ocolos_switch_stats);
GUARDED(g_where, struct ocolos_where_result);

static void guard_fill(void *g, size_t n)
{
	memset(g, GUARD_BYTE, n);
}

/* Index of the first guard byte written, or -1. */
static int guard_hit(const unsigned char *g)
{
	for (int i = 0; i < GUARD; i++)
		if (g[i] != GUARD_BYTE)
			return i;
	return -1;
}

#define CHECK_GUARD(x, what)                                                   \
	expect(guard_hit((x).guard) < 0, "%s wrote byte %d past the 0.1 struct (%zu bytes)", \
	       what, guard_hit((x).guard), sizeof((x).v))

static const char *last_error(void)
{
	const char *m = ocolos_last_error(NULL);
	return m ? m : "(null)";
}

/* rc must be `want` and the thread's last error must contain `needle`. */
static void expect_refused(int rc, int want, const char *needle, const char *what)
{
	const char *m = last_error();
	fprintf(stderr, "%s: rc %d, \"%s\"\n", what, rc, m);
	expect(rc == want, "%s: rc %d (%s), want %d", what, rc, ocolos_strerror(rc), want);
	expect(m[0] != '\0', "%s: ocolos_last_error(NULL) is empty after a failure", what);
	expect(strstr(m, needle) != NULL, "%s: the message does not say '%s': %s", what, needle, m);
}

struct log_seen {
	int calls, other_user;
};
static struct log_seen seen;

static void log_cb(enum ocolos_log_level level, const char *msg, void *user)
{
	seen.calls++;
	seen.other_user += user != &seen;
	(void)level;
	(void)msg;
}

/* Every 0.1 call on a NULL context refuses it, writing nothing past the
 * 0.1 structs; with the calls below this binds every name of the 0.1
 * header (run_old.sh checks their versions). */
static void null_context_calls(void)
{
	struct g_stats st;
	struct g_switch sw;
	struct g_where w;
	guard_fill(&st, sizeof(st));
	guard_fill(&sw, sizeof(sw));
	guard_fill(&w, sizeof(w));
	int (*const stages[])(struct ocolos_ctx *, struct ocolos_stats *) = {
		ocolos_profile, ocolos_optimize, ocolos_replace, ocolos_round };
	for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
		expect(stages[i](NULL, &st.v) == OCOLOS_EINVAL, "stage %zu on a NULL context", i);
	expect(ocolos_revert(NULL, &sw.v) == OCOLOS_EINVAL, "revert on a NULL context");
	expect(ocolos_reapply(NULL, &sw.v) == OCOLOS_EINVAL, "reapply on a NULL context");
	expect(ocolos_where(NULL, NULL, &w.v) == OCOLOS_EINVAL, "where on a NULL context");
	ocolos_close(NULL);
	CHECK_GUARD(st, "a stage on a NULL context");
	CHECK_GUARD(sw, "revert/reapply on a NULL context");
	CHECK_GUARD(w, "where on a NULL context");
	/* No round ran: nothing to revert (0.1: "OCOLOS_EINVAL if no round's
	 * code is in use"). */
	expect(ocolos_revert_self(&sw.v) == OCOLOS_EINVAL, "revert before any round");
	CHECK_GUARD(sw, "ocolos_revert_self");
	expect(strstr(ocolos_strerror(OCOLOS_ENOPROC), "ENOPROC") != NULL, "strerror: %s",
	       ocolos_strerror(OCOLOS_ENOPROC));
}

/* Options are read at their 0.1 offsets, with 0.1's size rule. */
static void bad_options(void)
{
	struct g_stats st;
	guard_fill(&st, sizeof(st));

	/* sampler is at 88 in 0.1 (bolt_extra_args' place in 0.2's struct):
	 * 42 refused by name means it was read from there. Likewise edges. */
	OCOLOS_OPTS(ocolos_self_opts, bad_sampler, .sampler = 42);
	expect_refused(ocolos_optimize_self(&bad_sampler, &st.v), OCOLOS_EINVAL, "sampler 42",
		       "0.1 opts.sampler = 42");
	OCOLOS_OPTS(ocolos_self_opts, bad_edges, .edges = 42);
	expect_refused(ocolos_optimize_self(&bad_edges, &st.v), OCOLOS_EINVAL, "edges 42",
		       "0.1 opts.edges = 42");
	CHECK_GUARD(st, "a refused ocolos_optimize_self");

	/* sz below sizeof(size_t): not filled by OCOLOS_OPTS. */
	OCOLOS_OPTS(ocolos_self_opts, no_sz);
	no_sz.sz = 0;
	expect_refused(ocolos_optimize_self(&no_sz, NULL), OCOLOS_EINVAL, "sz",
		       "0.1 opts.sz = 0");

	/* A newer 0.1.x program's field: 8 bytes past the struct, one
	 * non-zero. 0.1 knew sizeof = 104 bytes, so the first unknown byte,
	 * the one named, is at 104. */
	struct {
		struct ocolos_self_opts o;
		unsigned char more[8];
	} newer;
	memset(&newer, 0, sizeof(newer));
	newer.o.sz = sizeof(newer);
	newer.more[0] = 1;
	expect_refused(ocolos_optimize_self(&newer.o, NULL), OCOLOS_EINVAL, "offset 104",
		       "0.1 opts with a non-zero byte at 104");

	/* Tail padding (100..103) that is not zero, as in a struct filled field
	 * by field rather than with OCOLOS_OPTS: 0.1 read sz bytes up to
	 * sizeof and never looked at padding, so it accepted this; so must
	 * its compatibility call. stop_signal = 1 (not a real-time signal) is
	 * refused after the options are read: that refusal, not one naming
	 * offset 100, shows the padding was accepted. */
	OCOLOS_OPTS(ocolos_self_opts, padded, .stop_signal = 1);
	((unsigned char *)&padded)[SELF_OPTS_END] = 1;
	expect_refused(ocolos_optimize_self(&padded, NULL), OCOLOS_EINVAL, "stop_signal",
		       "0.1 opts with non-zero tail padding");
}

/* A pid that was just reaped: nothing has it (pids are not reused until
 * the counter wraps). */
static pid_t gone_pid(void)
{
	pid_t pid = fork();
	check(pid >= 0, "fork");
	if (pid == 0)
		_exit(0);
	check(waitpid(pid, NULL, 0) == pid, "waitpid");
	return pid;
}

static void open_gone_pid(void)
{
	pid_t pid = gone_pid();
	char name[32];
	snprintf(name, sizeof(name), "%d", (int)pid);
	struct ocolos_ctx *ctx = (struct ocolos_ctx *)&ctx; /* must be set to NULL */
	OCOLOS_OPTS(ocolos_pid_opts, po, .profile_ms = 100);
	expect_refused(ocolos_open_pid(pid, &po, &ctx), OCOLOS_ENOPROC, name,
		       "0.1 ocolos_open_pid of a reaped pid");
	expect(ctx == NULL, "*ctx is %p after a failed open, want NULL", (void *)ctx);
	/* The same with non-zero tail padding (see bad_options): accepted,
	 * so the refusal is still the pid's. */
	((unsigned char *)&po)[PID_OPTS_END] = 1;
	expect_refused(ocolos_open_pid(pid, &po, &ctx), OCOLOS_ENOPROC, name,
		       "0.1 ocolos_open_pid with non-zero tail padding");
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Entries in `dir` (not . and ..). */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

/* 1 if `addr` lies in an executable mapping of this process. */
static int in_exec_mapping(unsigned long long addr)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512], perms[8];
	unsigned long long lo, hi;
	int found = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && addr >= lo && addr < hi)
			found = perms[2] == 'x';
	if (f)
		fclose(f);
	return found;
}

static void where(const char *when, struct ocolos_where_result *out)
{
	struct g_where w;
	guard_fill(&w, sizeof(w));
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = 200);
	int rc = ocolos_where_self(&wo, &w.v);
	expect(rc == 0, "where %s: %s", when, last_error());
	CHECK_GUARD(w, "ocolos_where_self");
	/* where() sorts every sample into exactly one of the three. */
	expect(w.v.samples == w.v.in_original + w.v.in_optimized + w.v.elsewhere,
	       "where %s: %llu samples != %llu + %llu + %llu", when,
	       (unsigned long long)w.v.samples, (unsigned long long)w.v.in_original,
	       (unsigned long long)w.v.in_optimized, (unsigned long long)w.v.elsewhere);
	expect(w.v.samples > 20, "where %s: only %llu samples", when,
	       (unsigned long long)w.v.samples);
	fprintf(stderr, "where %s: %llu samples, %llu in C1\n", when,
		(unsigned long long)w.v.samples, (unsigned long long)w.v.in_optimized);
	*out = w.v;
}

static void check_switch(const char *what, int rc, const struct ocolos_stats *st,
			 const struct g_switch *sw)
{
	expect(rc == 0, "%s: %s", what, last_error());
	CHECK_GUARD(*sw, what);
	/* Both write back exactly what the round wrote (same plan, nothing
	 * else touched those bytes): its call sites and pointer slots. */
	expect(sw->v.call_sites == st->call_sites_patched &&
	       sw->v.pointer_slots == st->pointer_slots_patched && sw->v.mismatched == 0,
	       "%s rewrote %u call sites, %u slots (%u mismatched); the round patched %u, %u",
	       what, sw->v.call_sites, sw->v.pointer_slots, sw->v.mismatched,
	       st->call_sites_patched, st->pointer_slots_patched);
	/* Every thread but the caller: the two workers. */
	expect(sw->v.threads_stopped == 2 && sw->v.pause_ns > 0,
	       "%s: %u threads stopped for %llu ns", what, sw->v.threads_stopped,
	       (unsigned long long)sw->v.pause_ns);
}

static void real_round(const char *bolt)
{
	char dir[] = "/tmp/ocolos-abi-old.XXXXXX";
	check(mkdtemp(dir), "mkdtemp");
	/* Every option a value whose effect can be seen, so that one read
	 * at a wrong offset shows: sample_hz and profile_ms in the stats,
	 * tmp_dir + keep_work_dir as the work directory left in `dir`,
	 * log_fn + log_user as calls with our pointer. */
	OCOLOS_OPTS(ocolos_self_opts, o, .profile_ms = 800, .sample_hz = 2000, .bolt_path = bolt,
		    .tmp_dir = dir, .keep_work_dir = 1, .log_fn = log_cb, .log_user = &seen,
		    .sampler = OCOLOS_SAMPLER_PERF_IP);
	struct g_stats g;
	guard_fill(&g, sizeof(g));
	int rc = ocolos_optimize_self(&o, &g.v);
	const struct ocolos_stats *st = &g.v;
	fprintf(stderr,
		"round: rc %d (%s) sampler '%.16s' samples %llu (%llu in binary, %u threads) "
		"moved %u c1 0x%llx+%llu sites %u slots %u stopped %u entries %u/%u "
		"profile %.0f ms bolt %.0f ms pause %.3f ms round %.0f ms\n",
		rc, rc ? last_error() : "ok", st->sampler, (unsigned long long)st->samples,
		(unsigned long long)st->samples_in_binary, st->threads_sampled, st->functions_moved,
		(unsigned long long)st->c1_addr, (unsigned long long)st->c1_bytes,
		st->call_sites_patched, st->pointer_slots_patched, st->threads_stopped,
		st->entries_patched, st->entries_blocked, st->profile_ns / 1e6, st->bolt_ns / 1e6,
		st->pause_ns / 1e6, st->round_ns / 1e6);
	check(rc == 0, "the round failed: %s", last_error());
	CHECK_GUARD(g, "ocolos_optimize_self");

	expect(!strncmp(st->sampler, "perf-ip", sizeof(st->sampler)), "sampler '%.16s', asked perf-ip",
	       st->sampler);
	/* profile_ms 800, not the default 4000: the window took 0.8 s (and
	 * some scheduling), well under 4. */
	expect(st->profile_ns >= 800000000ull && st->profile_ns < 3000000000ull,
	       "profile_ns %llu for profile_ms = 800", (unsigned long long)st->profile_ns);
	/* sample_hz 2000, not 10000: each thread gives at most one sample per
	 * 1/2000 s of CPU time, and has at most the window's length of it;
	 * 1.5x for timer slack. The default would give up to 5x this. */
	double max_samples = 2000.0 * (double)st->profile_ns / 1e9 * st->threads_sampled * 1.5;
	expect(st->samples > 0 && (double)st->samples <= max_samples,
	       "%llu samples, at most %.0f at sample_hz 2000", (unsigned long long)st->samples,
	       max_samples);
	expect(st->samples_in_binary > 0 && st->samples_in_binary <= st->samples,
	       "%llu of %llu samples in the binary", (unsigned long long)st->samples_in_binary,
	       (unsigned long long)st->samples);
	expect(st->threads_sampled >= 2, "%u threads sampled, the 2 workers at least",
	       st->threads_sampled);
	/* hot.c's functions move, their calls and const-table slots with them;
	 * C1 is code, mapped executable; the world stopped for the 2 workers. */
	expect(st->functions_moved >= 1 && st->call_sites_patched >= 1,
	       "%u functions moved, %u call sites", st->functions_moved, st->call_sites_patched);
	expect(st->c1_addr && st->c1_bytes && in_exec_mapping(st->c1_addr),
	       "C1 at 0x%llx (+%llu) is not executable memory", (unsigned long long)st->c1_addr,
	       (unsigned long long)st->c1_bytes);
	expect(st->threads_stopped == 2, "%u threads stopped, want the 2 workers",
	       st->threads_stopped);
	/* A moved function's C0 entry is patched, blocked, or neither. */
	expect(st->entries_patched + st->entries_blocked <= st->functions_moved,
	       "%u + %u entries for %u functions", st->entries_patched, st->entries_blocked,
	       st->functions_moved);
	/* The round contains its window, BOLT and the pause. */
	expect(st->bolt_ns > 0 && st->pause_ns > 0 &&
	       st->round_ns >= st->profile_ns + st->bolt_ns + st->pause_ns,
	       "round %llu ns < profile %llu + bolt %llu + pause %llu",
	       (unsigned long long)st->round_ns, (unsigned long long)st->profile_ns,
	       (unsigned long long)st->bolt_ns, (unsigned long long)st->pause_ns);
	expect(seen.calls > 0 && seen.other_user == 0,
	       "log_fn called %d times, %d with another user pointer", seen.calls, seen.other_user);
	expect(count_entries(dir) == 1, "%d entries in tmp_dir %s, want the kept work directory",
	       count_entries(dir), dir);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);

	/* The workers run C1; revert sends them back to C0, re-apply to C1. */
	struct ocolos_where_result w;
	where("after the round", &w);
	expect(w.in_optimized * 2 > w.samples, "after the round only %llu of %llu samples in C1",
	       (unsigned long long)w.in_optimized, (unsigned long long)w.samples);
	struct g_switch sw;
	guard_fill(&sw, sizeof(sw));
	check_switch("ocolos_revert_self", ocolos_revert_self(&sw.v), st, &sw);
	where("after revert", &w);
	expect(w.in_optimized * 10 < w.samples, "after revert %llu of %llu samples still in C1",
	       (unsigned long long)w.in_optimized, (unsigned long long)w.samples);
	guard_fill(&sw, sizeof(sw));
	check_switch("ocolos_reapply_self", ocolos_reapply_self(&sw.v), st, &sw);
	where("after re-apply", &w);
	expect(w.in_optimized * 2 > w.samples, "after re-apply only %llu of %llu samples in C1",
	       (unsigned long long)w.in_optimized, (unsigned long long)w.samples);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s llvm-bolt\n", argv[0]);
		return 2;
	}
	const char *v = ocolos_version();
	fprintf(stderr, "libocolos %s under a 0.1 program\n", v ? v : "(null)");
	check(v && v[0], "ocolos_version");
	null_context_calls();
	bad_options();
	open_gone_pid();
	test_require_perf();
	hot_start(2);
	usleep(200000);
	real_round(argv[1]);
	long bad = hot_stop();
	expect(bad == 0, "%ld batches computed a wrong result", bad);
	test_done();
}

/*
 * Bad-input tests: ocolos_optimize_self() must fail with the right code and
 * a useful message, leave the program running its original code untouched,
 * and leave nothing behind (no C1 mapping, no llvm-bolt child).
 *
 *   it_bad norelocs        binary linked without -Wl,--emit-relocs
 *                          -> OCOLOS_ENORELOCS, message names --emit-relocs
 *   it_bad nosyms          stripped binary -> OCOLOS_ENOSYMS
 *   it_bad nobolt          bolt_path=/nonexistent/llvm-bolt -> OCOLOS_ENOBOLT
 *   it_bad boltfail SCRIPT bolt_path=SCRIPT, which exits 1 -> OCOLOS_EBOLT,
 *                          message carries the script's stderr
 *   it_bad bolttimeout SCRIPT  SCRIPT sleeps 60 s, bolt_timeout_ms=1000
 *                          -> OCOLOS_ETIMEDOUT within a few seconds
 *   it_bad noprofile       no thread runs the binary's code during the
 *                          window -> OCOLOS_ENOPROFILE
 *   it_bad busy SCRIPT     a second round while one runs -> OCOLOS_EBUSY
 *                          at once; afterwards the context is free again
 *   it_bad cancel SCRIPT   ocolos_cancel() from another thread in the
 *                          sampling window, while BOLT (SCRIPT hangs)
 *                          runs, and before a stage -> OCOLOS_ECANCELED
 *                          at once; no reservation, work dir or BOLT left
 *
 * The same source is built three ways (with relocations, without, and
 * stripped); the binary decides nothing, the mode does. Prints "ok <mode>"
 * on stdout when every check passed.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "work.h"

#define WORKERS 2
#define LAP_ITEMS 4000
#define FINAL_ITEMS 20000
#define CHECK_ITEMS 5000
#define WARMUP_MS 300

/* What the program looks like before the round, to compare afterwards. */
struct before {
	uint64_t text_hash;
	unsigned anon_exec;
	uint64_t result;
};

static void snapshot(struct before *b)
{
	b->text_hash = test_exe_text_hash();
	b->anon_exec = test_anon_exec_mappings();
	b->result = work_run(7, 0, CHECK_ITEMS);
}

/* After a failed round: C0 unchanged, no new executable mapping, no child
 * left, and the code still computes what it computed before. */
static void check_untouched(const struct before *b)
{
	check(test_exe_text_hash() == b->text_hash,
	      "the binary's code changed although the round failed");
	check(test_anon_exec_mappings() == b->anon_exec,
	      "a failed round left an executable mapping behind");
	test_check_no_wx();
	test_check_no_children();
	check(work_run(7, 0, CHECK_ITEMS) == b->result,
	      "the program computes a different result after the round");
}

/* Run one round with `o`; print what happened; return rc and elapsed ms. */
static int round_ms(const struct ocolos_opts *o, uint64_t *ms)
{
	OCOLOS_OPTS(ocolos_stats, st);
	uint64_t t0 = test_now_ms();
	int rc;

	rc = ocolos_optimize_self(o, &st);
	*ms = test_now_ms() - t0;
	test_print_stats(rc, &st);
	fprintf(stderr, "  returned after %llu ms\n", (unsigned long long)*ms);
	return rc;
}

static void expect_rc(int rc, int want)
{
	const char *msg = ocolos_last_error(NULL);

	check(rc == want, "ocolos_optimize_self returned %d (%s), want %d (%s): %s",
	      rc, ocolos_strerror(rc), want, ocolos_strerror(want), msg);
	check(msg && msg[0], "ocolos_last_error() is empty after %s",
	      ocolos_strerror(rc));
}

/* Problems with the binary or the tools are found before the target is
 * touched: the call returns well before the sampling window would end. */
static void expect_early(int rc, int want, uint64_t ms, uint32_t profile_ms)
{
	expect_rc(rc, want);
	check(ms < profile_ms / 2,
	      "%s took %llu ms: it must be detected before sampling",
	      ocolos_strerror(want), (unsigned long long)ms);
}

static void mode_norelocs(void)
{
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 3000, .log_fn = test_log);
	int rc = round_ms(&o, &ms);

	expect_early(rc, OCOLOS_ENORELOCS, ms, 3000);
	check(test_contains(ocolos_last_error(NULL), "--emit-relocs"),
	      "message does not name the fix (-Wl,--emit-relocs): %s",
	      ocolos_last_error(NULL));
}

static void mode_nosyms(void)
{
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 3000, .log_fn = test_log);
	int rc = round_ms(&o, &ms);

	expect_early(rc, OCOLOS_ENOSYMS, ms, 3000);
}

static void mode_nobolt(void)
{
	static const char path[] = "/nonexistent/llvm-bolt";
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 3000, .bolt_path = path,
		    .log_fn = test_log);
	int rc = round_ms(&o, &ms);

	expect_early(rc, OCOLOS_ENOBOLT, ms, 3000);
	check(test_contains(ocolos_last_error(NULL), path),
	      "message does not name the missing BOLT: %s",
	      ocolos_last_error(NULL));
}

static void mode_boltfail(const char *script)
{
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 300,
		    .bolt_path = script, .bolt_timeout_ms = 30000,
		    .log_fn = test_log);
	int rc = round_ms(&o, &ms);

	expect_rc(rc, OCOLOS_EBOLT);
	/* fake-bolt-fail prints this on stderr before exiting 1. */
	check(test_contains(ocolos_last_error(NULL), "simulated BOLT failure"),
	      "message does not carry BOLT's own error output: %s",
	      ocolos_last_error(NULL));
}

static void mode_bolttimeout(const char *script)
{
	const uint32_t profile_ms = 300, timeout_ms = 1000;
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = profile_ms,
		    .bolt_path = script, .bolt_timeout_ms = timeout_ms,
		    .log_fn = test_log);
	int rc = round_ms(&o, &ms);

	expect_rc(rc, OCOLOS_ETIMEDOUT);
	check(ms >= timeout_ms, "timed out after %llu ms, before the limit",
	      (unsigned long long)ms);
	check(ms < profile_ms + timeout_ms + 4000,
	      "returned only after %llu ms (BOLT killed late?)",
	      (unsigned long long)ms);
}

static void mode_noprofile(void)
{
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 100, .log_fn = test_log);
	int rc = round_ms(&o, &ms);

	expect_rc(rc, OCOLOS_ENOPROFILE);
}

struct busy_arg {
	const char *script;
	int rc;
	atomic_int done;
};

static void *busy_first(void *p)
{
	struct busy_arg *a = p;
	uint64_t ms;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 1500,
		    .bolt_path = a->script, .bolt_timeout_ms = 1000,
		    .log_fn = test_log, .log_user = (void *)"[first] ");

	a->rc = round_ms(&o, &ms);
	atomic_store(&a->done, 1);
	return NULL;
}

static void mode_busy(const char *script)
{
	struct busy_arg a = { .script = script };
	pthread_t th;
	uint64_t ms;
	int rc, first_done;

	check(pthread_create(&th, NULL, busy_first, &a) == 0, "pthread_create");
	test_sleep_ms(500); /* the first round is now sampling */
	{
		OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 100,
			    .log_fn = test_log, .log_user = (void *)"[second] ");
		rc = round_ms(&o, &ms);
	}
	first_done = atomic_load(&a.done);
	check(pthread_join(th, NULL) == 0, "pthread_join");
	check(!first_done,
	      "the first round ended (rc=%d) before the second returned: "
	      "the rounds did not overlap, or EBUSY waited",
	      a.rc);
	/* No message required: the busy call must not overwrite the running
	 * round's last_error. */
	check(rc == OCOLOS_EBUSY, "second round returned %d (%s), want "
	      "OCOLOS_EBUSY", rc, ocolos_strerror(rc));
	check(a.rc == OCOLOS_ETIMEDOUT,
	      "first round: %d (%s), want OCOLOS_ETIMEDOUT from the hanging "
	      "script", a.rc, ocolos_strerror(a.rc));

	/* Once the first round is over, the context is free again. */
	{
		OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 100,
			    .bolt_path = "/nonexistent/llvm-bolt",
			    .bolt_timeout_ms = 5000, /* fail, not hang, if the
							hanging script is reused */
			    .log_fn = test_log, .log_user = (void *)"[third] ");
		rc = round_ms(&o, &ms);
	}
	expect_rc(rc, OCOLOS_ENOBOLT);
}

/* ---- cancel ---------------------------------------------------------------- */

/* Entries in directory `dir` (its work directories), . and .. aside. */
static unsigned dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	check(d != NULL, "opendir %s: %s", dir, strerror(errno));
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* A thread that cancels the call running on `ctx` after `after_ms`, and
 * records what the round had built by then, so the test knows its checks
 * of "nothing left" look at something that existed. */
struct canceler {
	struct ocolos_ctx *ctx;
	const char *dir;
	unsigned after_ms;
	uint64_t reserved;	/* test_reserved_near_exe() when canceling */
	unsigned entries;	/* dir_entries(dir) then */
	pthread_t th;
};

static void *canceler_main(void *p)
{
	struct canceler *c = p;

	test_sleep_ms(c->after_ms);
	c->reserved = test_reserved_near_exe();
	c->entries = dir_entries(c->dir);
	ocolos_cancel(c->ctx);
	return NULL;
}

static void canceler_start(struct canceler *c)
{
	check(pthread_create(&c->th, NULL, canceler_main, c) == 0, "pthread_create");
}

static void canceler_join(struct canceler *c)
{
	check(pthread_join(c->th, NULL) == 0, "pthread_join");
}

/* `rc` is the cancellation, returned soon after the request. */
static void expect_canceled(struct ocolos_ctx *ctx, int rc, uint64_t ms, unsigned after_ms)
{
	check(rc == OCOLOS_ECANCELED, "returned %d (%s), want OCOLOS_ECANCELED: %s", rc,
	      ocolos_strerror(rc), ocolos_last_error(ctx));
	check(test_contains(ocolos_last_error(ctx), "cancel"),
	      "the message does not say the call was canceled: %s", ocolos_last_error(ctx));
	check(ms < after_ms + 2000, "returned %llu ms after the start, %u ms after the "
	      "cancel: not at the next safe point", (unsigned long long)ms, after_ms);
}

/* Nothing of the round left: no reservation, no work directory, no BOLT. */
static void expect_nothing_left(uint64_t reserved_before, const char *dir)
{
	check(test_reserved_near_exe() == reserved_before,
	      "the reservation is still mapped (%llu bytes near the binary, %llu before)",
	      (unsigned long long)test_reserved_near_exe(),
	      (unsigned long long)reserved_before);
	check(dir_entries(dir) == 0, "the work directory was left in %s", dir);
	test_check_no_children();
}

static void mode_cancel(const char *script)
{
	char dir[256];
	uint64_t t0, ms, reserved = test_reserved_near_exe();
	struct ocolos_ctx *ctx;
	int rc;

	snprintf(dir, sizeof(dir), "%s/ocolos-cancel.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	check(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	/* A long window and a BOLT that hangs: only a cancel ends them soon. */
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 20000, .bolt_path = script,
		    .bolt_timeout_ms = 60000, .tmp_dir = dir, .log_fn = test_log);
	check(ocolos_open_self(&o, &ctx) == 0, "open: %s", ocolos_last_error(NULL));

	/* 1. In the sampling window: the reservation and the work directory
	 *    exist by then (checked), and are gone after. */
	fprintf(stderr, "== cancel in the sampling window\n");
	struct canceler c = { .ctx = ctx, .dir = dir, .after_ms = 800 };
	canceler_start(&c);
	t0 = test_now_ms();
	rc = ocolos_stage_profile(ctx, NULL);
	ms = test_now_ms() - t0;
	canceler_join(&c);
	expect_canceled(ctx, rc, ms, c.after_ms);
	check(c.reserved > reserved && c.entries == 1,
	      "while sampling, no reservation (%llu bytes) or no work directory (%u): the "
	      "checks below would prove nothing", (unsigned long long)c.reserved, c.entries);
	expect_nothing_left(reserved, dir);
	ocolos_close(ctx);

	/* 2. While BOLT runs: it is killed and reaped (no child left). */
	fprintf(stderr, "== cancel while llvm-bolt runs\n");
	o.profile_ms = 300;
	check(ocolos_open_self(&o, &ctx) == 0, "open: %s", ocolos_last_error(NULL));
	rc = ocolos_stage_profile(ctx, NULL);
	check(rc == 0, "profile: %s", ocolos_last_error(ctx));
	c = (struct canceler){ .ctx = ctx, .dir = dir, .after_ms = 1000 };
	canceler_start(&c);
	t0 = test_now_ms();
	rc = ocolos_stage_optimize(ctx, NULL);
	ms = test_now_ms() - t0;
	canceler_join(&c);
	expect_canceled(ctx, rc, ms, c.after_ms);
	check(c.reserved > reserved && c.entries == 1, "while BOLT ran, no reservation or no "
	      "work directory");
	expect_nothing_left(reserved, dir);

	/* 3. Between stages: a request made while no call runs stops the next
	 *    call at its start and drops the round profiled before; the next
	 *    call after that is not canceled (the request is spent). */
	fprintf(stderr, "== cancel between stages\n");
	check(ocolos_stage_profile(ctx, NULL) == 0, "profile: %s", ocolos_last_error(ctx));
	ocolos_cancel(ctx);
	t0 = test_now_ms();
	rc = ocolos_stage_optimize(ctx, NULL);
	expect_canceled(ctx, rc, test_now_ms() - t0, 0);
	expect_nothing_left(reserved, dir);
	rc = ocolos_stage_optimize(ctx, NULL);
	check(rc == OCOLOS_EINVAL, "after a canceled round, optimize returned %d (%s), want "
	      "OCOLOS_EINVAL (nothing profiled)", rc, ocolos_strerror(rc));
	ocolos_cancel(NULL); /* ignored */
	ocolos_close(ctx);
	check(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
}

int main(int argc, char **argv)
{
	static struct work_pool pool;
	struct before b;
	const char *mode = argc > 1 ? argv[1] : "";
	const char *script = argc > 2 ? argv[2] : NULL;
	int needs_script = !strcmp(mode, "boltfail") ||
			   !strcmp(mode, "bolttimeout") || !strcmp(mode, "busy") ||
			   !strcmp(mode, "cancel");
	int idle = !strcmp(mode, "noprofile");

	check(argc == 2 + needs_script,
	      "usage: %s norelocs|nosyms|nobolt|noprofile | "
	      "boltfail|bolttimeout|busy|cancel SCRIPT",
	      argv[0]);
	test_watchdog(45);
	if (needs_script || idle)
		test_require_perf();

	snapshot(&b);
	/* The only other thread of the idle case sits in read(2). */
	test_blocker_start();
	if (!idle) {
		work_pool_start(&pool, WORKERS, LAP_ITEMS, FINAL_ITEMS, 0);
		test_sleep_ms(WARMUP_MS);
	}

	if (!strcmp(mode, "norelocs"))
		mode_norelocs();
	else if (!strcmp(mode, "nosyms"))
		mode_nosyms();
	else if (!strcmp(mode, "nobolt"))
		mode_nobolt();
	else if (!strcmp(mode, "boltfail"))
		mode_boltfail(script);
	else if (!strcmp(mode, "bolttimeout"))
		mode_bolttimeout(script);
	else if (!strcmp(mode, "noprofile"))
		mode_noprofile();
	else if (!strcmp(mode, "busy"))
		mode_busy(script);
	else if (!strcmp(mode, "cancel"))
		mode_cancel(script);
	else
		check(0, "unknown mode '%s'", mode);

	check_untouched(&b);
	if (!idle) {
		check(work_pool_stop(&pool) == 0,
		      "a lap computed a different result during the round");
	}
	check(test_blocker_release() == 'k', "blocker");
	printf("ok %s\n", mode);
	return 0;
}

/*
 * Revert and re-apply under threads: a round, then cycles of
 * ocolos_revert_self() / ocolos_reapply_self() while workers keep checking
 * their results against values computed before any round. After each
 * re-apply the process's samples land in C1; after each revert, in C0.
 * Build: -O2 -fno-jump-tables -Wl,--emit-relocs (PIE and non-PIE).
 *
 * -DREDIRECT_WRITABLE: the steps are called through `hooks`, a table in
 * writable .data, and the round sets opts.pointer_slots = OCOLOS_SLOTS_ALL
 * (the helpers are compared with &func, so the pointer rule would keep
 * them on C0). Its slots then lead to C1 while optimized and to C0 after a
 * revert, through their stubs; hooks[2], which the program changed before
 * the round, is left alone.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"

typedef uint64_t (*step_fn)(uint64_t);

__attribute__((noinline)) static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	return x ^ (x >> 29);
}
__attribute__((noinline)) static uint64_t twist(uint64_t x) { return mix(x + 0x9e3779b97f4a7c15ull) ^ (x << 7); }
__attribute__((noinline)) static uint64_t fold(uint64_t x) { return mix(x) + twist(x >> 3); }
#ifdef REDIRECT_WRITABLE
static step_fn hooks[] = { mix, twist, fold };
#define steps hooks
#else
static const step_fn steps[] = { mix, twist, fold };
#endif

__attribute__((noinline)) static uint64_t batch(uint64_t k)
{
	uint64_t h = k;
	for (int i = 0; i < 2000; i++)
		h = steps[(h >> 7) % 3](h + (uint64_t)i);
	return h;
}

#define NK 64
static uint64_t expected[NK];
static atomic_int quit;
static atomic_long mismatches, batches;

static void *worker(void *arg)
{
	for (uint64_t k = (uintptr_t)arg; !atomic_load(&quit); k++) {
		if (batch(k % NK) != expected[k % NK])
			atomic_fetch_add(&mismatches, 1);
		atomic_fetch_add(&batches, 1);
	}
	return NULL;
}

/* Fraction of the other threads' samples in the round's optimized code. */
static double fraction_in_c1(void)
{
	OCOLOS_OPTS(ocolos_where_opts, o, .window_ms = 300);
	OCOLOS_OPTS(ocolos_where_result, w);
	int rc = ocolos_where_self(&o, &w);
	expect(rc == 0, "ocolos_where_self: %s", ocolos_last_error(NULL));
	expect(w.samples > 50, "only %llu samples", (unsigned long long)w.samples);
	return w.samples ? (double)w.in_optimized / (double)w.samples : 0;
}

#ifdef REDIRECT_WRITABLE
/* Where the code at `p` goes: through a slot stub (lib/inject/stubs.c,
 * x86-64: jmp rel32 then int3 padding) to its target, else `p` itself. */
static uintptr_t through_stub(step_fn f)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)f;
	int32_t rel;
	if (p[0] != 0xe9 || p[5] != 0xcc)
		return (uintptr_t)p;
	memcpy(&rel, p + 1, 4);
	return (uintptr_t)p + 5 + (uintptr_t)(intptr_t)rel;
}

/* The slots lead to the functions' C0 code (1) or not (0). A redirected
 * slot keeps its stub for good (its value never changes back, so the
 * program never sees two values for one function); a revert sends the
 * stub back to C0. The volatile read keeps the compiler from assuming the
 * table's contents. */
static int hooks_on_c0(void)
{
	step_fn h0 = ((step_fn volatile *)hooks)[0], h1 = ((step_fn volatile *)hooks)[1];
	return through_stub(h0) == (uintptr_t)mix && through_stub(h1) == (uintptr_t)twist;
}
#endif

int main(void)
{
#ifdef REDIRECT_WRITABLE
	hooks[2] = twist; /* changed by the program: the round must leave it */
#endif
	for (int k = 0; k < NK; k++)
		expected[k] = batch((uint64_t)k);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i * 17));
	usleep(300000);

	OCOLOS_OPTS(ocolos_switch_stats, sw);
	expect(ocolos_revert_self(&sw) == OCOLOS_EINVAL, "revert before any round must fail");
#ifdef REDIRECT_WRITABLE
	OCOLOS_OPTS(ocolos_opts, opts, .profile_ms = 800, .pointer_slots = OCOLOS_SLOTS_ALL);
#else
	OCOLOS_OPTS(ocolos_opts, opts, .profile_ms = 800);
#endif
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = ocolos_optimize_self(&opts, &st);
	expect(rc == 0, "round: %s", ocolos_last_error(NULL));
	if (rc == 0) {
		double f = fraction_in_c1();
		fprintf(stderr, "after the round: %.2f of samples in C1\n", f);
#ifdef REDIRECT_WRITABLE
		expect(!hooks_on_c0(), "hooks[0..1] still hold C0 addresses after the round");
		expect(((step_fn volatile *)hooks)[2] == twist, "hooks[2], changed by the program, was "
		       "overwritten");
#endif
		expect(f > 0.5, "after the round only %.2f of samples in C1", f);
		for (int cycle = 0; cycle < 3; cycle++) {
			expect(ocolos_revert_self(&sw) == 0, "revert: %s", ocolos_last_error(NULL));
			expect(sw.pointer_slots + sw.call_sites + sw.entries > 0 && sw.mismatched == 0,
			       "revert rewrote %u+%u+%u, %u mismatched", sw.pointer_slots, sw.call_sites,
			       sw.entries, sw.mismatched);
			f = fraction_in_c1();
			fprintf(stderr, "cycle %d reverted: %.2f in C1 (pause %.3f ms)\n", cycle, f, sw.pause_ns / 1e6);
			expect(f < 0.05, "after revert %.2f of samples still in C1", f);
#ifdef REDIRECT_WRITABLE
			expect(hooks_on_c0(), "revert left hooks[0..1] on C1");
#endif
			expect(ocolos_revert_self(NULL) == OCOLOS_EINVAL, "double revert must fail");
			expect(ocolos_reapply_self(&sw) == 0, "reapply: %s", ocolos_last_error(NULL));
			f = fraction_in_c1();
			fprintf(stderr, "cycle %d re-applied: %.2f in C1 (pause %.3f ms)\n", cycle, f, sw.pause_ns / 1e6);
			expect(f > 0.5, "after re-apply only %.2f of samples in C1", f);
#ifdef REDIRECT_WRITABLE
			expect(!hooks_on_c0(), "re-apply left hooks[0..1] on C0");
#endif
		}
	}
	atomic_store(&quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	expect(atomic_load(&mismatches) == 0, "%ld of %ld batches computed a wrong result",
	       atomic_load(&mismatches), atomic_load(&batches));
	test_done();
}

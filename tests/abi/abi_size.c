/*
 * Results written into structs of another size than today's, during one
 * real round on a self context. The library must write a result struct
 * only up to the sz its caller set (an older caller's struct is smaller)
 * and zero what lies past the fields it knows (a newer caller's is larger).
 *
 * Smaller structs live in heap buffers of exactly their sz. Under the
 * ASan build (the library instrumented, the runtime preloaded into this
 * uninstrumented program) a write past one lands in ASan's redzone and
 * aborts the test; the test first checks that the byte at sz is indeed
 * poisoned, so a pass proves no write happened. Without ASan each buffer
 * has GUARD bytes of GUARD_BYTE after sz, checked afterwards instead.
 * Larger structs are filled with 0xff first; their tail past today's
 * struct must come back zero.
 *
 * The calls, each with another size (today's layouts, LP64):
 *   ocolos_stats        sz 0, samples 8, samples_in_binary 16,
 *                       threads_sampled 24, functions_moved 28, ...,
 *                       sampler[16] last, ending at sizeof
 *   ocolos_switch_stats sz 0, call_sites 8, pointer_slots 12, ...
 *   ocolos_where_result sz 0, samples 8, in_original 16, in_optimized 24, ...
 *   stage_profile   stats cut at functions_moved (28 bytes: a cut inside
 *                   an 8-byte granule, which ASan tracks exactly)
 *   stage_optimize  stats of sizeof(size_t): sz alone, nothing written
 *   stage_replace   stats 32 bytes larger than today's
 *   where           result cut at in_optimized (24)
 *   revert          switch stats cut at pointer_slots (12)
 *   reapply         switch stats 32 bytes larger
 *   where           result 32 bytes larger
 *   round           stats cut in the middle of samples_in_binary (20
 *                   bytes: any sz is honoured, not only field ends); it is
 *                   refused (C1 in use) and reports the nothing it did
 * and a sz too small to hold sz itself, refused with nothing written.
 * argv: llvm-bolt. Exit 77 (skipped) without perf_event access.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"
#include "hot.h"

_Static_assert(offsetof(struct ocolos_stats, functions_moved) == 28, "layout in the comment");
_Static_assert(offsetof(struct ocolos_switch_stats, pointer_slots) == 12, "layout in the comment");
_Static_assert(offsetof(struct ocolos_where_result, in_optimized) == 24, "layout in the comment");

#define GUARD 64
#define GUARD_BYTE 0xa5
#define NEWER 32 /* bytes a newer header's struct has past today's */

/* ASan's own query, found when its runtime is loaded (the ASan build). */
static int (*asan_is_poisoned)(const volatile void *);

/* A result buffer of `sz` bytes with sz set. Under ASan exactly sz bytes
 * of heap; otherwise followed by GUARD bytes of GUARD_BYTE. The rest of
 * the struct is filled with `fill`. */
static unsigned char *out_new(size_t sz, unsigned char fill)
{
	size_t n = sz > sizeof(size_t) ? sz : sizeof(size_t);
	unsigned char *p = malloc(asan_is_poisoned ? n : n + GUARD);
	check(p, "malloc");
	memset(p, fill, n);
	if (!asan_is_poisoned)
		memset(p + n, GUARD_BYTE, GUARD);
	memcpy(p, &sz, sizeof(sz));
	if (asan_is_poisoned)
		check(asan_is_poisoned(p + n), "ASan does not poison the byte after a %zu-byte block", n);
	return p;
}

/* Nothing was written past the struct (the guard; under ASan a write
 * would have aborted already), and sz is what the caller set. */
static void out_done(unsigned char *p, size_t sz, const char *what)
{
	size_t got;
	memcpy(&got, p, sizeof(got));
	expect(got == sz, "%s: sz changed from %zu to %zu", what, sz, got);
	size_t n = sz > sizeof(size_t) ? sz : sizeof(size_t);
	for (size_t i = 0; !asan_is_poisoned && i < GUARD; i++)
		if (p[n + i] != GUARD_BYTE) {
			expect(0, "%s wrote byte %zu past its %zu-byte struct", what, i, sz);
			break;
		}
	free(p);
}

/* Every byte in [from, to) of p is zero. */
static void expect_zero_tail(const unsigned char *p, size_t from, size_t to, const char *what)
{
	for (size_t i = from; i < to; i++)
		if (p[i]) {
			expect(0, "%s: byte %zu of [%zu, %zu) is %#x, want 0", what, i,
			       from, to, p[i]);
			return;
		}
}

/* Field of a result struct of type T in buffer p (read with memcpy: the
 * buffer may be smaller than T). */
#define GET(T, field, p)                                                       \
	({                                                                     \
		__typeof__(((T *)0)->field) v_;                                \
		memcpy(&v_, (p) + offsetof(T, field), sizeof(v_));             \
		v_;                                                            \
	})

static const char *last(struct ocolos_ctx *ctx)
{
	return ocolos_last_error(ctx);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s llvm-bolt\n", argv[0]);
		return 2;
	}
	asan_is_poisoned = (int (*)(const volatile void *))dlsym(RTLD_DEFAULT,
								 "__asan_address_is_poisoned");
	fprintf(stderr, "writes past a struct are caught by %s\n",
		asan_is_poisoned ? "ASan" : "guard bytes");
	test_require_perf();
	hot_start(2);
	usleep(200000);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 800, .bolt_path = argv[1]);
	struct ocolos_ctx *ctx;
	check(ocolos_open_self(&o, &ctx) == 0, "open: %s", ocolos_last_error(NULL));

	/* sz 4 cannot even hold sz: refused, and nothing written (the
	 * buffer is 8 bytes; the first call writes nothing at all). */
	unsigned char *tiny = out_new(4, 0);
	int rc = ocolos_stage_profile(ctx, (struct ocolos_stats *)tiny);
	expect(rc == OCOLOS_EINVAL && strstr(last(ctx), "ocolos_stats.sz is 4"),
	       "sz 4: rc %d, %s", rc, last(ctx));
	out_done(tiny, 4, "stage_profile with sz 4");

	/* profile: an older struct, ending inside threads_sampled's granule. */
	size_t sz = offsetof(struct ocolos_stats, functions_moved);
	unsigned char *p = out_new(sz, 0xff);
	rc = ocolos_stage_profile(ctx, (struct ocolos_stats *)p);
	check(rc == 0, "stage_profile: %s", last(ctx));
	uint64_t samples = GET(struct ocolos_stats, samples, p);
	uint64_t in_bin = GET(struct ocolos_stats, samples_in_binary, p);
	uint32_t threads = GET(struct ocolos_stats, threads_sampled, p);
	fprintf(stderr, "profile (sz %zu): %llu samples, %llu in the binary, %u threads\n", sz,
		(unsigned long long)samples, (unsigned long long)in_bin, threads);
	/* 0xff.. would mean unwritten. */
	expect(samples > 0 && samples != UINT64_MAX && in_bin > 0 && in_bin <= samples &&
	       threads >= 2 && threads != UINT32_MAX, "profile stats");
	out_done(p, sz, "stage_profile");

	/* optimize: sz alone. */
	p = out_new(sizeof(size_t), 0);
	rc = ocolos_stage_optimize(ctx, (struct ocolos_stats *)p);
	check(rc == 0, "stage_optimize: %s", last(ctx));
	out_done(p, sizeof(size_t), "stage_optimize");

	/* replace: a newer struct. A stage reports the round so far, so the
	 * profile's figures are repeated. */
	sz = sizeof(struct ocolos_stats) + NEWER;
	p = out_new(sz, 0xff);
	rc = ocolos_stage_replace(ctx, (struct ocolos_stats *)p);
	check(rc == 0, "stage_replace: %s", last(ctx));
	struct ocolos_stats st;
	memcpy(&st, p, sizeof(st));
	fprintf(stderr, "replace: %u functions moved, %u call sites, %u slots, sampler '%.16s'\n",
		st.functions_moved, st.call_sites_patched, st.pointer_slots_patched, st.sampler);
	expect(st.samples == samples && st.samples_in_binary == in_bin &&
	       st.threads_sampled == threads,
	       "replace repeats %llu/%llu/%u, profile said %llu/%llu/%u",
	       (unsigned long long)st.samples, (unsigned long long)st.samples_in_binary,
	       st.threads_sampled, (unsigned long long)samples, (unsigned long long)in_bin, threads);
	expect(st.functions_moved >= 1 && st.functions_moved != UINT32_MAX &&
	       st.call_sites_patched != UINT32_MAX && st.entries_patched >= 1 &&
	       st.entries_patched != UINT32_MAX,
	       "replace stats: %u moved, %u call sites, %u entries", st.functions_moved,
	       st.call_sites_patched, st.entries_patched);
	expect(memchr(st.sampler, '\0', sizeof(st.sampler)) && st.sampler[0],
	       "sampler is not a string");
	expect_zero_tail(p, sizeof(struct ocolos_stats), sz, "stage_replace");
	out_done(p, sz, "stage_replace");

	/* where: an older result, cut before in_optimized. */
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = 200);
	sz = offsetof(struct ocolos_where_result, in_optimized);
	p = out_new(sz, 0xff);
	rc = ocolos_where(ctx, &wo, (struct ocolos_where_result *)p);
	expect(rc == 0, "where: %s", last(ctx));
	uint64_t ws = GET(struct ocolos_where_result, samples, p);
	uint64_t wo0 = GET(struct ocolos_where_result, in_original, p);
	expect(ws > 0 && ws != UINT64_MAX && wo0 <= ws, "where (sz %zu): %llu samples, %llu in C0",
	       sz, (unsigned long long)ws, (unsigned long long)wo0);
	out_done(p, sz, "where");

	/* revert: an older switch struct, call_sites only. It rewrites what
	 * the round patched. */
	sz = offsetof(struct ocolos_switch_stats, pointer_slots);
	p = out_new(sz, 0xff);
	rc = ocolos_revert(ctx, (struct ocolos_switch_stats *)p);
	expect(rc == 0, "revert: %s", last(ctx));
	uint32_t sites = GET(struct ocolos_switch_stats, call_sites, p);
	expect(sites == st.call_sites_patched, "revert rewrote %u call sites, the round %u", sites,
	       st.call_sites_patched);
	out_done(p, sz, "revert");

	/* reapply: a newer switch struct; the same call sites again. */
	sz = sizeof(struct ocolos_switch_stats) + NEWER;
	p = out_new(sz, 0xff);
	rc = ocolos_reapply(ctx, (struct ocolos_switch_stats *)p);
	expect(rc == 0, "reapply: %s", last(ctx));
	struct ocolos_switch_stats sw;
	memcpy(&sw, p, sizeof(sw));
	expect(sw.call_sites == st.call_sites_patched && sw.mismatched == 0 &&
	       sw.threads_stopped == 2,
	       "reapply: %u call sites (round %u), %u mismatched, %u threads stopped (want the 2 "
	       "workers)", sw.call_sites, st.call_sites_patched, sw.mismatched, sw.threads_stopped);
	expect_zero_tail(p, sizeof(struct ocolos_switch_stats), sz, "reapply");
	out_done(p, sz, "reapply");

	/* where: a newer result; the workers run C1 again. */
	sz = sizeof(struct ocolos_where_result) + NEWER;
	p = out_new(sz, 0xff);
	rc = ocolos_where(ctx, &wo, (struct ocolos_where_result *)p);
	expect(rc == 0, "where: %s", last(ctx));
	struct ocolos_where_result w;
	memcpy(&w, p, sizeof(w));
	expect(w.samples == w.in_original + w.in_optimized + w.elsewhere && w.samples > 0 &&
	       w.in_optimized * 2 > w.samples,
	       "where after reapply: %llu samples = %llu C0 + %llu C1 + %llu elsewhere",
	       (unsigned long long)w.samples, (unsigned long long)w.in_original,
	       (unsigned long long)w.in_optimized, (unsigned long long)w.elsewhere);
	expect_zero_tail(p, sizeof(struct ocolos_where_result), sz, "where");
	out_done(p, sz, "where (newer)");

	/* round: a second one while C1 is in use runs the next generation
	 * (continuous optimization); its stats are written within the 20
	 * bytes only: samples and the first half of samples_in_binary. */
	sz = offsetof(struct ocolos_stats, samples_in_binary) + 4;
	p = out_new(sz, 0xff);
	rc = ocolos_round(ctx, (struct ocolos_stats *)p);
	uint64_t samples2;
	memcpy(&samples2, p + sizeof(size_t), sizeof(samples2));
	expect(rc == 0 && samples2 > 0, "a second round: %d (%llu samples), %s", rc,
	       (unsigned long long)samples2, last(ctx));
	out_done(p, sz, "a second round (older)");

	ocolos_close(ctx);
	long bad = hot_stop();
	expect(bad == 0, "%ld batches computed a wrong result", bad);
	test_done();
}

/*
 * ocolos_add_branch_stacks(): branch stacks taken elsewhere (here: made up
 * from the program's own call and return addresses, as an LBR would record
 * its hot loop) replace the profile stage's sampling and go to BOLT as
 * branch records, as perf-lbr's do. The round must say so (sampler
 * "external", one sample per stack), move the hot functions, and the
 * program must then run in the optimized code; the stacks are used once.
 * Bad calls, and mixing stacks with IP samples, are refused.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"

typedef uint64_t (*step_fn)(uint64_t);
static uintptr_t mix_ra; /* where x_mix returns to in worker() */
__attribute__((noinline)) static uint64_t x_mix(uint64_t x)
{
	if (!mix_ra)
		mix_ra = (uintptr_t)__builtin_return_address(0);
	x ^= x >> 27;
	return x * 0x94d049bb133111ebull;
}
__attribute__((noinline)) static uint64_t x_rot(uint64_t x) { return (x << 21 | x >> 43) + 5; }
static const step_fn steps[] = { x_mix, x_rot };

static atomic_int quit;
static void *worker(void *arg)
{
	uint64_t h = (uintptr_t)arg;
	while (!atomic_load(&quit))
		for (int i = 0; i < 1000; i++)
			h = steps[h & 1](h + (uint64_t)i);
	return (void *)(uintptr_t)h;
}

/* The indirect call (ff /2) that ends at return address `ra`: through a
 * register, or memory with a SIB and no, an 8-bit or a 32-bit
 * displacement. */
static uintptr_t call_before(uintptr_t ra)
{
	static const int lens[] = { 2, 3, 4, 7 };
	const uint8_t *p = (const uint8_t *)ra;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		if (p[-lens[i]] == 0xff && ((p[-lens[i] + 1] >> 3) & 7) == 2)
			return ra - (uintptr_t)lens[i];
	return 0;
}

/* The first `ret` of a small leaf function. */
static uintptr_t ret_in(uintptr_t f)
{
	for (int i = 0; i < 64; i++)
		if (((const uint8_t *)f)[i] == 0xc3)
			return f + (uintptr_t)i;
	return 0;
}

int main(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	usleep(200000);
	struct ocolos_ctx *ctx;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 1000);
	check(ocolos_open_self(&o, &ctx) == 0, "open: %s", ocolos_last_error(NULL));

	/* Read from the table, not taken by code (the pointer rule: see
	 * test_add_samples.c). */
	step_fn const volatile *tab = steps;
	uintptr_t mix = (uintptr_t)tab[0], rot = (uintptr_t)tab[1];
	uintptr_t call = call_before(mix_ra), mret = ret_in(mix), rret = ret_in(rot);
	fprintf(stderr, "x_mix %#lx ret %#lx, x_rot %#lx ret %#lx, call %#lx returns to %#lx\n",
		(unsigned long)mix, (unsigned long)mret, (unsigned long)rot, (unsigned long)rret,
		(unsigned long)call, (unsigned long)mix_ra);
	check(mix_ra && call && mret && rret, "could not find the loop's call and returns");

	struct ocolos_branch one = { call, mix };
	uint32_t len1 = 1, len0 = 0, len65 = 65;
	expect(ocolos_add_branch_stacks(ctx, &one, &len1, 0) == OCOLOS_EINVAL, "0 stacks accepted");
	expect(ocolos_add_branch_stacks(ctx, NULL, &len1, 1) == OCOLOS_EINVAL, "NULL accepted");
	expect(ocolos_add_branch_stacks(ctx, &one, NULL, 1) == OCOLOS_EINVAL, "NULL lengths accepted");
	expect(ocolos_add_branch_stacks(ctx, &one, &len0, 1) == OCOLOS_EINVAL, "empty stack accepted");
	expect(ocolos_add_branch_stacks(ctx, &one, &len65, 1) == OCOLOS_EINVAL, "65 entries accepted");

	/* What an LBR sees in the loop, newest first: the return from one
	 * step, its call, the return from the step before, its call... */
	enum { DEPTH = 16, STACKS = 4000 };
	static struct ocolos_branch br[STACKS * DEPTH];
	static uint32_t len[STACKS];
	size_t n = 0;
	for (size_t k = 0; k < STACKS; k++) {
		len[k] = DEPTH;
		for (int j = 0; j < DEPTH / 2; j++) {
			int use_rot = (int)((k + (size_t)j) % 3 == 0);
			br[n++] = (struct ocolos_branch){ use_rot ? rret : mret, mix_ra };
			br[n++] = (struct ocolos_branch){ call, use_rot ? rot : mix };
		}
	}
	check(ocolos_add_branch_stacks(ctx, br, len, STACKS / 2) == 0, "add: %s",
	      ocolos_last_error(ctx));
	check(ocolos_add_branch_stacks(ctx, br + n / 2, len + STACKS / 2, STACKS / 2) == 0,
	      "add: %s", ocolos_last_error(ctx));
	uint64_t ip = mix;
	expect(ocolos_add_samples(ctx, &ip, 1) == OCOLOS_EINVAL,
	       "IP samples accepted beside branch stacks");

	OCOLOS_OPTS(ocolos_stats, st);
	int rc = ocolos_round(ctx, &st);
	fprintf(stderr, "round: rc %d (%s) sampler '%s' samples %llu in binary %llu moved %u\n",
		rc, rc ? ocolos_last_error(ctx) : "ok", st.sampler, (unsigned long long)st.samples,
		(unsigned long long)st.samples_in_binary, st.functions_moved);
	check(rc == 0, "round from external branch stacks: %s", ocolos_last_error(ctx));
	expect(!strcmp(st.sampler, "external") && st.samples == STACKS,
	       "sampler '%s', %llu samples (want %d stacks)", st.sampler,
	       (unsigned long long)st.samples, STACKS);
	expect(st.profile_stop == OCOLOS_PROFILE_STOP_NONE && st.profile_ns < 1000000000ull,
	       "a window was sampled (stop %u, %.0f ms)", st.profile_stop, st.profile_ns / 1e6);
	expect(st.functions_moved >= 3, "%u functions moved (x_mix, x_rot, worker)",
	       st.functions_moved);
	/* New threads enter the optimized worker() (see test_add_samples.c). */
	atomic_store(&quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	atomic_store(&quit, 0);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	usleep(100000);
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = 300);
	OCOLOS_OPTS(ocolos_where_result, w);
	check(ocolos_where(ctx, &wo, &w) == 0, "where: %s", ocolos_last_error(ctx));
	expect(w.in_optimized * 2 > w.samples, "only %llu of %llu samples in C1 (C0 %llu)",
	       (unsigned long long)w.in_optimized, (unsigned long long)w.samples,
	       (unsigned long long)w.in_original);
	/* Used once: the next round on the context samples for itself. */
	OCOLOS_OPTS(ocolos_stats, st2);
	rc = ocolos_round(ctx, &st2);
	expect(rc == 0 && strcmp(st2.sampler, "external"), "second round: rc %d sampler '%s': %s",
	       rc, st2.sampler, ocolos_last_error(ctx));
	ocolos_close(ctx);
	atomic_store(&quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	test_done();
}

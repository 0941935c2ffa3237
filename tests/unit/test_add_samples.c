/*
 * ocolos_add_samples(): IP samples taken elsewhere (here: made up from the
 * hot functions' own run-time addresses, as a fleet profiler would report
 * them) replace the profile stage's sampling. The round must say so
 * (sampler "external"), move the hot functions, and the program must then
 * run in the optimized code; the samples are used once. Bad calls are
 * refused.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"

typedef uint64_t (*step_fn)(uint64_t);
__attribute__((noinline)) static uint64_t x_mix(uint64_t x) { x ^= x >> 27; return x * 0x94d049bb133111ebull; }
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

int main(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	usleep(200000);
	struct ocolos_ctx *ctx;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 1000);
	check(ocolos_open_self(&o, &ctx) == 0, "open: %s", ocolos_last_error(NULL));
	uint64_t one = 0;
	expect(ocolos_add_samples(ctx, &one, 0) == OCOLOS_EINVAL, "n = 0 accepted");
	expect(ocolos_add_samples(ctx, NULL, 5) == OCOLOS_EINVAL, "NULL accepted");

	/* 40,000 samples in the two hot functions and the worker loop. */
	static uint64_t ips[10000];
	/* The hot functions' addresses read from their table, not taken by
	 * code: taking them would keep the table on the original code (the
	 * pointer rule), and calls through it would pass the original entry. */
	step_fn const volatile *tab = steps; /* volatile: not folded into &x_mix */
	uintptr_t fn[] = { (uintptr_t)tab[0], (uintptr_t)tab[1], (uintptr_t)worker };
	for (int batch = 0; batch < 4; batch++) {
		for (size_t i = 0; i < 10000; i++)
			ips[i] = fn[i % 3] + (i / 3) % 8;
		check(ocolos_add_samples(ctx, ips, 10000) == 0, "add: %s", ocolos_last_error(ctx));
	}
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = ocolos_round(ctx, &st);
	fprintf(stderr, "entries %u blocked %u slots %u kept %u\n", st.entries_patched,
		st.entries_blocked, st.pointer_slots_patched, st.pointer_slots_kept);
	fprintf(stderr, "round: rc %d (%s) sampler '%s' in binary %llu moved %u profile %.1f ms\n",
		rc, rc ? ocolos_last_error(ctx) : "ok", st.sampler,
		(unsigned long long)st.samples_in_binary, st.functions_moved, st.profile_ns / 1e6);
	check(rc == 0, "round from external samples: %s", ocolos_last_error(ctx));
	expect(!strcmp(st.sampler, "external") && st.samples == 40000,
	       "sampler '%s', %llu samples", st.sampler, (unsigned long long)st.samples);
	/* Nothing was sampled: no window, no stop reason, no cost. */
	expect(st.profile_stop == OCOLOS_PROFILE_STOP_NONE && st.sample_hz_final == 0 &&
	       st.sample_overhead_ppm == 0 && st.profile_distance_ppm == UINT32_MAX,
	       "external samples: stop %u, rate %u, overhead %u, distance %u", st.profile_stop,
	       st.sample_hz_final, st.sample_overhead_ppm, st.profile_distance_ppm);
	expect(st.samples_in_binary == 40000 && st.functions_moved >= 2,
	       "%llu in the binary, %u moved", (unsigned long long)st.samples_in_binary,
	       st.functions_moved);
	expect(st.profile_ns < 1000000000ull, "a window was sampled (%.0f ms)", st.profile_ns / 1e6);
	/* Threads already in worker()'s loop stay in the original copy of it
	 * (no thread is moved mid-function); new ones enter the optimized one. */
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
	expect(w.in_optimized * 2 > w.samples, "only %llu of %llu samples in C1 (C0 %llu, "
	       "elsewhere %llu)", (unsigned long long)w.in_optimized,
	       (unsigned long long)w.samples, (unsigned long long)w.in_original,
	       (unsigned long long)w.elsewhere);
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

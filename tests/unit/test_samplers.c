/*
 * A full in-process round with each sampler that can run here (the
 * integration part of the sampler-backends issue): perf-ip and sigprof must
 * succeed and move execution to C1; perf-lbr must either succeed or say
 * plainly why this machine cannot (OCOLOS_ENOTSUP); AUTO picks one and says
 * which. Between rounds the previous one is reverted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "check.h"

typedef uint64_t (*step_fn)(uint64_t);
__attribute__((noinline)) static uint64_t s_mix(uint64_t x) { x ^= x >> 31; return x * 0x9e3779b97f4a7c15ull; }
__attribute__((noinline)) static uint64_t s_rot(uint64_t x) { return (x << 13 | x >> 51) + 7; }
static const step_fn steps[] = { s_mix, s_rot };

static atomic_int quit;
static void *worker(void *arg)
{
	uint64_t h = (uintptr_t)arg;
	while (!atomic_load(&quit))
		for (int i = 0; i < 1000; i++)
			h = steps[h & 1](h + (uint64_t)i);
	return (void *)(uintptr_t)h;
}

static void round_with(int sampler, const char *want_name, int edges)
{
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 1500, .sampler = sampler, .edges = edges);
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = ocolos_optimize_self(&o, &st);
	fprintf(stderr, "sampler %d: rc %d (%s) sampler '%s' samples %llu moved %u\n", sampler, rc,
		rc ? ocolos_last_error(NULL) : "ok", st.sampler, (unsigned long long)st.samples,
		st.functions_moved);
	if (sampler == OCOLOS_SAMPLER_PERF_LBR && rc == OCOLOS_ENOTSUP) {
		expect(strstr(ocolos_last_error(NULL), "perf") != NULL, "no reason given: %s",
		       ocolos_last_error(NULL));
		return;
	}
	expect(rc == 0, "round with sampler %d: %s", sampler, ocolos_last_error(NULL));
	if (rc)
		return;
	if (want_name)
		expect(!strcmp(st.sampler, want_name), "sampler '%s', want '%s'", st.sampler, want_name);
	OCOLOS_OPTS(ocolos_where_opts, wo, .window_ms = 300);
	OCOLOS_OPTS(ocolos_where_result, w);
	expect(ocolos_where_self(&wo, &w) == 0, "where: %s", ocolos_last_error(NULL));
	expect(w.in_optimized * 2 > w.samples, "only %llu of %llu samples in C1",
	       (unsigned long long)w.in_optimized, (unsigned long long)w.samples);
	expect(ocolos_revert_self(NULL) == 0, "revert: %s", ocolos_last_error(NULL));
}

int main(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	usleep(200000);
	round_with(OCOLOS_SAMPLER_PERF_IP, "perf-ip", OCOLOS_EDGES_AUTO);
	/* bare samples, BOLT's own edge inference (aggregated first) */
	round_with(OCOLOS_SAMPLER_PERF_IP, "perf-ip", OCOLOS_EDGES_BOLT);
	round_with(OCOLOS_SAMPLER_SIGPROF, "sigprof", OCOLOS_EDGES_AUTO);
	round_with(OCOLOS_SAMPLER_PERF_LBR, "perf-lbr", OCOLOS_EDGES_AUTO);
	round_with(OCOLOS_SAMPLER_AUTO, NULL, OCOLOS_EDGES_AUTO);
	OCOLOS_OPTS(ocolos_opts, bad, .sampler = 42);
	expect(ocolos_optimize_self(&bad, NULL) == OCOLOS_EINVAL, "unknown sampler accepted");
	OCOLOS_OPTS(ocolos_opts, bad2, .edges = 42, .profile_ms = 200);
	expect(ocolos_optimize_self(&bad2, NULL) == OCOLOS_EINVAL, "unknown edges setting accepted");
	atomic_store(&quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	test_done();
}

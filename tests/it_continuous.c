/*
 * Integration test of continuous optimization in-process: round after
 * round on a program whose hot code changes between phases, while threads
 * come and go and the process forks.
 *
 *   it_continuous plain [ROUNDS]   the same work, no round
 *   it_continuous round [ROUNDS]   a round per phase (default 6)
 *
 * Two sets of functions, reached through a const table (slots: stubs) and
 * by direct calls (call sites, entries); each phase the workers run one
 * set, so each round's code differs from the last one's and the old one
 * must be left, then retired. Each round must succeed with the next
 * generation, and after it at most two versions may be mapped (the newest,
 * and one a thread was still in). Every phase a short-lived thread does a
 * fixed piece of work, and every other phase the process forks and the
 * child computes the same piece (its inherited code versions must run
 * correctly in it too). stdout: the checksums of every phase, of the
 * short-lived threads and of the children; run_it.sh requires it identical
 * with and without the rounds. On x86-64, a redirected C0 entry or call
 * site must jump to the function's stub, never straight into a version
 * (inject/plan.c: later rounds retarget the stub, not the entry or site).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define NOINLINE __attribute__((noinline))
#define WORKERS 2
#define PHASE_MS 400
#define PROFILE_MS 600
#define SPIN(x, k) for (unsigned _i = 0; _i < 12; _i++) x = (x ^ (x >> 29)) * (k)

typedef uint64_t (*fn_t)(uint64_t);

static NOINLINE uint64_t a0(uint64_t x) { SPIN(x, 0x9e3779b97f4a7c15ull); return x; }
static NOINLINE uint64_t a1(uint64_t x) { SPIN(x, 0xbf58476d1ce4e5b9ull); return x + 1; }
static NOINLINE uint64_t a2(uint64_t x) { SPIN(x, 0x94d049bb133111ebull); return x ^ 3; }
static NOINLINE uint64_t b0(uint64_t x) { SPIN(x, 0xd6e8feb86659fd93ull); return x; }
static NOINLINE uint64_t b1(uint64_t x) { SPIN(x, 0xa0761d6478bd642full); return x + 5; }
static NOINLINE uint64_t b2(uint64_t x) { SPIN(x, 0xe7037ed1a0b428dbull); return x ^ 9; }

static const fn_t set_a[3] = { a0, a1, a2 };
static const fn_t set_b[3] = { b0, b1, b2 };

/* Where the C0 entry of `f` leads: 0 nowhere (not redirected), 1 into the
 * stubs, 2 elsewhere. */
static int entry_leads(uintptr_t f)
{
#if defined(__x86_64__)
	const uint8_t *p = (const uint8_t *)f;
	if (p[0] != 0xe9)
		return 0;
	int32_t d;
	memcpy(&d, p + 1, 4);
	uintptr_t to = f + 5 + (uintptr_t)(intptr_t)d;
	FILE *m = fopen("/proc/self/maps", "re");
	char line[512];
	int r = 2;
	while (m && fgets(line, sizeof(line), m)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && to >= lo && to < hi) {
			r = strstr(line, "/memfd:ocolos-stubs") ? 1 : 2;
			break;
		}
	}
	if (m)
		fclose(m);
	return r;
#else
	(void)f;
	return 0;
#endif
}

#if defined(__x86_64__)
/* Where a code address lies: 1 in the stubs, 2 in a code version, 0
 * elsewhere (C0, a library). */
static int where_code(uintptr_t to)
{
	FILE *m = fopen("/proc/self/maps", "re");
	char line[512];
	int r = 0;
	while (m && fgets(line, sizeof(line), m)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && to >= lo && to < hi) {
			r = strstr(line, "/memfd:ocolos-stubs") ? 1
			    : strstr(line, "/memfd:ocolos-c") ? 2 : 0;
			break;
		}
	}
	if (m)
		fclose(m);
	return r;
}
#endif

/* The C0 call sites in the first `len` bytes of `f` (a function too small
 * and too rarely run to be moved): how many lead into the stubs, and how
 * many straight into a version (on x86-64 none may: later rounds retarget
 * the stub, not the site). A byte e8/e9 that is not a call leads nowhere
 * we look. */
static void c0_sites(uintptr_t f, size_t len, unsigned *via_stub, unsigned *into_version)
{
#if defined(__x86_64__)
	const uint8_t *p = (const uint8_t *)f;
	for (size_t i = 0; i < len; i++) {
		if (p[i] != 0xe8 && p[i] != 0xe9)
			continue;
		int32_t d;
		memcpy(&d, p + i + 1, 4);
		int r = where_code(f + i + 5 + (uintptr_t)(intptr_t)d);
		*via_stub += r == 1;
		*into_version += r == 2;
	}
#else
	(void)f, (void)len, (void)via_stub, (void)into_version;
#endif
}

/* Direct calls too: call sites and entries to redirect. */
static NOINLINE uint64_t run_a(uint64_t x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		x = a0(x) + set_a[x % 3](x + i);
	return x;
}

static NOINLINE uint64_t run_b(uint64_t x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		x = b1(x) + set_b[x % 3](x + i);
	return x;
}

static NOINLINE uint64_t piece(unsigned phase, uint64_t seed)
{
	return (phase & 1) ? run_b(seed, 20000) : run_a(seed, 20000);
}

static atomic_uint phase;
static atomic_int quit;

struct worker {
	pthread_t th;
	uint64_t laps, bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t ref[2] = { piece(0, 77), piece(1, 77) };
	while (!atomic_load(&quit)) {
		unsigned ph = atomic_load(&phase);
		if (piece(ph, 77) != ref[ph & 1])
			w->bad++;
		w->laps++;
	}
	return NULL;
}

static void *short_lived(void *arg)
{
	uint64_t *out = arg;
	*out = piece(atomic_load(&phase), 1234);
	return NULL;
}

/* A child computes a piece with the code it inherited, and reports it. */
static uint64_t in_child(unsigned ph)
{
	int p[2];
	check(pipe(p) == 0, "pipe");
	pid_t c = fork();
	check(c >= 0, "fork");
	if (c == 0) {
		uint64_t v = piece(ph, 4321);
		_exit(write(p[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	uint64_t v = 0;
	check(read(p[0], &v, sizeof(v)) == sizeof(v), "read from the child");
	int st;
	check(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed");
	close(p[0]);
	close(p[1]);
	return v;
}

int main(int argc, char **argv)
{
	check(argc >= 2 && (!strcmp(argv[1], "plain") || !strcmp(argv[1], "round")),
	      "usage: %s plain|round [ROUNDS]", argv[0]);
	int round = !strcmp(argv[1], "round");
	unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 6;
	test_watchdog(60 + rounds * 8);
	if (round)
		test_require_perf();
	static struct worker w[WORKERS];
	for (unsigned i = 0; i < WORKERS; i++)
		check(pthread_create(&w[i].th, NULL, worker_main, &w[i]) == 0, "pthread_create");
	uint32_t max_mapped = 0, last_gen = 0, via_stub = 0, sites_via_stub = 0;
	for (unsigned k = 0; k < rounds; k++) {
		atomic_store(&phase, k);
		test_sleep_ms(PHASE_MS);
		if (round) {
			OCOLOS_OPTS(ocolos_opts, o, .profile_ms = PROFILE_MS);
			OCOLOS_OPTS(ocolos_stats, st);
			int rc = ocolos_optimize_self(&o, &st);
			fprintf(stderr, "round %u: rc %d gen %u mapped %u retired %u (%llu KiB) moved %u "
				"pause %.3f ms%s%s\n", k, rc, st.generation, st.versions_mapped,
				st.versions_retired, (unsigned long long)(st.bytes_retired >> 10),
				st.functions_moved, st.pause_ns / 1e6, rc ? ": " : "",
				rc ? ocolos_last_error(NULL) : "");
			check(rc == 0, "round %u failed: %s", k, ocolos_last_error(NULL));
			check(st.generation == last_gen + 1, "round %u made generation %u after %u", k,
			      st.generation, last_gen);
			last_gen = st.generation;
			check(st.versions_mapped <= 2, "round %u: %u versions mapped (want <= 2)", k,
			      st.versions_mapped);
			max_mapped = st.versions_mapped > max_mapped ? st.versions_mapped : max_mapped;
			/* run_a and run_b: called directly (their addresses may be
			 * taken here: they have no slots). */
			const uintptr_t runs[2] = { (uintptr_t)run_a, (uintptr_t)run_b };
			for (unsigned i = 0; i < 2; i++) {
				int r = entry_leads(runs[i]);
				check(r != 2, "round %u: the C0 entry of run_%c jumps elsewhere than "
				      "its stub", k, "ab"[i]);
				via_stub += r == 1;
			}
			unsigned into_version = 0;
			c0_sites((uintptr_t)piece, 32, &sites_via_stub, &into_version);
			check(into_version == 0, "round %u: %u C0 call site(s) of piece() lead straight "
			      "into a version, not through a stub", k, into_version);
		}
		uint64_t sl = 0;
		pthread_t t;
		check(pthread_create(&t, NULL, short_lived, &sl) == 0 && pthread_join(t, NULL) == 0,
		      "short-lived thread");
		printf("phase %u: short-lived %016llx\n", k, (unsigned long long)sl);
		if (k & 1)
			printf("phase %u: child %016llx\n", k, (unsigned long long)in_child(k));
	}
	atomic_store(&quit, 1);
	for (unsigned i = 0; i < WORKERS; i++) {
		check(pthread_join(w[i].th, NULL) == 0, "pthread_join");
		check(w[i].bad == 0, "worker %u: %llu of %llu laps computed a wrong result", i,
		      (unsigned long long)w[i].bad, (unsigned long long)w[i].laps);
	}
	printf("phases: %u\n", rounds);
	if (round) {
		fprintf(stderr, "at most %u versions mapped after a round; %u C0 entries and %u "
			"call sites seen jumping to their stub\n", max_mapped, via_stub, sites_via_stub);
#if defined(__x86_64__)
		check(via_stub > 0, "no C0 entry jumped to a stub after any round");
		check(sites_via_stub > 0, "no C0 call site of piece() led to a stub after any round");
#endif
	}
	return 0;
}

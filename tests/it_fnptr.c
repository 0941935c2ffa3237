/*
 * Integration test of the pointer rule (lib/inject/plan.c): a round with
 * default options must not change what the program computes when it
 * compares a function pointer read from a table with the function's
 * address, and must still redirect the slots of functions whose address
 * the program cannot obtain otherwise.
 *
 *   it_fnptr plain   no round
 *   it_fnptr round   warm up, one ocolos_optimize_self() round, then the
 *                    same comparisons; also checks which slots moved
 *
 * Two tables, one const (read-only after relocation) and one writable,
 * each holding a function whose address code also materializes (the
 * comparison below: `lea f(%rip)` that the assembler resolves itself in a
 * PIE, `cmp $f` with a relocation in a non-PIE) and a function reached
 * only through the table. Workers call all four hot, so BOLT moves them.
 *
 * The workers also compare, in hot code that BOLT moves too
 * (same_as_taken), each slot 0 with the function's address: BOLT points
 * address-taking code it moves at the moved copy, which the library turns
 * back to C0 (inject/keep_c0.c); a comparison that fails counts as wrong.
 * On AArch64 they also form &f_taken the ways GCC does at -Os and -O3
 * (shared_page: one ADRP, three ADDs in three blocks, one of them cold),
 * h_read's address through an ADRP that a load reads too (reads_code:
 * BOLT is run again to leave h_read in place), and k_adr's by an ADR,
 * which BOLT turns into ADRP+ADD (adr_form). Before the relocation rule
 * shared_page counted 1,778,351 wrong comparisons after a round (PIE).
 *
 * The round keeps its work directory: it must hold each BOLT run's log,
 * bolt.log and one bolt-rerunN.log per run again (the first used to be
 * overwritten by the next).
 *
 * stdout: the comparison counts before and after the round point and the
 * workers' checksums; run_it.sh requires it identical in both modes.
 * Expected by hand: 2 comparisons per iteration, both true, 100,000
 * iterations: 200000 before and 200000 after.
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define NOINLINE __attribute__((noinline))
#define WORKERS 2
#define ITERATIONS 100000
#define PROFILE_MS 1000

typedef uint64_t (*fn_t)(uint64_t);

/* Each does enough work per call (a short loop) to be sampled reliably. */
#define SPIN(x, k) for (unsigned _i = 0; _i < 16; _i++) x = (x ^ (x >> 23)) * (k)

static NOINLINE uint64_t f_taken(uint64_t x)
{
	SPIN(x, 0x2127599bf4325c37ull);
	return (x ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
}

static NOINLINE uint64_t f_private(uint64_t x)
{
	SPIN(x, 0x880355f21e6d1965ull);
	return (x + 0x632be59bd9b4e019ull) ^ (x >> 31);
}

static NOINLINE uint64_t g_taken(uint64_t x)
{
	SPIN(x, 0x9fb21c651e98df25ull);
	return (x * 0x94d049bb133111ebull) ^ (x >> 29);
}

static NOINLINE uint64_t g_private(uint64_t x)
{
	SPIN(x, 0xc2b2ae3d27d4eb4full);
	return (x << 7 | x >> 57) + 0xd6e8feb86659fd93ull;
}

static const fn_t ro_table[2] = { f_taken, f_private };
static fn_t rw_table[2] = { g_taken, g_private };

/* The program's comparisons: slot 0 of each table against the address
 * the code itself materializes. noipa: nothing folded at compile time. */
__attribute__((noipa)) static unsigned long compare_all(void)
{
	const fn_t *volatile rt = ro_table;
	fn_t *volatile wt = rw_table;
	unsigned long eq = 0;

	for (unsigned i = 0; i < ITERATIONS; i++) {
		eq += rt[0] == f_taken;
		eq += wt[0] == g_taken;
	}
	return eq;
}

static atomic_int stop;
static atomic_ulong wrong; /* hot comparisons that found slot 0 != &function */

/* Hot, so BOLT moves it (and its `lea f_taken`) into C1. */
__attribute__((noinline)) static void same_as_taken(const fn_t *rt, fn_t *wt)
{
	if (rt[0] != f_taken || wt[0] != g_taken)
		atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
}

#if defined(__aarch64__)
/* AArch64 forms `&f` as ADRP (its page) and ADD (:lo12:). GCC at -Os and
 * -O3 keeps one ADRP for several ADDs, not next to it, some in other
 * blocks (a rarely taken one BOLT splits off into a cold fragment): one
 * asm statement each, so the compiler places them apart. The asm names
 * f_taken, a static function: GNU as relocates against the section
 * symbol plus its offset, as for compiled code. */
static inline uintptr_t page_of_f_taken(void)
{
	uintptr_t p;
	__asm__ volatile("adrp %0, f_taken" : "=r"(p));
	return p;
}
static inline uintptr_t add_lo12_f_taken(uintptr_t page)
{
	uintptr_t a;
	__asm__ volatile("add %0, %1, :lo12:f_taken" : "=r"(a) : "r"(page));
	return a;
}
#else
static inline uintptr_t page_of_f_taken(void)
{
	return (uintptr_t)f_taken;
}
static inline uintptr_t add_lo12_f_taken(uintptr_t page)
{
	return page;
}
#endif

/* Moved too; its address is formed by code that also reads its first
 * instruction word through the same ADRP (a load at :lo12:), which the
 * library does not rewrite: so it cannot point that ADRP back at C0, and
 * BOLT must leave the function in place (api/round.c). */
static NOINLINE uint64_t h_read(uint64_t x)
{
	SPIN(x, 0xd6e8feb86659fd93ull);
	return x ^ (x >> 17);
}
/* Writable, and h_read's address is taken: stays C0's. */
static fn_t volatile h_read_ptr = h_read;

/* Moved; its address formed by an ADR (adr_form). */
static NOINLINE uint64_t k_adr(uint64_t x)
{
	SPIN(x, 0x94d049bb133111ebull);
	return x + (x >> 11);
}
static fn_t volatile k_adr_ptr = k_adr;

#if defined(__aarch64__)
static volatile uint64_t word_mix;

/* Its loop makes it sampled, so moved, in every round: a few
 * instructions alone were missed in about a third of the rounds, and
 * BOLT did not run again there. */
__attribute__((noinline)) static void reads_code(void)
{
	uintptr_t page, a;
	uint32_t word;
	__asm__ volatile("adrp %0, h_read" : "=r"(page));
	__asm__ volatile("ldr %w0, [%1, :lo12:h_read]" : "=r"(word) : "r"(page));
	__asm__ volatile("add %0, %1, :lo12:h_read" : "=r"(a) : "r"(page));
	if (a != (uintptr_t)h_read_ptr || word != *(const volatile uint32_t *)(uintptr_t)h_read_ptr)
		atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
	uint64_t x = word;
	SPIN(x, 0xbf58476d1ce4e5b9ull);
	word_mix = x;
}

/* GCC forms an address with one ADR at -mcmodel=tiny (GNU as resolves it
 * itself: no relocation); BOLT turns an ADR of a function it moves into
 * ADRP+ADD. */
__attribute__((noinline)) static void adr_form(void)
{
	uintptr_t a;
	__asm__ volatile("adr %0, k_adr" : "=r"(a));
	if (a != (uintptr_t)k_adr_ptr)
		atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
}
#else
__attribute__((noinline)) static void adr_form(void)
{
	if ((uintptr_t)k_adr != (uintptr_t)k_adr_ptr)
		atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
}

__attribute__((noinline)) static void reads_code(void)
{
	if ((uintptr_t)h_read != (uintptr_t)h_read_ptr)
		atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
}
#endif

static volatile uintptr_t last_seen;

/* Hot too: each ADD of the one ADRP must still yield &f_taken. */
__attribute__((noinline)) static void shared_page(const fn_t *rt, unsigned i)
{
	uintptr_t page = page_of_f_taken();
	uintptr_t slot = (uintptr_t)rt[0];
	if ((i & 3) == 0) {
		if (slot != add_lo12_f_taken(page))
			atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
	} else if (__builtin_expect(slot != add_lo12_f_taken(page), 0)) {
		last_seen = add_lo12_f_taken(page); /* never runs: cold */
		atomic_fetch_add_explicit(&wrong, 1, memory_order_relaxed);
	}
}

struct worker {
	pthread_t th;
	uint64_t seed, result;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const fn_t *volatile rt = ro_table;
	fn_t *volatile wt = rw_table;
	uint64_t x = w->seed, laps = 0;

	/* A fixed amount of work after the stop flag, for a checksum that
	 * does not depend on timing. */
	while (!atomic_load_explicit(&stop, memory_order_acquire))
		for (unsigned i = 0; i < 1000; i++) {
			laps += rt[i & 1](wt[(i >> 1) & 1](i)) & 1;
			same_as_taken(rt, wt);
			shared_page(rt, i);
			reads_code();
			adr_form();
			laps += h_read(i) & 1;
			laps += k_adr(k_adr(i)) & 1; /* hot enough to be moved */
		}
	for (unsigned i = 0; i < 200000; i++)
		x = rt[i & 1](wt[(x >> 7) & 1](x));
	w->result = x;
	fprintf(stderr, "worker: %llu laps\n", (unsigned long long)laps);
	return NULL;
}

/* Reads the tables through volatile pointers: a direct read of the const
 * table would be folded into `mov $f_private`, which takes its address. */
static void check_slots(const struct ocolos_stats *st)
{
	const fn_t *volatile rt = ro_table;
	fn_t *volatile wt = rw_table;
	uint64_t ro0 = (uint64_t)(uintptr_t)rt[0], ro1 = (uint64_t)(uintptr_t)rt[1];
	uint64_t rw0 = (uint64_t)(uintptr_t)wt[0], rw1 = (uint64_t)(uintptr_t)wt[1];

	fprintf(stderr, "ro_table: %#llx %#llx  rw_table: %#llx %#llx\n",
		(unsigned long long)ro0, (unsigned long long)ro1,
		(unsigned long long)rw0, (unsigned long long)rw1);
	/* The functions the program takes the address of keep C0 ... */
	check(!test_in_c1(st, ro0) && ro0 == (uint64_t)(uintptr_t)f_taken,
	      "const slot of f_taken (compared with &f_taken) was redirected");
	check(!test_in_c1(st, rw0) && rw0 == (uint64_t)(uintptr_t)g_taken,
	      "writable slot of g_taken (compared with &g_taken) was redirected");
	/* ... the others move with default options. */
	check(test_in_c1(st, ro1), "const slot of f_private not redirected to C1");
	check(test_in_c1(st, rw1), "writable slot of g_private not redirected to C1");
}

static char work_dir[PATH_MAX];
static int reruns;
/* A line of the caller's own --skip-funcs-file (it names no function). */
#define USER_SKIP_LINE "^ocolos_it_fnptr_no_such_function$"

static void round_log(enum ocolos_log_level level, const char *msg, void *user)
{
	static const char kept[] = "work directory kept: ";
	test_log(level, msg, user);
	if (!strncmp(msg, kept, strlen(kept)))
		snprintf(work_dir, sizeof(work_dir), "%s", msg + strlen(kept));
	if (strstr(msg, "BOLT runs again"))
		reruns++;
}

/* Each BOLT run of the round left its own log in the kept work directory;
 * then the directory (and `parent`, made for it) goes. */
static void check_logs_and_remove(const char *parent)
{
	char path[PATH_MAX + 32];
	struct stat sb;
	check(work_dir[0], "the work directory was not kept");
	fprintf(stderr, "BOLT ran again %d times\n", reruns);
#if defined(__aarch64__)
	/* reads_code's load: without a run again there is nothing to check. */
	expect(reruns > 0, "BOLT did not run again: h_read or reads_code not moved");
#endif
	/* A --skip-funcs-file of the caller's is kept by the runs again (BOLT
	 * keeps only the last one given): its line is in the round's file. */
	if (reruns) {
		char line[256];
		int found = 0;
		snprintf(path, sizeof(path), "%s/bolt-skip-funcs.txt", work_dir);
		FILE *f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f))
			found |= !strcmp(line, USER_SKIP_LINE "\n");
		if (f)
			fclose(f);
		expect(found, "the caller's --skip-funcs-file line is not in %s", path);
	}
	for (int run = 0; run <= reruns; run++) {
		if (run)
			snprintf(path, sizeof(path), "%s/bolt-rerun%d.log", work_dir, run);
		else
			snprintf(path, sizeof(path), "%s/bolt.log", work_dir);
		expect(stat(path, &sb) == 0 && sb.st_size > 0, "no log of BOLT run %d: %s", run + 1,
		       path);
	}
	DIR *d = opendir(work_dir);
	for (struct dirent *e; d && (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    snprintf(path, sizeof(path), "%s/%s", work_dir, e->d_name) < (int)sizeof(path))
			unlink(path);
	if (d)
		closedir(d);
	rmdir(work_dir);
	snprintf(path, sizeof(path), "%s/user-skip.txt", parent);
	unlink(path);
	rmdir(parent);
}

int main(int argc, char **argv)
{
	static struct worker w[WORKERS];
	int round;

	check(argc == 2 && (!strcmp(argv[1], "plain") || !strcmp(argv[1], "round")),
	      "usage: %s plain|round", argv[0]);
	round = !strcmp(argv[1], "round");
	test_watchdog(100);
	if (round)
		test_require_perf();
	for (unsigned i = 0; i < WORKERS; i++) {
		w[i].seed = 0x1234 + i;
		check(pthread_create(&w[i].th, NULL, worker_main, &w[i]) == 0, "pthread_create");
	}
	printf("before: %lu\n", compare_all());
	if (round) {
		OCOLOS_OPTS(ocolos_stats, st);
		char tmp[] = "/tmp/ocolos-it-fnptr.XXXXXX";

		check(mkdtemp(tmp), "mkdtemp");
		char skip[PATH_MAX], skip_arg[PATH_MAX + 32];
		snprintf(skip, sizeof(skip), "%s/user-skip.txt", tmp);
		FILE *f = fopen(skip, "we");
		check(f && fputs(USER_SKIP_LINE "\n", f) >= 0 && fclose(f) == 0, "%s", skip);
		snprintf(skip_arg, sizeof(skip_arg), "--skip-funcs-file=%s", skip);
		const char *extra[] = { skip_arg, NULL };
		test_sleep_ms(500);
		OCOLOS_OPTS(ocolos_opts, o, .profile_ms = PROFILE_MS, .tmp_dir = tmp,
			    .keep_work_dir = 1, .log_fn = round_log, .log_user = (void *)"",
			    .bolt_extra_args = extra);
		int rc = ocolos_optimize_self(&o, &st);
		test_print_stats(rc, &st);
		check(rc == 0, "round failed: %s", ocolos_last_error(NULL));
		check_logs_and_remove(tmp);
		printf("after: %lu\n", compare_all());
		check_slots(&st);
	} else {
		printf("after: %lu\n", compare_all());
	}
	if (round)
		test_sleep_ms(300); /* the workers compare in C1 meanwhile */
	atomic_store_explicit(&stop, 1, memory_order_release);
	for (unsigned i = 0; i < WORKERS; i++) {
		check(pthread_join(w[i].th, NULL) == 0, "pthread_join");
		printf("worker %u: %016llx\n", i, (unsigned long long)w[i].result);
	}
	printf("wrong comparisons: %lu\n", atomic_load(&wrong));
	test_done();
}

/*
 * A program that optimizes itself and then keeps running its optimized
 * code, for the perf and gdb tests of run_debug.sh (ctest -L debuginfo).
 *
 *   dbg_self [ROUNDS]   ROUNDS (default 1) in-process rounds, one after
 *                       the other (continuous optimization: C1, C2, ...)
 *
 * After each round it checks what the library published from inside:
 *  - GDB's JIT descriptor (__jit_debug_descriptor, found with dlsym in
 *    libocolos.so) lists exactly one ELF object per version still mapped
 *    (st.versions_mapped), plus at most one of the slot stubs: a retired
 *    version's object is gone; the newest version has exactly one;
 *  - /tmp/perf-PID.map has lines of the newest generation ("[ocolos CN]")
 *    inside [c1_addr, c1_addr + c1_bytes), and no two lines overlap (so
 *    perf, which picks any of the lines covering an address, always finds
 *    the newest one).
 * Then it prints "ready PID C1_ADDR C1_BYTES GEN" on stdout and keeps its
 * workers busy in the optimized code until SIGTERM (or 90 s), for the
 * driver to sample it with perf or look at it with gdb.
 */
#include <dlfcn.h>
#include <elf.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "work.h"

#define WORKERS 2
#define LAP_ITEMS 8000
#define FINAL_ITEMS 1000
#define PROFILE_MS 1000

/* gdb/jit.h's layout (the library's own copy is private). */
struct jit_code_entry {
	struct jit_code_entry *next_entry, *prev_entry;
	const char *symfile_addr;
	uint64_t symfile_size;
};
struct jit_descriptor {
	uint32_t version, action_flag;
	struct jit_code_entry *relevant_entry, *first_entry;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* The .text section address of an in-memory object, or 0. */
static uint64_t object_text(const struct jit_code_entry *e)
{
	const Elf64_Ehdr *eh = (const void *)e->symfile_addr;
	check(e->symfile_size >= sizeof(*eh) && !memcmp(eh->e_ident, ELFMAG, SELFMAG),
	      "a JIT object is not an ELF file");
	check(eh->e_shoff + eh->e_shnum * sizeof(Elf64_Shdr) <= e->symfile_size,
	      "a JIT object's section headers lie outside it");
	const Elf64_Shdr *sh = (const void *)(e->symfile_addr + eh->e_shoff);
	for (unsigned i = 0; i < eh->e_shnum; i++)
		if (sh[i].sh_type == SHT_NOBITS && (sh[i].sh_flags & SHF_EXECINSTR))
			return sh[i].sh_addr;
	return 0;
}

static void check_jit(const struct ocolos_stats *st)
{
	const struct jit_descriptor *d = dlsym(RTLD_DEFAULT, "__jit_debug_descriptor");
	check(d != NULL, "libocolos.so does not export __jit_debug_descriptor");
	check(dlsym(RTLD_DEFAULT, "__jit_debug_register_code") != NULL,
	      "libocolos.so does not export __jit_debug_register_code");
	check(d->version == 1 && d->action_flag == 0, "JIT descriptor version %u action %u",
	      d->version, d->action_flag);
	unsigned n = 0, newest = 0, stubs = 0;
	for (const struct jit_code_entry *e = d->first_entry; e; e = e->next_entry) {
		uint64_t text = object_text(e);
		/* The slot stubs' object (one, replaced each round). */
		if (memmem(e->symfile_addr, e->symfile_size, "[ocolos stub]", 13)) {
			stubs++;
			continue;
		}
		n++;
		newest += text == st->c1_addr;
	}
	fprintf(stderr, "JIT objects: %u (versions mapped %u), %u of stubs\n", n,
		st->versions_mapped, stubs);
	check(stubs <= 1, "%u JIT objects of the slot stubs", stubs);
	check(n == st->versions_mapped, "%u JIT objects registered for %u versions mapped", n,
	      st->versions_mapped);
	check(newest == 1, "no JIT object (or several) for the newest version at 0x%llx",
	      (unsigned long long)st->c1_addr);
}

struct line {
	unsigned long long start, size;
};

static int cmp_line(const void *a, const void *b)
{
	const struct line *x = a, *y = b;
	return (x->start > y->start) - (x->start < y->start);
}

static void check_perf_map(const struct ocolos_stats *st)
{
	char path[64], buf[1024], tag[32];
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
	snprintf(tag, sizeof(tag), "[ocolos C%u]", st->generation);
	FILE *f = fopen(path, "r");
	check(f != NULL, "no perf map %s after the round", path);
	static struct line v[100000];
	size_t n = 0, newest = 0;
	while (fgets(buf, sizeof(buf), f)) {
		struct line l;
		check(sscanf(buf, "%llx %llx", &l.start, &l.size) == 2 && l.size > 0,
		      "bad perf map line: %s", buf);
		check(n < sizeof(v) / sizeof(v[0]), "perf map too long");
		v[n++] = l;
		if (test_contains(buf, tag)) {
			check(l.start >= st->c1_addr && l.start + l.size <= st->c1_addr + st->c1_bytes,
			      "a line of C%u lies outside it: %s", st->generation, buf);
			newest++;
		}
	}
	fclose(f);
	check(newest >= st->functions_moved, "%zu lines of C%u in %s, %u functions moved", newest,
	      st->generation, path, st->functions_moved);
	qsort(v, n, sizeof(v[0]), cmp_line);
	for (size_t i = 1; i < n; i++)
		check(v[i - 1].start + v[i - 1].size <= v[i].start,
		      "perf map lines overlap: %llx+%llx and %llx", v[i - 1].start, v[i - 1].size,
		      v[i].start);
	fprintf(stderr, "perf map: %zu lines, %zu of C%u\n", n, newest, st->generation);
}

int main(int argc, char **argv)
{
	static struct work_pool pool;
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
	test_watchdog(150);
	test_require_perf();
	signal(SIGTERM, on_term);
	/* The perf map of an earlier process with this pid is not ours. */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
	unlink(path);

	work_pool_start(&pool, WORKERS, LAP_ITEMS, FINAL_ITEMS, 0);
	test_sleep_ms(300);
	OCOLOS_OPTS(ocolos_stats, st);
	struct ocolos_ctx *ctx;
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = PROFILE_MS, .log_fn = test_log,
		    .log_user = (void *)"");
	check(ocolos_open_self(&o, &ctx) == 0, "open: %s", ocolos_last_error(NULL));
	for (unsigned r = 0; r < rounds; r++) {
		int rc = ocolos_round(ctx, &st);
		test_print_stats(rc, &st);
		check(rc == 0, "round %u: %s", r + 1, ocolos_last_error(ctx));
		check_jit(&st);
		check_perf_map(&st);
	}
	ocolos_close(ctx);
	printf("ready %d 0x%llx %llu %u\n", (int)getpid(), (unsigned long long)st.c1_addr,
	       (unsigned long long)st.c1_bytes, st.generation);
	fflush(stdout);
	for (unsigned t = 0; !stop && t < 900; t++)
		test_sleep_ms(100);
	check(work_pool_stop(&pool) == 0, "a lap computed a different result");
	unlink(path);
	return 0;
}

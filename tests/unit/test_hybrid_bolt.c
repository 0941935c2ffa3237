/*
 * End to end: synthetic IP samples on the unit fixture -> infer_write_hybrid
 * -> the real llvm-bolt reads the profile WITHOUT --ba (as branch data).
 * BOLT must report the sampled functions as profiled and no trace or
 * branch that mismatches its own disassembly: our CFG's branch and
 * fall-through addresses must name instructions and blocks BOLT also has.
 * argv: unit_fixture llvm-bolt
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elf/binary.h"
#include "infer/hybrid.h"
#include "check.h"

extern char **environ;

static const char *sampled[] = { "fx_hot", "fx_leaf", "fx_mid", "fx_tail", "fx_uses_local" };
#define BIAS 0x555555554000ull /* as if loaded PIE */

/* Samples on two of every three blocks of each sampled function (the third
 * left for the inference), more on later blocks. */
static void make_samples(const struct elf_binary *b, struct sample_set *s)
{
	for (size_t k = 0; k < sizeof(sampled) / sizeof(*sampled); k++) {
		for (size_t i = 0; i < b->nfuncs; i++) {
			const struct elf_func *fn = &b->funcs[i];
			if (strcmp(fn->name, sampled[k]))
				continue;
			uint8_t *code = malloc(fn->size);
			struct cfg_func f;
			struct core_err err = { 0 };
			expect(elf_read_vaddr(b, fn->addr, code, fn->size, &err) == 0, "%s", err.msg);
			expect(infer_cfg_build(b->machine, code, fn->size, fn->addr, &f, &err) == 0, "%s", err.msg);
			for (size_t bb = 0; bb < f.nblocks; bb++)
				for (size_t n = 0; bb % 3 != 2 && n < 3 + bb; n++)
					sample_set_push(s, f.blocks[bb].start + BIAS);
			infer_cfg_func_free(&f);
			free(code);
		}
	}
	sample_set_push(s, 0x7f0000001000ull); /* a library: dropped */
}

static int run_bolt(const char *bolt, const char *bin, const char *prof, const char *out,
		    const char *log)
{
	char *argv[] = { (char *)bolt, (char *)bin, "-o", (char *)out, "-p", (char *)prof,
			 "--pa", "--reorder-blocks=ext-tsp", "--dyno-stats", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	pid_t pid;
	int st = -1;
	if (posix_spawn(&pid, bolt, &fa, NULL, argv, environ) == 0)
		waitpid(pid, &st, 0);
	posix_spawn_file_actions_destroy(&fa);
	return st;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return strdup(buf);
}

/* Every record is B (4 fields) or F (3 fields); no S. */
static void check_records(const char *prof)
{
	FILE *f = fopen(prof, "r");
	char line[256];
	int bad = 0, n = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long a, b2, c, d;
		n++;
		if (line[0] == 'B')
			bad += sscanf(line, "B %llx %llx %llu %llu", &a, &b2, &c, &d) != 4 || !c;
		else if (line[0] == 'F')
			bad += sscanf(line, "F %llx %llx %llu", &a, &b2, &c) != 3 || !c || b2 <= a;
		else
			bad++;
	}
	if (f)
		fclose(f);
	expect(n > 10 && !bad, "%d records, %d malformed", n, bad);
}

static void check_log(const char *log)
{
	char *t = slurp(log);
	const char *p = strstr(t, "have non-empty execution profile");
	unsigned prof = 0;
	if (p) {
		while (p > t && p[-1] != '\n')
			p--;
		sscanf(p, "BOLT-INFO: %u out of", &prof);
	}
	expect(prof >= 5, "BOLT profiled %u functions:\n%s", prof, t);
	expect(strstr(t, "traces mismatching disassembled function contents: 0 ") ||
	       strstr(t, "traces mismatching disassembled function contents: 0\n"),
	       "mismatching traces:\n%s", t);
	expect(!strstr(t, "invalid branch") && !strstr(t, "BOLT-ERROR"), "BOLT complained:\n%s", t);
	free(t);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s unit_fixture llvm-bolt\n", argv[0]);
		return 2;
	}
	struct core_err err = { 0 };
	struct elf_binary *b = NULL;
	expect(elf_binary_open(argv[1], &b, &err) == 0, "%s", err.msg);
	if (!b)
		test_done();
	struct sample_set s = { 0 };
	make_samples(b, &s);
	char dir[] = "/tmp/ocolos-hybrid-XXXXXX", prof[96], out[96], log[96];
	expect(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(prof, sizeof(prof), "%s/prof.pa", dir);
	snprintf(out, sizeof(out), "%s/out.bolt", dir);
	snprintf(log, sizeof(log), "%s/bolt.log", dir);
	struct infer_profile_stats st;
	struct hybrid_write_stats hs;
	expect(infer_write_hybrid_flags(b, BIAS, &s, prof, 0, &st, &hs, &err) == 0, "%s", err.msg);
	expect(st.functions == 5 && hs.functions_cfg == 5 && st.in_binary == s.n - 1,
	       "functions %u cfg %u in_binary %lu", st.functions, hs.functions_cfg,
	       (unsigned long)st.in_binary);
	expect(hs.est.inferred_blocks > 0 && hs.call_records > 0 && hs.fallthrough_records > 0,
	       "inferred %u calls %lu ft %lu", hs.est.inferred_blocks,
	       (unsigned long)hs.call_records, (unsigned long)hs.fallthrough_records);
	check_records(prof);
	int rc = run_bolt(argv[2], argv[1], prof, out, log);
	expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "llvm-bolt failed (%#x), log %s", rc, log);
	check_log(log);
	/* fx_leaf with 2 samples (under HYBRID_MIN_FUNCTION_SAMPLES): no
	 * profile for it, and no call record into it either (that alone
	 * would make BOLT move it with every block but the entry cold). */
	const struct elf_func *leaf = NULL;
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!strcmp(b->funcs[i].name, "fx_leaf"))
			leaf = &b->funcs[i];
	expect(leaf != NULL, "fx_leaf not found");
	struct sample_set sparse = { 0 };
	size_t in_leaf = 0;
	for (size_t i = 0; leaf && i < s.n; i++) {
		uint64_t a = s.ips[i] - BIAS;
		int inside = a >= leaf->addr && a < leaf->addr + leaf->size;
		if (!inside || ++in_leaf <= 2)
			sample_set_push(&sparse, s.ips[i]);
	}
	expect(in_leaf > 2, "fx_leaf had only %zu samples", in_leaf);
	expect(infer_write_hybrid_flags(b, BIAS, &sparse, prof, 0, &st, &hs, &err) == 0, "%s", err.msg);
	expect(hs.functions_sparse == 1 && hs.functions_cfg == 4 && hs.calls_dropped > 0,
	       "sparse: %u sparse, %u with CFG, %llu calls dropped", hs.functions_sparse,
	       hs.functions_cfg, (unsigned long long)hs.calls_dropped);
	if (leaf) {
		char *t = slurp(prof), want[32];
		snprintf(want, sizeof(want), " %llx ", (unsigned long long)leaf->addr);
		size_t bad = 0;
		for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
			char padded[160];
			snprintf(padded, sizeof(padded), "%s ", line);
			bad += strstr(padded, want) != NULL;
		}
		expect(bad == 0, "%zu records still name fx_leaf (0x%llx)", bad,
		       (unsigned long long)leaf->addr);
		free(t);
	}
	/* Every sampled function under the threshold: a named error. */
	struct sample_set thin = { 0 };
	for (size_t i = 0; i < 2 && leaf; i++)
		sample_set_push(&thin, leaf->addr + BIAS);
	expect(infer_write_hybrid(b, BIAS, &thin, prof, &st, &err) == OCOLOS_ENOPROFILE &&
	       strstr(err.msg, "too sparse"), "thin profile: %s", err.msg);
	sample_set_free(&thin);
	sample_set_free(&sparse);
	/* No sample in the binary: OCOLOS_ENOPROFILE, as infer_write_preagg. */
	struct sample_set none = { 0 };
	sample_set_push(&none, 0x7f0000001000ull);
	expect(infer_write_hybrid(b, BIAS, &none, prof, &st, &err) == OCOLOS_ENOPROFILE, "empty");
	sample_set_free(&none);
	sample_set_free(&s);
	elf_binary_close(b);
	if (!test_failures) {
		unlink(prof), unlink(out), unlink(log), rmdir(dir);
	}
	test_done();
}

/*
 * BOLT 19, the AArch64 rounds' BOLT, run on the x86-64 unit fixture: it
 * lacks --custom-allocation-vma and puts new code right after the highest
 * PT_LOAD, so a round hands it a copy of the binary whose highest PT_LOAD
 * ends where C1 must go (layout_bolt_placed_copy). Checked:
 *   - the copy differs from the binary in that program header only;
 *   - BOLT 19 puts new code exactly at the asked address, and moves the
 *     5 sampled functions (oracle_input.h);
 *   - bare samples (opts.edges = OCOLOS_EDGES_BOLT) are refused by name
 *     before BOLT 19 runs (it has no --ba, and its reader takes no S
 *     records), saying what to use instead.
 * Split from test_bolt_oracle.c (BOLT 22) so that a machine without BOLT
 * 19 reports this as skipped rather than passed.
 * argv: fixture llvm-bolt-19. Exit 77 (skipped) if that is not executable.
 */
#include <elf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/workdir.h"
#include "check.h"
#include "elf/binary.h"
#include "elf/bolt_output.h"
#include "infer/hybrid.h"
#include "infer/profile.h"
#include "layout/layout.h"
#include "oracle_input.h"
#include "sample/sample.h"

/* The whole file, malloc'd; NULL on error. */
static uint8_t *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	if (len > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len)) &&
	    fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	*n = buf ? (size_t)len : 0;
	return buf;
}

/* The placed copy differs from `path` in its program headers only: at
 * most the 8 bytes of one PT_LOAD's p_memsz (sizes below 2^64 differ in
 * fewer), and nothing outside the table. */
static void check_placed_copy(const char *path, const char *placed)
{
	size_t n0 = 0, n1 = 0;
	uint8_t *f0 = read_file(path, &n0), *f1 = read_file(placed, &n1);
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f0;
	size_t diff = 0, outside = 0;
	for (size_t k = 0; f0 && f1 && n0 == n1 && k < n0; k++)
		if (f0[k] != f1[k]) {
			diff++;
			outside += k < eh->e_phoff ||
				   k >= eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr);
		}
	expect(f0 && f1 && n0 == n1 && diff > 0 && diff <= 8 && !outside,
	       "the copy differs in %zu bytes, %zu outside the program headers", diff, outside);
	free(f0);
	free(f1);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s fixture llvm-bolt-19\n", argv[0]);
		return 2;
	}
	const char *bolt19 = argv[2];
	if (access(bolt19, X_OK) != 0) {
		fprintf(stderr, "SKIP: no BOLT 19 at '%s' (Debian: bolt-19)\n", bolt19);
		return TEST_SKIP;
	}
	struct core_err err = { 0 };
	struct elf_binary *b;
	check(elf_binary_open(argv[1], &b, &err) == 0, "%s", err.msg);
	struct sample_set s = { 0 };
	oracle_samples(b, &s);

	struct api_workdir wd;
	check(api_workdir_create(&wd, NULL, &err) == 0, "%s", err.msg);
	char preagg[PATH_MAX], prof19[PATH_MAX], placed[PATH_MAX], out19[PATH_MAX], log[PATH_MAX];
	api_workdir_file(&wd, "p.preagg", preagg, &err);
	api_workdir_file(&wd, "p19.preagg", prof19, &err);
	api_workdir_file(&wd, "placed.elf", placed, &err);
	api_workdir_file(&wd, "out19.bolt", out19, &err);
	api_workdir_file(&wd, "bolt.log", log, &err);

	/* 16 MiB above where test_bolt_oracle asks BOLT 22 for C1: any
	 * address past the image works, this one is the one it always used. */
	uint64_t v19 = oracle_vma(b) + (16ull << 20), ns;
	expect(layout_bolt_placed_copy(argv[1], placed, v19, &err) == 0, "%s", err.msg);
	check_placed_copy(argv[1], placed);

	/* BOLT 19 has no --ba: our edge profile (what AArch64 rounds use). */
	struct infer_profile_stats ps;
	struct hybrid_write_stats hs = { 0 };
	expect(infer_write_hybrid_flags(b, 0, &s, prof19, 0, &ps, &hs, &err) == 0, "%s", err.msg);
	struct layout_request r19 = { .bolt_path = bolt19, .binary = placed, .profile = prof19,
		.output = out19, .log_path = log, .alloc_vma = v19, .timeout_ms = 120000,
		.self_placed = 1 };
	int rc = layout_bolt_run(&r19, &ns, &err);
	expect(rc == 0, "BOLT 19: %s", err.msg);
	struct bolt_output *o19 = NULL;
	if (!rc)
		expect(elf_bolt_output_open(out19, b, v19, 256ull << 20, &o19, &err) == 0, "%s",
		       err.msg);
	if (o19) {
		expect(o19->lo == v19, "BOLT 19 put new code at 0x%llx, not 0x%llx",
		       (unsigned long long)o19->lo, (unsigned long long)v19);
		expect(o19->moved >= 5, "BOLT 19 moved %u functions", o19->moved);
		elf_bolt_output_close(o19);
	}

	/* Bare samples (opts.edges BOLT) cannot reach BOLT 19 (no --ba, and
	 * its reader takes no S records): a named refusal that says what to
	 * use, not BOLT's usage error. */
	expect(infer_write_preagg(b, 0, &s, preagg, &ps, &err) == 0, "%s", err.msg);
	struct layout_request rba = r19;
	rba.profile = preagg;
	rba.basic_samples = 1;
	core_err_clear(&err);
	rc = layout_bolt_run(&rba, &ns, &err);
	expect(rc == OCOLOS_ENOTSUP && strstr(err.msg, "OCOLOS_EDGES_HYBRID"),
	       "BOLT 19 with bare samples: rc %d, %s", rc, err.msg);

	api_workdir_remove(&wd);
	sample_set_free(&s);
	elf_binary_close(b);
	test_done();
}

/*
 * x86-64 CFGs (infer/cfg.h) of real compiled code: the exact CFGs of
 * cfg_sample.c's asm functions, the promised shapes of its C functions, and
 * the structural invariants on every function of the sample and of the
 * unit fixture.
 * argv: cfg_sample unit_fixture
 */
#include <stdlib.h>
#include <string.h>

#include "elf/binary.h"
#include "cfg_check.h"

static int build(const struct elf_binary *b, size_t i, struct cfg_func *f)
{
	const struct elf_func *fn = &b->funcs[i];
	struct core_err err = { 0 };
	uint8_t *code = malloc(fn->size ? fn->size : 1);
	int rc = elf_read_vaddr(b, fn->addr, code, fn->size, &err);
	if (!rc)
		rc = infer_cfg_build(b->machine, code, fn->size, fn->addr, f, &err);
	free(code);
	return rc;
}

static long find(const struct elf_binary *b, const char *name)
{
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!strcmp(b->funcs[i].name, name))
			return (long)i;
	return -1;
}

/* Build `name` in `b` and run `verify` on it. */
static void check_named(const struct elf_binary *b, const char *name,
			void (*verify)(const struct cfg_func *))
{
	long i = find(b, name);
	struct cfg_func f;
	expect(i >= 0, "%s not in the sample", name);
	if (i < 0)
		return;
	expect(build(b, (size_t)i, &f) == 0, "%s: no CFG", name);
	verify(&f);
	infer_cfg_func_free(&f);
}

/* Invariants on every sized function; all must build. */
static void check_all(const struct elf_binary *b)
{
	size_t built = 0, sized = 0;
	for (size_t i = 0; i < b->nfuncs; i++) {
		struct cfg_func f;
		if (!b->funcs[i].size)
			continue;
		sized++;
		if (build(b, i, &f))
			continue;
		built++;
		check_invariants(&f, b->funcs[i].name);
		infer_cfg_func_free(&f);
	}
	expect(built == sized, "%s: %zu of %zu functions built", b->path, built, sized);
}

static uint64_t leaf_addr;

static void check_loop(const struct cfg_func *f)
{
	check_cs_asm_loop(f, leaf_addr);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s cfg_sample unit_fixture\n", argv[0]);
		return 2;
	}
	struct core_err err = { 0 };
	struct elf_binary *b = NULL, *fx = NULL;
	expect(elf_binary_open(argv[1], &b, &err) == 0, "%s", err.msg);
	expect(elf_binary_open(argv[2], &fx, &err) == 0, "%s", err.msg);
	if (!b || !fx)
		test_done();
	leaf_addr = b->funcs[find(b, "cs_leaf")].addr;
	check_named(b, "cs_asm", check_cs_asm);
	check_named(b, "cs_asm_loop", check_loop);
	check_named(b, "cs_loop_c", check_cs_loop_c);
	check_named(b, "cs_switchy", check_cs_switchy);
	check_all(b);
	check_all(fx);
	struct cfg_func f;
	expect(infer_cfg_build(0x28 /* EM_ARM */, (const uint8_t *)"\0\0\0\0", 4, 0, &f, &err) ==
	       OCOLOS_ENOTSUP, "32-bit Arm must be refused");
	elf_binary_close(b);
	elf_binary_close(fx);
	test_done();
}

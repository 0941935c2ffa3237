/*
 * AArch64 CFGs (infer/cfg.h, our fixed-width decoder) of cfg_sample.c
 * cross-compiled with aarch64-linux-gnu-gcc: the exact CFGs of its asm
 * functions, the shapes of its C functions, and the invariants on every
 * function. The binary is read here with libelf (the ELF model takes
 * x86-64 only for now); the decoder is pure byte decoding.
 * argv: cfg_sample_aarch64
 */
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg_check.h"

struct a64_func {
	char name[64];
	uint64_t addr, size;
	const uint8_t *code; /* into the section data */
};

static struct a64_func funcs[256];
static size_t nfuncs;

/* The bytes of the section holding [addr, addr + size), or NULL. */
static const uint8_t *bytes_at(Elf *e, uint64_t addr, uint64_t size)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		gelf_getshdr(scn, &sh);
		if (sh.sh_type != SHT_PROGBITS || addr < sh.sh_addr ||
		    addr + size > sh.sh_addr + sh.sh_size)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		return d ? (const uint8_t *)d->d_buf + (addr - sh.sh_addr) : NULL;
	}
	return NULL;
}

static void load_funcs(Elf *e)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		gelf_getshdr(scn, &sh);
		if (sh.sh_type != SHT_SYMTAB)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		for (size_t i = 0; i < sh.sh_size / sh.sh_entsize && nfuncs < 256; i++) {
			GElf_Sym s;
			gelf_getsym(d, (int)i, &s);
			if (GELF_ST_TYPE(s.st_info) != STT_FUNC || !s.st_size || !s.st_value)
				continue;
			struct a64_func *f = &funcs[nfuncs];
			snprintf(f->name, sizeof(f->name), "%s", elf_strptr(e, sh.sh_link, s.st_name));
			f->addr = s.st_value;
			f->size = s.st_size;
			f->code = bytes_at(e, s.st_value, s.st_size);
			nfuncs += f->code != NULL;
		}
	}
}

static const struct a64_func *find(const char *name)
{
	for (size_t i = 0; i < nfuncs; i++)
		if (!strcmp(funcs[i].name, name))
			return &funcs[i];
	return NULL;
}

static int build(const struct a64_func *fn, struct cfg_func *f)
{
	struct core_err err = { 0 };
	int rc = infer_cfg_build(EM_AARCH64, fn->code, fn->size, fn->addr, f, &err);
	expect(rc == 0, "%s: %s", fn->name, err.msg);
	return rc;
}

static void check_named(const char *name, void (*verify)(const struct cfg_func *))
{
	const struct a64_func *fn = find(name);
	struct cfg_func f;
	expect(fn != NULL, "%s not in the sample", name);
	if (!fn || build(fn, &f))
		return;
	verify(&f);
	infer_cfg_func_free(&f);
}

static void check_loop(const struct cfg_func *f)
{
	check_cs_asm_loop(f, find("cs_leaf")->addr);
}

/* br ends the function with no edge; blr is a call that does not end it. */
static void check_ind(const struct cfg_func *f)
{
	check_invariants(f, "cs_asm_ind");
	expect(f->nblocks == 1 && f->nedges == 0 && f->blocks[0].ninsns == 2,
	       "cs_asm_ind: %zu blocks %zu edges", f->nblocks, f->nedges);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s cfg_sample_aarch64\n", argv[0]);
		return 2;
	}
	elf_version(EV_CURRENT);
	int fd = open(argv[1], O_RDONLY);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	expect(e != NULL, "cannot read %s", argv[1]);
	if (!e)
		test_done();
	load_funcs(e);
	check_named("cs_asm", check_cs_asm);
	check_named("cs_asm_loop", check_loop);
	check_named("cs_asm_ind", check_ind);
	check_named("cs_loop_c", check_cs_loop_c);
	check_named("cs_switchy", check_cs_switchy);
	for (size_t i = 0; i < nfuncs; i++) {
		struct cfg_func f;
		if (build(&funcs[i], &f))
			continue;
		check_invariants(&f, funcs[i].name);
		infer_cfg_func_free(&f);
	}
	expect(nfuncs >= 6, "only %zu functions", nfuncs);
	elf_end(e);
	close(fd);
	test_done();
}

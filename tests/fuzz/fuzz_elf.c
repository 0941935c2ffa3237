/* The ELF model (elf/binary.c) on any file: elf_binary_open() must refuse
 * what it cannot model with an error, never crash; what it accepts is
 * queried as a round would (functions by address, bytes at an address). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_binary *b = NULL;
	struct core_err err = { 0 };
	if (elf_binary_open(fuzz_as_file(data, size), &b, &err)) {
		if (getenv("OCOLOS_FUZZ_VERBOSE")) /* why an input is refused */
			fprintf(stderr, "refused: %s\n", err.msg);
		return 0;
	}
	uint8_t buf[64];
	for (size_t i = 0; i < b->nfuncs && i < 64; i++) {
		const struct elf_func *f = &b->funcs[i];
		(void)elf_func_at(b, f->addr);
		(void)elf_func_containing(b, f->addr + f->size / 2);
		(void)elf_read_vaddr(b, f->addr, buf, f->size < sizeof(buf) ? f->size : sizeof(buf),
				     &err);
	}
	(void)elf_func_containing(b, b->img_lo);
	(void)elf_func_containing(b, b->img_hi);
	elf_binary_close(b);
	return 0;
}

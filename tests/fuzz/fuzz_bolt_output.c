/* BOLT's output reader (elf/bolt_output.c) on any file, for the fixture as
 * BOLT's input and the vma the seed was made for: an output that is not
 * what BOLT writes is refused (OCOLOS_EBOLT, OCOLOS_EELF, ...), never
 * crashes; an accepted one is walked as the mapping step walks it. */
#include "elf/bolt_output.h"
#include "elf/symfile.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct elf_binary *in = fuzz_fixture();
	struct bolt_output *o = NULL;
	struct core_err err = { 0 };
	if (elf_bolt_output_open(fuzz_as_file(data, size), in, fuzz_vma(in), 256ull << 20, &o, &err)) {
		if (getenv("OCOLOS_FUZZ_VERBOSE")) /* why an input is refused */
			fprintf(stderr, "refused (vma %#llx): %s\n",
				(unsigned long long)fuzz_vma(in), err.msg);
		return 0;
	}
	/* The symbols perf and gdb get (api/debuginfo.c) come from it too. */
	struct elf_code_syms syms = { 0 };
	if (!elf_code_syms_from_bolt(o, &syms, &err))
		elf_code_syms_free(&syms);
	elf_bolt_output_close(o);
	return 0;
}

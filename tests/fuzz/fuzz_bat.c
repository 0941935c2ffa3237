/* The BAT reader (elf/bat.c) on any note contents: elf_bat_parse() refuses
 * a malformed note with OCOLOS_EELF; for an accepted one, the lookups a
 * round's sample translation makes stay inside its tables. */
#include "elf/bat.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_bat *bat = NULL;
	struct core_err err = { 0 };
	if (elf_bat_parse(data, size, "fuzz input", &bat, &err))
		return 0;
	for (size_t i = 0; i < bat->nfrags && i < 256; i++) {
		uint64_t a = bat->frags[i].addr, in;
		for (uint64_t d = 0; d < 64; d += 7) {
			(void)elf_bat_translate(bat, a + d, &in);
			(void)elf_bat_translate_src(bat, a + d, &in);
			long f = elf_bat_frag_containing(bat, a + d);
			if (f >= 0)
				(void)elf_bat_input_offset(bat, (size_t)f, d, (int)(d & 1));
		}
	}
	uint64_t in;
	(void)elf_bat_translate(bat, 0, &in);
	(void)elf_bat_translate(bat, UINT64_MAX, &in);
	elf_bat_free(bat);
	return 0;
}

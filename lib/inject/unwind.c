/*
 * Registering C1's unwind tables with the process's unwinder (libgcc_s,
 * which libstdc++ and glibc's backtrace() use). C1 lies outside every
 * loaded object's PT_LOAD ranges, so the unwinder's dl_iterate_phdr lookup
 * never finds it; frames registered by address are searched as well.
 *
 * BOLT's .eh_frame has no zero terminator (its .eh_frame_hdr follows), so
 * __register_frame() would run off its end. We register a NULL-ended table
 * of FDE pointers instead (__register_frame_table). FDEs and their CIEs
 * are used in place: their pc-relative encodings stay right because C1 is
 * mapped at a constant offset (the load bias) from its link-time address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inject/inject.h"

extern void __register_frame_table(void *begin);
extern void *__deregister_frame_info(const void *begin);

int inject_unwind_register(uint64_t eh_frame, uint64_t size, void **handle,
			   struct core_err *err)
{
	*handle = NULL;
	const uint8_t *p = (const uint8_t *)eh_frame, *end = p + size;
	size_t n = 0, cap = 0;
	const void **table = NULL;
	while (p + 8 <= end) {
		uint32_t len, id;
		memcpy(&len, p, 4);
		if (len == 0)
			break;
		if (len == 0xffffffffu || p + 4 + len > end)
			break; /* 64-bit DWARF or truncated: not produced by BOLT */
		memcpy(&id, p + 4, 4);
		if (id != 0) { /* CIE id 0 marks a CIE; anything else is an FDE */
			if (n + 2 > cap) {
				cap = cap ? cap * 2 : 256;
				const void **t = realloc(table, cap * sizeof(*t));
				if (!t) {
					free(table);
					return core_errf(err, OCOLOS_ENOMEM, "out of memory");
				}
				table = t;
			}
			table[n++] = p;
		}
		p += 4 + len;
	}
	if (!n) {
		free(table);
		return 0; /* nothing to register */
	}
	table[n] = NULL;
	__register_frame_table(table);
	*handle = table;
	return 0;
}

void inject_unwind_deregister(void *handle)
{
	if (!handle)
		return;
	__deregister_frame_info(handle);
	free(handle);
}

/* Editing a copy of an ELF file (edit.c). */
#ifndef OCOLOS_ELF_EDIT_H
#define OCOLOS_ELF_EDIT_H

#include <stdint.h>
#include "core/err.h"

/* Copy the ELF file `src` to `dst` (mode 0600) with its highest PT_LOAD's
 * p_memsz extended so that the image ends at link-time address `end`;
 * nothing else changes. OCOLOS_EINVAL if the image already reaches past
 * `end`. */
int elf_copy_with_load_end(const char *src, const char *dst, uint64_t end, struct core_err *err);

#endif

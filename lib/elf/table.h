/*
 * The number of entries of an ELF table section (symbols, relocations).
 *
 * Never sh_size / sh_entsize alone: sh_size is whatever the file says, and
 * a section header claiming terabytes made a caller allocate that much
 * (fuzz_bolt_output found it: regress/bolt_output/symtab-size-beyond-file).
 * The data libelf read (d_size) is bounded by the file; a section whose
 * data libelf could not read has no entries.
 */
#ifndef OCOLOS_ELF_TABLE_H
#define OCOLOS_ELF_TABLE_H

#include <gelf.h>
#include <stddef.h>

static inline size_t elf_table_len(const GElf_Shdr *sh, const Elf_Data *d)
{
	if (!sh || !d || !sh->sh_entsize)
		return 0;
	size_t bytes = sh->sh_size < d->d_size ? (size_t)sh->sh_size : d->d_size;
	return bytes / sh->sh_entsize;
}

#endif

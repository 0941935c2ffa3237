/*
 * Symbols of a code version for profilers and debuggers: the functions and
 * fragments BOLT put in its new segments (read from its output's symbol
 * table), and a small ELF object that describes them at their run-time
 * addresses, the form in which GDB's JIT interface takes symbols.
 *
 * This is the model only. Writing the perf map and registering the object
 * with GDB (acting on the process, files in /tmp) is api/debuginfo.c's job.
 */
#ifndef OCOLOS_ELF_SYMFILE_H
#define OCOLOS_ELF_SYMFILE_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "elf/bolt_output.h"

/* One function or fragment of a code version. */
struct elf_code_sym {
	uint64_t addr;	  /* link-time address in BOLT's output */
	uint64_t size;	  /* bytes (st_size; 0 for an asm label) */
	uint32_t name;	  /* offset of its name in elf_code_syms.strs */
};

struct elf_code_syms {
	struct elf_code_sym *v; /* sorted by addr */
	size_t n, cap;
	char *strs;		/* NUL-terminated names, back to back */
	size_t len, strs_cap;
};

/* The function symbols of BOLT's output `o` that lie in its new executable
 * segments (C_k's code): moved functions under their own names, cold
 * fragments as BOLT names them ("f.cold.0"). 0, OCOLOS_EBOLT (the output
 * cannot be read again) or OCOLOS_ENOMEM. The caller frees *out with
 * elf_code_syms_free(), also on error. */
int elf_code_syms_from_bolt(const struct bolt_output *o, struct elf_code_syms *out,
			    struct core_err *err);
void elf_code_syms_free(struct elf_code_syms *s);
/* Append one symbol (kept sorted only by elf_code_syms_from_bolt: add in
 * address order). 0 or -1 (out of memory). */
int elf_code_syms_add(struct elf_code_syms *s, uint64_t addr, uint64_t size, const char *name);

/* What an ELF object for a debugger describes. */
struct elf_symfile_desc {
	uint16_t machine;	      /* EM_X86_64, EM_AARCH64 */
	uint64_t text_addr, text_size; /* run-time span of the code */
	const struct elf_code_syms *syms;
	uint64_t bias;		      /* run-time = link-time + bias */
	/* Optional: an .eh_frame of the code, `eh_len` bytes that the
	 * process holds at run-time address eh_addr (its pc-relative
	 * pointers are decoded from there). NULL: none. */
	const uint8_t *eh_frame;
	size_t eh_len;
	uint64_t eh_addr;
};

/*
 * Build a relocatable ELF object (ET_REL, no relocations) for `d`: a
 * SHT_NOBITS .text at text_addr (the code is in the process, not in the
 * object), optionally an .eh_frame copy at eh_addr, and a symbol table
 * whose values are offsets into .text (a debugger adds the section
 * address). Symbols outside the span are left out. Section addresses are
 * the only run-time addresses it holds. *img is malloc'ed (*len bytes);
 * 0 or OCOLOS_ENOMEM.
 */
int elf_symfile_build(const struct elf_symfile_desc *d, uint8_t **img, size_t *len,
		      struct core_err *err);

#endif

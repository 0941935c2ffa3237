/*
 * Model of BOLT's output binary, as far as injection needs it: the new
 * loadable segments BOLT placed at the custom allocation address (C1), the
 * C1 address of every function it moved, and the new .eh_frame. Also the
 * safety check that BOLT left the original read-only data alone except for
 * the pointer slots we redirect ourselves.
 */
#ifndef OCOLOS_ELF_BOLT_OUTPUT_H
#define OCOLOS_ELF_BOLT_OUTPUT_H

#include <libelf.h>
#include <stdint.h>
#include "core/err.h"
#include "elf/binary.h"

struct bolt_output {
	struct elf_segment *segs; size_t nsegs; /* new PT_LOADs (C1), link-time */
	uint64_t lo, hi;		 /* page-aligned span of segs */
	uint64_t *c1_addr;		 /* per input function: C1 entry or 0 */
	size_t nfuncs;			 /* entries of c1_addr */
	uint32_t moved;			 /* functions with a C1 entry */
	uint64_t eh_frame, eh_frame_size; /* new .eh_frame (link-time), or 0 */
	int fd;				 /* the output file, for reading segs */
};

/* Parse BOLT's output `path` for input `in`, whose new code was asked to go
 * to [vma, vma + room). OCOLOS_EBOLT if BOLT put anything outside that range
 * or changed original read-only data we do not redirect (e.g. jump tables
 * rewritten in place); OCOLOS_ENOTHOT if it moved no function. */
int elf_bolt_output_open(const char *path, const struct elf_binary *in,
			 uint64_t vma, uint64_t room, struct bolt_output **out,
			 struct core_err *err);
void elf_bolt_output_close(struct bolt_output *o);
/* Read the output's bytes at link-time [addr, addr + len), which must lie
 * in the file part of one of its new segments. 0 or -1. */
int elf_bolt_output_read(const struct bolt_output *o, uint64_t addr, void *buf, size_t len);

/* For every function of `in` (the input of the BOLT output `e`), the address
 * of the output's function symbol of the same name that lies in one of the
 * executable segments segs[0..nsegs), or 0: out_addr has in->nfuncs
 * entries, *matched counts the non-zero ones. Same-named local functions
 * are matched in symbol-table order when both sides have as many, else left
 * at 0. Also used to bind BAT tables to input functions (elf/bat.c).
 * 0 or OCOLOS_ENOMEM. */
int elf_bolt_match_functions(Elf *e, const struct elf_binary *in,
			     const struct elf_segment *segs, size_t nsegs,
			     uint64_t *out_addr, uint32_t *matched, struct core_err *err);

#endif

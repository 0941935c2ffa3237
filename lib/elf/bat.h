/*
 * BOLT Address Translation (BAT) reader. With --enable-bat (always passed,
 * layout/bolt.c) BOLT writes into its output a `.note.bolt_bat` section that
 * maps every address of the code it moved — each output function's hot
 * fragment and its cold fragments — back to the input function and the
 * offset it came from. Continuous optimization uses it to turn samples taken
 * in optimized code (C_k) into addresses of the original binary (C0), so
 * every round re-optimizes the original with stock BOLT (BOLT refuses to
 * optimize its own output). The format and the versions it was checked
 * against are described in bat.c.
 *
 * This is the model and the lookup only: reading the section, checking it,
 * binding its tables to the input binary's functions, and translating one
 * address. Rewriting a whole sample set is infer/bat_translate.c's job.
 * Nothing here acts on a process.
 */
#ifndef OCOLOS_ELF_BAT_H
#define OCOLOS_ELF_BAT_H

#include <libelf.h>
#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "elf/binary.h"

/* One row of a fragment's translation table. BOLT writes a row for the
 * first instruction of every output block that came from an input block
 * (branch = 0) and for every branch or call instruction inside a block
 * (branch = 1: BOLT's BRANCHENTRY bit). Hot fragments also get rows for
 * input blocks BOLT deleted, all at the fragment's end offset. */
struct elf_bat_entry {
	uint32_t out;	    /* offset in the output fragment */
	uint32_t in;	    /* offset in the input function (the whole function,
			       also for rows of cold fragments) */
	uint32_t bb_index;  /* branch == 0: index of the input block in BOLT's
			       input order (the format's BBIdx) */
	uint8_t branch;	    /* 1: a branch/call source, 0: a block start */
	uint64_t bb_hash;   /* branch == 0: BOLT's hash of the input block */
};

/* A fragment of an output function: the hot part (at the function's output
 * address) or one cold part (split functions, "f.cold.N" in the output). */
struct elf_bat_frag {
	uint64_t addr;	    /* output (link-time) address of its first byte */
	uint64_t size;	    /* bytes: the output's function symbol at addr,
			       else up to the next fragment (see bat.c) */
	uint32_t hot;	    /* index in frags of the function's hot fragment
			       (its own index for a hot fragment) */
	uint32_t first, n;  /* its table: entries[first .. first + n), sorted
			       by out (equal `out` keep the format's order) */
	uint32_t skew;	    /* cold: input offset of its first row, as written */
	uint64_t hash;	    /* hot: BOLT's hash of the input function */
	uint32_t nblocks;   /* hot: basic blocks of the input function */
	uint32_t first_ep, nep; /* hot: secondary entry points, as input
			       offsets: eps[first_ep .. first_ep + nep) */
	/* Bound to the input binary (elf_bat_open/read with `in`); cold
	 * fragments carry their hot fragment's values. */
	long in_func;	    /* index in in->funcs, or -1 when not bound */
	uint64_t in_addr;   /* that function's link-time address, or 0 */
};

struct elf_bat {
	char *path;	    /* owned; names the file in messages */
	struct elf_bat_frag *frags; size_t nfrags; /* the hot table's fragments
			       in table order (ascending addresses), then the
			       cold table's */
	size_t nhot;	    /* frags[0 .. nhot) are hot */
	struct elf_bat_entry *entries; size_t nentries;
	uint32_t *eps; size_t neps;
	uint32_t *order;    /* fragment indices by ascending address, one per
			       address (the first fragment of the table wins
			       when two share one, as in BOLT's reader) */
	size_t norder;
	size_t bound;	    /* hot fragments bound to an input function */
};

/* Parse the contents of a `.note.bolt_bat` section (`len` bytes: the note
 * header, its name and the tables), `what` naming it in messages. Fragment
 * sizes are not in the note: each fragment ends where the next one starts,
 * the last one after its highest table row. Nothing is bound.
 * 0, or OCOLOS_EELF with a message naming `what` and the fault, or
 * OCOLOS_ENOMEM. On success *out is the caller's: elf_bat_free(). */
int elf_bat_parse(const void *note, size_t len, const char *what,
		  struct elf_bat **out, struct core_err *err);

/* Read the BAT of the BOLT output open as `e` (`path` for messages): the
 * section, fragment sizes from the output's function symbols, and, when
 * `in` (BOLT's input binary) is given, each hot fragment's input function,
 * matched by name as elf/bolt_output.c matches moved functions. A fragment
 * whose function cannot be matched stays unbound (in_func -1).
 * OCOLOS_EELF when the section is missing (BOLT ran without --enable-bat)
 * or malformed. `e` stays the caller's. */
int elf_bat_read(Elf *e, const char *path, const struct elf_binary *in,
		 struct elf_bat **out, struct core_err *err);

/* elf_bat_read() on the file at `path`. OCOLOS_EIO if it cannot be opened. */
int elf_bat_open(const char *path, const struct elf_binary *in,
		 struct elf_bat **out, struct core_err *err);

void elf_bat_free(struct elf_bat *bat);

/* Results of elf_bat_translate(). */
enum elf_bat_result {
	ELF_BAT_NOT_MOVED = 0,	/* not inside a fragment: original code (or
				   code without a table); *in = out_addr */
	ELF_BAT_TRANSLATED = 1,	/* *in = the original address */
	ELF_BAT_UNBOUND = 2,	/* inside a fragment whose input function is
				   not known (not bound); *in = out_addr */
};

/* Map `out_addr` (link-time address in BOLT's output) to the link-time
 * address in the input binary it came from, the way BOLT's own
 * BoltAddressTranslation::translate() does for a sample: the row at or
 * before it in its fragment (the last one of equal offsets), input offset
 * of that row plus the distance from it — so an address that is not a
 * row's lands that far past the row's input offset, whatever BOLT changed
 * in between; before the first row, the fragment offset itself is taken
 * as the input offset, as BOLT does. Returns an enum elf_bat_result. */
int elf_bat_translate(const struct elf_bat *bat, uint64_t out_addr, uint64_t *in_addr);

/* The same for the source of a taken branch (BOLT's IsBranchSrc): the input
 * offset of the row at or before it, without the distance — the branch
 * instruction itself when BOLT kept it, else the start of its block. */
int elf_bat_translate_src(const struct elf_bat *bat, uint64_t out_addr, uint64_t *in_addr);

/* Index in frags of the fragment containing `out_addr`, or -1. O(log n). */
long elf_bat_frag_containing(const struct elf_bat *bat, uint64_t out_addr);

/* Input-function offset of offset `off` of fragment `frag` (see
 * elf_bat_translate; `branch_src` as elf_bat_translate_src). */
uint64_t elf_bat_input_offset(const struct elf_bat *bat, size_t frag, uint64_t off,
			      int branch_src);

#endif

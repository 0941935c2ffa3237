/*
 * Instruction encoders and range checks for redirecting branches. Only the
 * architecture files know instruction formats; everything else asks here.
 */
#ifndef OCOLOS_RELOC_H
#define OCOLOS_RELOC_H

#include <stdint.h>

/* x86-64: `call rel32` (e8) / `jmp rel32` (e9) at run-time address `site`,
 * 5 bytes long. */
#define RELOC_X86_BRANCH_LEN 5

/* Target of the e8/e9 instruction whose 5 bytes are `insn` at `site`. */
uint64_t reloc_x86_branch_target(uint64_t site, const uint8_t insn[5]);

/* Encode the rel32 that makes the branch at `site` reach `target` into
 * `rel32` (little-endian). Returns 0, or -1 if out of ±2 GiB reach. */
int reloc_x86_encode_rel32(uint64_t site, uint64_t target, uint8_t rel32[4]);

/* Whether every address of [lo, hi) can reach every address of [lo2, hi2)
 * with a rel32 (used to choose where C1 may go). */
int reloc_x86_in_reach(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2);

/* Decode `code` (the bytes of one function, at link-time address `addr`)
 * from its start and call `fn` for every `call rel32` / `jmp rel32` with
 * the instruction's address, opcode and target. Stops at the first byte
 * that does not decode (padding or data), returning its offset; returns
 * `len` when the whole function decoded. */
typedef int (*reloc_branch_fn)(uint64_t site, uint8_t opcode, uint64_t target, void *user);
size_t reloc_x86_scan_branches(const uint8_t *code, size_t len, uint64_t addr,
			       reloc_branch_fn fn, void *user);

#endif

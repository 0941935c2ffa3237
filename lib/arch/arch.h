/*
 * Instruction encoders and range checks for redirecting branches. Only the
 * architecture files know instruction formats; everything else asks here.
 */
#ifndef OCOLOS_ARCH_ARCH_H
#define OCOLOS_ARCH_ARCH_H

#include <stdint.h>

/* x86-64: `call rel32` (e8) / `jmp rel32` (e9) at run-time address `site`,
 * 5 bytes long. */
#define ARCH_X86_BRANCH_LEN 5

/* Target of the e8/e9 instruction whose 5 bytes are `insn` at `site`. */
uint64_t arch_x86_branch_target(uint64_t site, const uint8_t insn[5]);

/* Encode the rel32 that makes the branch at `site` reach `target` into
 * `rel32` (little-endian). Returns 0, or -1 if out of ±2 GiB reach. */
int arch_x86_encode_rel32(uint64_t site, uint64_t target, uint8_t rel32[4]);

/* Whether every address of [lo, hi) can reach every address of [lo2, hi2)
 * with a rel32 (used to choose where C1 may go). */
int arch_x86_in_reach(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2);

/* One decoded instruction, as every x86-64 user sees it (the call-site
 * sweep of elf/binary.c, the CFGs of infer/cfg_x86.c). */
enum arch_flow {
	ARCH_FLOW_OTHER = 0,	/* falls through to the next instruction */
	ARCH_FLOW_CALL,		/* direct call (target known) */
	ARCH_FLOW_ICALL,	/* indirect call */
	ARCH_FLOW_COND,		/* conditional direct branch (target known) */
	ARCH_FLOW_JUMP,		/* unconditional direct jump (target known) */
	ARCH_FLOW_IJUMP,	/* indirect jump: no known successor */
	ARCH_FLOW_RET,		/* return */
	ARCH_FLOW_TRAP,		/* ud2, hlt, int3: execution stops here */
};
struct arch_insn {
	uint64_t addr;		/* link-time address */
	uint64_t target;	/* CALL / COND / JUMP: the target, else 0 */
	uint64_t rip_ref;	/* a [rip + disp32] operand's address, else 0 */
	uint8_t len;		/* bytes */
	uint8_t flow;		/* enum arch_flow */
	uint8_t rel32_opcode;	/* 0xe8 / 0xe9: a plain `call/jmp rel32`
				 * (no prefix: its rel32 follows the opcode),
				 * else 0 */
	uint8_t disp_off;	/* rip_ref: offset of its disp32 in the insn */
	uint8_t imm_off;	/* an absolute immediate of 4 or 8 bytes (not a
				 * branch offset): its offset, else 0 */
	uint8_t imm_size;	/* ... and its size in bytes, else 0 */
	uint64_t imm;		/* ... and the 64-bit value it stands for */
};
/* Decode `code` (one function's bytes at link-time address `addr`) from
 * its start and call fn(insn, user) for every instruction, until fn
 * returns non-zero or a byte does not decode (padding or data). Returns
 * the offset where it stopped (`len` when all of it decoded). The one
 * Zydis pass of the library. */
typedef int (*arch_insn_fn)(const struct arch_insn *in, void *user);
size_t arch_x86_decode(const uint8_t *code, size_t len, uint64_t addr, arch_insn_fn fn,
		       void *user);

/* Call `fn` for every `call rel32` / `jmp rel32` of a function, with the
 * instruction's address, opcode and target; stops when fn returns
 * non-zero. */
typedef int (*arch_branch_fn)(uint64_t site, uint8_t opcode, uint64_t target, void *user);

/* What a sweep learns about a function's entry, for redirecting it with a
 * `jmp rel32` written over its first 5 bytes (see inject/plan.c). */
struct arch_entry_info {
	int call_in_entry;   /* a call ends inside the first 5 bytes: a return
			      * address could point into them */
	int indirect_jump;   /* a jmp through a register/memory (a jump table
			      * might target any offset) */
	int decoded_entry;   /* the first 5 bytes decoded as instructions */
	/* Called with the target of every direct jump, branch or call, to
	 * find jumps into other entries. */
	void (*on_target)(uint64_t target, void *user);
	/* Called with the effective address of every RIP-relative memory
	 * operand (lea f(%rip), mov f(%rip)): an address the assembler may
	 * have resolved without leaving a relocation. May be NULL. */
	void (*on_address)(uint64_t addr, void *user);
};
/* The call-site sweep: `fn` for every plain call/jmp rel32, and `info`
 * (may be NULL) filled as it goes. Returns what arch_x86_decode returns. */
size_t arch_x86_scan_function(const uint8_t *code, size_t len, uint64_t addr,
			      arch_branch_fn fn, struct arch_entry_info *info, void *user);
size_t arch_x86_scan_branches(const uint8_t *code, size_t len, uint64_t addr,
			      arch_branch_fn fn, void *user);

/* ---- AArch64 (aarch64.c) ---- */

/* `BL imm26` / `B imm26` reach: a signed 26-bit count of instructions,
 * i.e. [-128 MiB, +128 MiB - 4] from the instruction's own address. */
#define ARCH_A64_BRANCH_REACH (128ull << 20)
/* A veneer: ADRP x16, target; ADD x16, x16, #:lo12:target; BR x16; BRK.
 * x16 (IP0) is the register the AAPCS64 gives linkers for exactly this,
 * so no caller expects it preserved across a call or tail call. */
#define ARCH_A64_VENEER_LEN 16

/* Whether the word `insn` is `BL imm26` (returns 0x94) or `B imm26`
 * (returns 0x14), else 0: the opcode byte kept in elf_branch_site. */
uint8_t arch_a64_branch_kind(uint32_t insn);
/* Whether `insn` is a call through a register: BLR, or BLRAA, BLRAAZ,
 * BLRAB, BLRABZ (pointer authentication). */
int arch_a64_call_reg(uint32_t insn);
/* Target of the BL/B `insn` at `site`. */
uint64_t arch_a64_branch_target(uint64_t site, uint32_t insn);
/* Re-encode the BL/B `insn` at `site` to branch to `target` (4-aligned)
 * into *out, keeping BL vs B. 0, or -1 if `target` is out of +-128 MiB. */
int arch_a64_encode_branch(uint64_t site, uint32_t insn, uint64_t target, uint32_t *out);
/* Whether every address of [lo, hi) reaches every address of [lo2, hi2)
 * with a BL (used to decide whether call sites need veneers). */
int arch_a64_in_reach(uint64_t lo, uint64_t hi, uint64_t lo2, uint64_t hi2);
/* Decode `code` (one function's bytes at link-time address `addr`) word
 * by word and call `fn` for every BL/B imm26 with its address, opcode
 * (0x94 / 0x14) and target. Returns `len` rounded down to whole words.
 * The caller keeps data (literal pools, `$d` mapping symbols) out. */
size_t arch_a64_scan_branches(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, void *user);
/* The same sweep, also calling `on_address` (may be NULL) with the target
 * of every ADR: the one address-forming instruction GNU as resolves
 * itself for a symbol of the same section (ADRP keeps its relocation). */
size_t arch_a64_scan_function(const uint8_t *code, size_t len, uint64_t addr,
			       arch_branch_fn fn, void (*on_address)(uint64_t addr, void *user),
			       void *user);
/* Target of `insn` at `pc` if it is ADR; 0 if it is not. */
int arch_a64_adr_target(uint64_t pc, uint32_t insn, uint64_t *target);
/* The 4 KiB page `insn` at `pc` forms if it is ADRP; 0 if it is not. */
int arch_a64_adrp_page(uint64_t pc, uint32_t insn, uint64_t *page);
/* ADR or ADRP `insn` with its signed 21-bit immediate (bytes for ADR, 4 KiB
 * pages for ADRP) set to `imm`, its register kept: 0, or -1 out of range. */
int arch_a64_set_pcrel21(uint32_t insn, int64_t imm, uint32_t *out);
/* Whether `insn` is `ADD Xd, Xn, #imm12` (64-bit, no shift: the :lo12:
 * half of an address). */
int arch_a64_is_add_lo12(uint32_t insn);
/* The address of the 8-byte literal `insn` at `pc` loads if it is
 * `LDR Xt, label`; 0 if it is not. */
int arch_a64_ldr_literal(uint64_t pc, uint32_t insn, uint64_t *lit);
/* `B target` at `site` into *out. 0, or -1 if out of +-128 MiB. */
int arch_a64_encode_b(uint64_t site, uint64_t target, uint32_t *out);
/* Whether `insn` is a landing pad of an indirect branch into a BTI-guarded
 * page: BTI (any form), or PACIASP / PACIBSP, which are implicit ones. */
int arch_a64_landing_pad(uint32_t insn);
/* Entry redirection: the offset in a function (its first `len` bytes of
 * code, `code`) of the instruction word that becomes a `B` to the same
 * offset in its copy — 0, or 4 when the first word is a landing pad (see
 * inject/plan.c for why) — or -1 when the function has no such word. */
int arch_a64_entry_word(const uint8_t *code, uint64_t len);
/* The ARCH_A64_VENEER_LEN bytes of a veneer living at `at` that jumps to
 * `target` (ADRP reaches +-4 GiB). 0, or -1 if out of ADRP reach. */
int arch_a64_encode_veneer(uint64_t at, uint64_t target, uint8_t out[ARCH_A64_VENEER_LEN]);

#endif

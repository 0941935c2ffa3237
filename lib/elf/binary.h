/*
 * Binary model: what libocolos needs to know about the program's ELF file,
 * read once with libelf before the target is touched. Functions (from
 * .symtab), the loadable image, the build-id, and — from the relocations
 * that `-Wl,--emit-relocs` keeps — every direct call/jump site and every
 * static function-pointer slot (v-tables, const tables) that targets the
 * start of a function. Nothing here acts on a process.
 */
#ifndef OCOLOS_ELF_BINARY_H
#define OCOLOS_ELF_BINARY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"

struct elf_func {
	uint64_t addr;	   /* link-time address */
	uint64_t size;	   /* st_size (may be 0 for asm labels) */
	const char *name;  /* points into the binary's string table */
	uint32_t symidx;   /* index in .symtab (BOLT keeps the order) */
	/* Its entry may be redirected to its C1 copy (inject/plan.c gives the
	 * reasons). x86-64: its first 5 bytes may become a jmp without any
	 * thread ever resuming inside them: they decode, hold no call (no
	 * return address points into them), no branch anywhere in the binary
	 * targets them past the first byte, and the function has no indirect
	 * jump (a jump table could); threads' PCs and stacks are still checked
	 * at the stop (inject/entry.c). AArch64: the instruction word at
	 * entry_off is code (not a literal pool) and 4-aligned; one whole
	 * instruction is replaced, so there is no inside to resume in. */
	uint8_t entry_ok;
	/* AArch64: the offset of the word that becomes `B`: 0, or 4 after a
	 * landing pad (BTI, PACIASP) that stays for indirect calls. */
	uint8_t entry_off;
	/* The program can obtain this function's address other than by
	 * reading one of the pointer slots below: code materializes it (a
	 * relocation against it that is not a direct call/jump target, or a
	 * RIP-relative / ADR reference the assembler resolved), data refers to
	 * it other than through an 8-byte slot, or it is exported in .dynsym
	 * (dlsym, other objects). Then a slot holding it must keep the C0
	 * address: the program may compare the two (see inject/plan.c). */
	uint8_t addr_taken;
};

/* A direct call/jump whose target is a function start. x86-64: `call rel32`
 * (e8) or `jmp rel32` (e9), `site` is the opcode byte, the rel32 follows.
 * AArch64: `BL imm26` (opcode 0x94) or `B imm26` (0x14), `site` is the
 * instruction word. */
struct elf_branch_site {
	uint64_t site;
	uint32_t func;	   /* index into funcs[] of the target */
	uint8_t opcode;	   /* 0xe8 / 0xe9, or 0x94 / 0x14 */
};

/* An 8-byte data word that holds the address of a function start. */
struct elf_ptr_slot {
	uint64_t addr;	   /* link-time address of the slot */
	uint32_t func;	   /* index into funcs[] of the target */
	uint8_t writable;  /* in a section that stays writable at run time */
};

/* AArch64: an instruction that, as the linker's relocation says, forms
 * (part of) the address of a function start: what keep_c0.c needs to point
 * BOLT's copies of such instructions back at C0 without following
 * registers. The compiler pairs an ADRP of `f` only with `:lo12:f` uses of
 * the same symbol expression, so the relocations name every reader of a
 * page that an ADRP of f computes. */
enum elf_a64_ref_kind {
	ELF_A64_REF_PAGE = 1,	/* ADRP f (R_AARCH64_ADR_PREL_PG_HI21[_NC]) */
	ELF_A64_REF_ADD,	/* ADD :lo12:f (R_AARCH64_ADD_ABS_LO12_NC) */
	ELF_A64_REF_ADR,	/* ADR f (R_AARCH64_ADR_PREL_LO21) */
	ELF_A64_REF_LO12_LDST,	/* a load/store at :lo12:f (LDST*_ABS_LO12_NC):
				   reads f's page in another way */
};
struct elf_a64_ref {
	uint64_t at;	   /* link-time address of the instruction */
	uint32_t func;	   /* index into funcs[] of the function it names */
	uint8_t kind;	   /* enum elf_a64_ref_kind */
};

struct elf_segment {
	uint64_t vaddr, memsz, offset, filesz;
	uint32_t flags;	   /* PF_R | PF_W | PF_X */
};

struct elf_binary {
	char *path;		 /* owned */
	dev_t dev;		 /* of the file, to find it in /proc/PID/maps */
	ino_t ino;
	uint16_t machine;	 /* EM_X86_64, ... */
	int is_pie;		 /* ET_DYN */
	uint64_t img_lo, img_hi; /* span of all PT_LOAD, link-time */
	struct elf_segment *segs; size_t nsegs; /* PT_LOAD, in file order */
	struct elf_func *funcs; size_t nfuncs;	/* sorted by addr, unique */
	struct elf_branch_site *sites; size_t nsites; /* sorted by site, unique */
	size_t reloc_sites;	 /* how many the relocations alone gave */
	struct elf_ptr_slot *slots; size_t nslots;
	struct elf_a64_ref *a64_refs; size_t na64_refs; /* sorted by at */
	uint8_t build_id[64]; size_t build_id_len;
	uint64_t build_id_vaddr;  /* where the loaded image holds it, or 0 */
	uint64_t text_bytes;	 /* size of executable PT_LOADs */
	const char *sanitizer;	 /* non-NULL: built with this sanitizer */
	/* The binary imports dladdr/dladdr1: it can turn a function pointer
	 * into the name of its object, which a pointer into C1 does not have;
	 * then no slot is redirected by default. */
	int imports_dladdr;
	/* Link-time addresses of the words the dynamic linker writes at load
	 * time (r_offset of .rela.dyn's relocations), sorted: what the file
	 * holds there never reaches the running process. */
	uint64_t *dyn_relocs; size_t ndyn_relocs;
	/* x86-64: link-time addresses of the PLT entries of functions that
	 * never return, sorted (plt.c): those that end the process or thread
	 * or jump elsewhere (abort, exit, longjmp...), and those that unwind
	 * through their caller (__cxa_throw, _Unwind_Resume...). */
	uint64_t *noreturn_plt; size_t nnoreturn_plt;
	uint64_t *unwinding_plt; size_t nunwinding_plt;
	/* private */
	int fd;
	void *elf;		 /* Elf * */
	size_t nalloc_funcs, nalloc_sites, nalloc_slots, nalloc_a64_refs;
};

/* Open and model the ELF file at `path`. Refuses, before anything is done to
 * a process: non-ELF files or machines other than x86-64 and AArch64 (OCOLOS_EELF/OCOLOS_ENOTSUP), stripped
 * binaries (OCOLOS_ENOSYMS), sanitizer builds, which BOLT refuses
 * (OCOLOS_ENOTSUP), binaries without --emit-relocs (OCOLOS_ENORELOCS).
 * On success *out is owned by the caller: elf_binary_close(). */
int elf_binary_open(const char *path, struct elf_binary **out,
		    struct core_err *err);
void elf_binary_close(struct elf_binary *b);

/* Index of the function starting exactly at `addr`, or -1. */
long elf_func_at(const struct elf_binary *b, uint64_t addr);
/* Index of the function containing `addr` (addr in [start, start+size)), or -1. */
long elf_func_containing(const struct elf_binary *b, uint64_t addr);

/* Whether the byte at link-time `addr` belongs to a word the dynamic
 * linker writes (dyn_relocs). */
int elf_dyn_reloc_byte(const struct elf_binary *b, uint64_t addr);

/* Does a call to link-time `addr` never return? (a PLT entry of a noreturn
 * function of the C or C++ runtime; plt.c) 0 (it may return),
 * ELF_NORETURN_ENDS (abort, exit, longjmp...) or ELF_NORETURN_UNWINDS
 * (__cxa_throw, _Unwind_Resume, pthread_exit...: the unwinder reads the
 * address after the call while it runs). */
#define ELF_NORETURN_ENDS 1
#define ELF_NORETURN_UNWINDS 2
int elf_noreturn_target(const struct elf_binary *b, uint64_t addr);
/* Is `name` (a .dynsym name) a function that never returns but unwinds
 * through its caller: __cxa_throw, _Unwind_Resume, std::__throw_*,
 * pthread_exit...? The same list decides which functions' code counts as
 * the unwinder's (proc_unwinder_ranges). */
int elf_unwinding_name(const char *name);
/* Fill noreturn_plt and unwinding_plt; called by elf_binary_open. 0 or
 * OCOLOS_ENOMEM. */
int elf_read_noreturn_plt(struct elf_binary *b);

/* Index of the first AArch64 reference at or after link-time `at`. */
size_t elf_a64_ref_from(const struct elf_binary *b, uint64_t at);
/* The AArch64 reference at link-time `at`, or NULL. */
const struct elf_a64_ref *elf_a64_ref_at(const struct elf_binary *b, uint64_t at);

/* Read `len` bytes at link-time address `addr` from the file. */
int elf_read_vaddr(const struct elf_binary *b, uint64_t addr, void *buf,
		   size_t len, struct core_err *err);

#endif

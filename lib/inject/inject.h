/*
 * Injection: reserving the C1 range, mapping C1, the patch plan (C0 call
 * sites and pointer slots to redirect), stop-the-world, writing the patches,
 * and registering C1's unwind tables. Everything that can happen while the
 * target runs happens before the stop; the stop only verifies and writes.
 */
#ifndef OCOLOS_INJECT_H
#define OCOLOS_INJECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"
#include "core/log.h"
#include "core/procmaps.h"
#include "elf/binary.h"
#include "elf/bolt_output.h"

/* ---- reservation (reserve.c) ---- */

struct proc_target; /* inject/target.h */

/* A PROT_NONE range in the target within rel32 reach of the whole image
 * (run-time [img_lo, img_hi)), above it so that its link-time address
 * (addr - bias) is above every original segment. */
struct inject_reservation {
	uint64_t addr, size; /* run-time; 0 when none */
	int early;	     /* the early reservation (below): released to PROT_NONE */
};
int inject_reserve(struct proc_target *t, const struct elf_binary *b, uint64_t bias, uint64_t size,
		   struct inject_reservation *r, struct core_err *err);
/* AArch64: a PROT_NONE range of `size` bytes within BL reach (+-128 MiB)
 * of every executable segment of the image, for veneers. */
int inject_reserve_island(struct proc_target *t, const struct elf_binary *b, uint64_t bias,
			  uint64_t size, struct inject_reservation *r, struct core_err *err);
/*
 * The early reservation, for a BOLT without --custom-allocation-vma (BOLT
 * 19, the one that handles AArch64 inputs here): such a BOLT puts its new
 * segments right after the binary's highest segment, rounded up (see
 * reserve.c for the exact rule) — where the brk heap grows. So on AArch64
 * a constructor of libocolos reserves, PROT_NONE, that range in this
 * process before main() runs and before malloc can extend the heap there
 * (glibc then takes its memory from mmap). A round takes it over.
 * OCOLOS_ERESERVE if there is none for this binary (the process is not
 * the one it was made for, or it is in use by an earlier round); the
 * round then falls back to inject_reserve_placed().
 */
int inject_reserve_early_take(const struct elf_binary *b, uint64_t bias,
			      struct inject_reservation *r, struct core_err *err);
/* When the early range cannot be used: a free range above the image (and
 * its heap), within branch reach of its code if there is one, whose start
 * is where BOLT 19's rule would put new code for a copy of the binary with
 * its highest segment extended up to it (layout_bolt_placed_copy). Its
 * link-time start is r->addr - bias. OCOLOS_ERESERVE when nothing is free. */
int inject_reserve_placed(struct proc_target *t, const struct elf_binary *b, uint64_t bias,
			  struct inject_reservation *r, struct core_err *err);
/* Where the constructor reserved, for tests: 0 when nothing. */
void inject_reserve_early_range(uint64_t *addr, uint64_t *size);
/* Give back what is still reserved in [from, addr + size). */
void inject_reservation_trim(struct proc_target *t, struct inject_reservation *r, uint64_t from);
void inject_reservation_release(struct proc_target *t, struct inject_reservation *r);

/* ---- process memory access (memwrite.c) ---- */

/* /proc/PID/mem writes go through the kernel's FOLL_FORCE path: they change
 * read-only text and RELRO pages (copy-on-write, as a debugger's breakpoint
 * does) without the pages ever becoming writable in the process. */
int proc_mem_open(pid_t pid, int *fd, struct core_err *err);
int proc_mem_write(int fd, uint64_t addr, const void *buf, size_t len);
int proc_mem_read(int fd, uint64_t addr, void *buf, size_t len);

/* ---- patch plan (plan.c) ---- */

struct inject_patch {
	uint64_t addr;	   /* run-time address of the bytes */
	uint8_t len;	   /* 4 (rel32), 5 (entry jmp) or 8 (pointer) */
	uint8_t kind;	   /* INJECT_CALL_SITE, INJECT_PTR_SLOT, INJECT_ENTRY or
			      INJECT_DATA_SLOT */
	uint8_t old[8];	   /* bytes expected there now (C0) */
	uint8_t new_[8];   /* bytes that redirect to C1 */
	uint8_t applied;   /* in place since the last forward switch */
	uint8_t blocked;   /* entry a thread could resume inside: not written now */
	/* Pointer slots: 1 + index of the function they hold. The slots of one
	 * function sit together in the plan and are written all or none, so
	 * no two of them ever hold different addresses for it (apply.c). */
	uint32_t group;
};
/* INJECT_DATA_SLOT: a pointer slot in writable data; the program may
 * write it at any time, so it is never pre-faulted (that rewrites the
 * value read a moment earlier). */
enum { INJECT_CALL_SITE = 1, INJECT_PTR_SLOT = 2, INJECT_ENTRY = 3, INJECT_DATA_SLOT = 4 };

/* inject_plan_build_island() flags. */
/* Also redirect the slots of functions whose address the program can
 * obtain otherwise (elf_func.addr_taken): the caller promises the program
 * never compares such a pointer with the function's address. */
#define INJECT_PLAN_UNSAFE_SLOTS 0x1u
/* Redirect no pointer slot at all. */
#define INJECT_PLAN_NO_SLOTS 0x2u

struct inject_plan {
	struct inject_patch *v; size_t n, cap;
	uint32_t call_sites, ptr_slots, entries; /* planned, by kind */
	uint8_t *changed;		    /* n bytes of scratch for inject_apply */
	uint32_t slots_kept;		    /* slots left on C0: address observable (plan.c) */
	uint32_t writable_slots;	    /* of ptr_slots, in writable data */
	/* AArch64: veneers for call sites out of BL reach of C1, to be
	 * written at run-time address `island` before the stop (malloc'ed,
	 * island_len bytes; island 0 when none is needed). */
	uint64_t island;
	uint8_t *island_code; size_t island_len;
	uint32_t veneers;
};

int inject_plan_build(const struct elf_binary *b, const struct bolt_output *o,
		      uint64_t bias, struct inject_plan *plan, struct core_err *err);
/* The same, with `island` where veneers may go (AArch64, within BL reach
 * of every call site; 0 if none was reserved: then an out-of-reach call
 * site is an OCOLOS_ERESERVE error). Ignored on x86-64. */
int inject_plan_build_island(const struct elf_binary *b, const struct bolt_output *o,
			     uint64_t bias, uint64_t island, unsigned flags,
			     struct inject_plan *plan, struct core_err *err);
void inject_plan_free(struct inject_plan *plan);
/* AArch64: whether some call site cannot reach its C1 target with a BL,
 * i.e. whether inject_plan_build needs an island. */
int inject_plan_needs_island(const struct elf_binary *b, const struct bolt_output *o);
/* Bytes an island needs for this round's veneers (upper bound). */
uint64_t inject_plan_island_size(const struct elf_binary *b, const struct bolt_output *o);

/* ---- C1 mapping (map.c) ---- */

/* Map C1's segments from BOLT's output into the reservation: written while
 * read-write, then switched to their final protection (R+X for code);
 * never writable and executable at once. Returns bytes mapped. */
int inject_map_c1(const struct bolt_output *o, uint64_t bias,
		  struct inject_reservation *r, uint64_t *mapped, struct core_err *err);

/* AArch64: map the plan's veneers at plan->island (inside a reservation),
 * read-write, fill, flush the i-cache, then read-execute. No-op without
 * veneers. */
int inject_map_island(const struct inject_plan *plan, struct core_err *err);

/* ---- unwind tables (unwind.c) ---- */

/* Build an .eh_frame, to live at run-time address `new_addr`, holding the
 * FDEs of `eh` (`size` bytes at run-time address `eh_addr`) whose code
 * starts in [lo, hi), their CIEs, and a terminator; pc-relative pointers are
 * re-based. *out is malloc'ed (*out_len bytes, *fdes FDEs). */
int inject_build_eh_frame(const uint8_t *eh, uint64_t size, uint64_t eh_addr, uint64_t lo,
			  uint64_t hi, uint64_t new_addr, uint8_t **out, size_t *out_len,
			  size_t *fdes);
/* In this process: build that .eh_frame for C1 [lo, hi) at r->addr + *used
 * (page-aligned; *used advances), read-only, and register it with the
 * unwinder so C++ exceptions and backtraces cross C1 frames. */
int inject_unwind_register(uint64_t eh_frame, uint64_t size, uint64_t lo, uint64_t hi,
			   struct inject_reservation *r, uint64_t *used, void **handle,
			   struct core_err *err);
void inject_unwind_deregister(void *handle);

/* ---- stop-the-world, in-process (stop_self.c) ---- */

struct inject_stop; /* opaque: lives for one stop */

/* Park every thread of this process but the caller in a signal handler
 * (threads in system calls and threads created meanwhile included).
 * OCOLOS_ESTOP after timeout_ms (e.g. a thread blocks `sig`): then nothing
 * stays parked. */
int proc_stop_self(int sig, uint32_t timeout_ms, struct inject_stop **out,
		     uint32_t *threads, struct core_err *err);
/* Where each parked thread was stopped (PC, SP); valid until resume. */
struct inject_thread_state;
const struct inject_thread_state *proc_stop_states(const struct inject_stop *s, size_t *n);
/* Let every parked thread run again; `released_ns` (may be NULL) gets the
 * time they were woken, before this waits for them to leave the handler. */
void proc_resume_self(struct inject_stop *s, uint64_t *released_ns);

/* ---- applying a plan (apply.c) ---- */

struct inject_apply_result {
	uint32_t call_sites, ptr_slots, entries; /* written */
	uint32_t blocked;		 /* entries a thread might resume inside */
	uint32_t mismatched;		 /* skipped: memory differed from plan */
	/* Slots left on C0 although they matched: another slot of the same
	 * function had been changed by the program (all or none). */
	uint32_t slots_held;
};

/* Forward: write `new_` where `old` is in memory; backward (a revert):
 * write `old` where `new_` is. All threads must be stopped. Then make the
 * change visible to every core. */
int inject_apply(int memfd, struct inject_plan *plan, int forward,
		 struct inject_apply_result *res, struct core_err *err);
/* Before a stop: make the copy-on-write copies of the pages the plan
 * writes, by writing their bytes back unchanged (see apply.c). */
int inject_prefault(int memfd, const struct inject_plan *plan);
/* The same in this process: bytes compared in place, written via memfd. */
int inject_apply_self(int memfd, struct inject_plan *plan, int forward,
		      struct inject_apply_result *res, struct core_err *err);
/* ---- entry patches: who could resume inside them (entry.c) ---- */

/* Where a stopped thread is: its PC and stack pointer. */
struct inject_thread_state {
	uint64_t pc, sp;
};
/* Reads up to `max` 8-byte words of a stopped thread's stack from `sp`
 * upwards (to the end of the stack's mapping); returns how many, 0 if the
 * stack cannot be read (then nothing may be patched). */
typedef size_t (*inject_stack_reader)(void *ctx, uint64_t sp, uint64_t *words, size_t max);

#define INJECT_STACK_WORDS (64 * 1024) /* 512 KiB of stack per thread */

/* Before writing a plan forward: mark `blocked` every entry patch whose
 * bytes past the first hold a thread's PC, or whose span contains any word
 * on a thread's stack (a saved PC in a signal frame, conservatively). No
 * allocation: `scratch` has INJECT_STACK_WORDS words. */
void inject_entries_check(struct inject_plan *plan, const struct inject_thread_state *ts,
			  size_t nts, inject_stack_reader read, void *ctx, uint64_t *scratch);

/* An inject_stack_reader body: the words from `sp` to the end of its
 * mapping in `m` (a snapshot taken before the stop), read directly
 * (memfd < 0: this process) or through /proc/PID/mem. */
size_t inject_stack_words(const struct procmaps *m, int memfd, uint64_t sp, uint64_t *words,
			  size_t max);

/* In this process, in place: each patched page made read-write, written,
 * and given back the protection it had before the stop (`prots`, collected
 * before the stop: reading /proc/self/maps allocates, which a stopped world
 * forbids); the i-cache is flushed after every code write. Used on AArch64,
 * where /proc/self/mem writes are not seen by qemu-user (see apply.c). */
struct inject_page_prot {
	uint64_t page;	/* page-aligned run-time address */
	int prot;	/* PROT_* before the stop */
};
struct inject_prots {
	struct inject_page_prot *v; size_t n; /* sorted by page */
};
int inject_prot_collect(const struct inject_plan *plan, struct inject_prots *out,
			struct core_err *err);
void inject_prots_free(struct inject_prots *p);
int inject_apply_local(struct inject_plan *plan, const struct inject_prots *prots,
		       int forward, struct inject_apply_result *res, struct core_err *err);

#endif

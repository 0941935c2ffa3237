/*
 * Injection — what to change in the target and the protocol that changes
 * it: reserving the C1 range, mapping C1, the patch plan (C0 call sites,
 * pointer slots and entries to redirect), registering C1's unwind tables,
 * and the switch (stop the world, check, write, resume). Everything that
 * can happen while the target runs happens before the stop; the stop only
 * verifies and writes. How bytes reach the target and how its threads stop
 * is proc/'s (struct proc_target).
 */
#ifndef OCOLOS_INJECT_H
#define OCOLOS_INJECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"
#include "core/log.h"
#include "core/procmaps.h"
#include "proc/target.h"
#include "elf/binary.h"
#include "elf/bat.h"
#include "elf/bolt_output.h"

/* ---- reservation (reserve.c) ---- */

/* A PROT_NONE range in the target within rel32 reach of the whole image
 * (run-time [img_lo, img_hi)), above it so that its link-time address
 * (addr - bias) is above every original segment. */
struct inject_reservation {
	uint64_t addr, size; /* run-time; 0 when none */
	int early;	     /* the early reservation (below): released to PROT_NONE */
};
int inject_reserve(struct proc_target *t, const struct elf_binary *b, uint64_t bias, uint64_t size,
		   struct inject_reservation *r, struct core_err *err);
/* The link-time address of C1 in every instance of a build (reserve.c):
 * 0 if `size` bytes there would be out of rel32 reach of the image. */
uint64_t inject_fleet_vma(const struct elf_binary *b, uint64_t size);
/* Reserve exactly [addr, addr + size) (page-aligned) in the target:
 * OCOLOS_ETAKEN if anything is mapped there. */
int inject_reserve_fixed(struct proc_target *t, uint64_t addr, uint64_t size,
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
/* A PROT_NONE range anywhere (nearest `near`), for what need not be in
 * reach of the code. OCOLOS_ERESERVE when nothing is free. */
int inject_reserve_anywhere(struct proc_target *t, uint64_t size, uint64_t near,
			    struct inject_reservation *r, struct core_err *err);
void inject_reservation_trim(struct proc_target *t, struct inject_reservation *r, uint64_t from);
void inject_reservation_release(struct proc_target *t, struct inject_reservation *r);

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
	/* Continuous rounds (record.c): the code version the new bytes lead
	 * into (0: C0, or nothing of ours), and the one the location itself
	 * lies in (0: C0's image or the stubs). */
	uint32_t target_gen, owner_gen;
};
/* INJECT_DATA_SLOT: a pointer slot in writable data; the program may
 * write it at any time, so it is never pre-faulted (that rewrites the
 * value read a moment earlier). */
/* INJECT_STUB: the jump of a slot's stub (stubs.c), retargeted each round. */
enum { INJECT_CALL_SITE = 1, INJECT_PTR_SLOT = 2, INJECT_ENTRY = 3, INJECT_DATA_SLOT = 4,
       INJECT_STUB = 5 };

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
	struct inject_runs *runs;	    /* set by inject_switch for one stop (apply.c) */
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
/* ---- address-taking code in C_k keeps C0 addresses (keep_c0.c) ---- */

/* A few bytes of BOLT's output to change before it is mapped. */
struct inject_fixup {
	uint64_t addr;		/* link-time address in BOLT's output */
	uint8_t len;
	uint8_t bytes[8];
};
struct inject_fixups {
	struct inject_fixup *v; size_t n, cap;
	uint32_t rip_refs;	/* PC-relative references re-aimed at C0 (x86-64:
				   RIP-relative; AArch64: the ADDs and ADRs that
				   complete an address, their ADRPs with them) */
	uint32_t immediates;	/* absolute immediates changed to C0 */
	uint32_t unfixed;	/* references to a copy left as they are (a
				   constant that merely looks like one, out of
				   reach, an AArch64 form not proven) */
	/* The moved functions whose copy's address code in C1 still forms
	 * for certain (not a constant that merely looks like one), each
	 * once: the round has BOLT leave them in place (api/round.c). */
	uint32_t *left; size_t nleft, left_cap;
};
/* The changes that make every address-taking instruction of BOLT's output
 * `o` (its code fragments from `bat`) name a moved function's C0 address
 * instead of its copy's, on x86-64 and AArch64 (see keep_c0.c). 0 or
 * OCOLOS_ENOMEM. */
int inject_fixups_build(const struct elf_binary *b, const struct bolt_output *o,
			const struct elf_bat *bat, struct inject_fixups *fx, struct core_err *err);
/* Apply those of `fx` that lie in `buf`, the output's bytes at link-time
 * [lo, lo + len). */
void inject_fixups_apply(const struct inject_fixups *fx, uint64_t lo, uint8_t *buf, size_t len);
void inject_fixups_free(struct inject_fixups *fx);

/* ---- slot stubs (stubs.c) ---- */

struct inject_stubs {
	struct inject_reservation res;	/* the area, reserved at the first need */
	uint64_t *at;			/* per function of the binary: run-time
					   address of its stub, or 0 */
	size_t nfuncs;
	uint64_t next;			/* where the next stub goes */
	/* The stubs the round being prepared adds, on fresh pages starting
	 * at fresh_lo: fresh_len bytes to map (fresh_cap allocated). */
	uint8_t *fresh;
	uint64_t fresh_lo, fresh_len, fresh_cap;
};
/* Reserve the stub area (once) within rel32 reach of the image. */
int inject_stubs_reserve(struct proc_target *t, const struct elf_binary *b, uint64_t bias,
			 struct inject_stubs *st, struct core_err *err);
/* The stub of function `f` (C0 address `c0`), made now if it has none
 * (aimed at C0, on this round's fresh pages). */
int inject_stubs_alloc(const struct elf_binary *b, struct inject_stubs *st, uint32_t f,
		       uint64_t c0, uint64_t *addr, struct core_err *err);
/* Map this round's fresh stubs, read-execute (before the stop). */
int inject_stubs_map(struct proc_target *t, struct inject_stubs *st, struct core_err *err);
/* Forget this round's fresh stubs (the round failed before mapping them). */
void inject_stubs_rollback(struct inject_stubs *st);
/* The patch that turns the stub at `stub` from jumping to `c0` into jumping
 * to `to` (kind INJECT_STUB). OCOLOS_ERESERVE when out of reach. */
int inject_stub_patch(const struct elf_binary *b, uint64_t stub, uint64_t c0, uint64_t to,
		      struct inject_patch *p);
void inject_stubs_free(struct inject_stubs *st);

/* ---- the entries of a code version (version.c) ---- */

/* What later rounds need to redirect the entries of version `gen`'s
 * function copies (so threads still in it leave it as their calls go). */
struct inject_version_entries {
	uint32_t gen;
	size_t nfuncs;
	uint64_t *at;		/* per function: run-time address of its copy, or 0 */
	uint64_t *c0;		/* per function: run-time address in C0 */
	uint8_t (*orig)[5];	/* per function: the copy's bytes that change */
	uint8_t *ok;		/* per function: they may become a jump (as elf_func.entry_ok) */
	uint8_t len;		/* bytes that change: 5 (x86-64 jmp), 4 (AArch64 B) */
	/* AArch64, per function: offset of the word that changes (0, or 4
	 * after a landing pad), and the copy's first word (the landing pad a
	 * target must start with too). NULL on x86-64. */
	uint8_t *off;
	uint32_t *pad;
	/* Run-time addresses right after each call instruction of the
	 * version, sorted: the only addresses in it a return address, a
	 * setjmp buffer or a saved context can hold (retirement looks for
	 * those; NULL: not known, any address counts). */
	uint64_t *ret_sites;
	size_t nret_sites;
	/* x86-64: the addresses right after its calls to functions that
	 * unwind through their caller (__cxa_throw, _Unwind_Resume...; elf/
	 * plt.c), sorted. Not in ret_sites: nothing returns there, and the
	 * word stays behind in stack memory after the throw; it matters only
	 * to the unwinder while that throw runs, so it keeps the version
	 * mapped only in the stack of a thread inside the unwinder at a stop
	 * (inject_switch_request.unwinder). */
	uint64_t *throw_sites;
	size_t nthrow_sites;
	/* x86-64, for the stop that diverts threads from this version (see
	 * inject_defer in entry.c): its fragments as sorted run-time ranges
	 * with their function, and per function the copies its direct calls
	 * and jumps go to (callees[callee_off[f] .. callee_off[f + 1])).
	 * NULL when not known (a version a fresh agent read from the state
	 * record): then every entry is redirected. */
	struct inject_frag_range { uint64_t lo, hi; uint32_t func; } *frags;
	size_t nfrags;
	uint32_t *callee_off, *callees;
};
int inject_version_entries_build(const struct elf_binary *b, const struct bolt_output *o,
				 const struct elf_bat *bat, const struct inject_fixups *fx,
				 uint64_t bias, uint32_t gen, struct inject_version_entries *ve,
				 struct core_err *err);
void inject_version_entries_free(struct inject_version_entries *ve);

/* What a plan for a code version needs besides the binary and BOLT's output. */
struct inject_plan_opts {
	uint64_t bias;
	uint64_t island;	/* AArch64 veneers (see inject_plan_build_island) */
	unsigned flags;		/* INJECT_PLAN_* */
	uint32_t gen;		/* the version the plan leads into */
	struct inject_stubs *stubs; /* slots go through stubs (NULL: straight to C1) */
	/* Older versions still mapped: their entries jump to this version's
	 * copies (or to C0 for functions it did not move). */
	const struct inject_version_entries *older;
	size_t nolder;
};
int inject_plan_build_for(const struct elf_binary *b, const struct bolt_output *o,
			  const struct inject_plan_opts *po, struct inject_plan *plan,
			  struct core_err *err);
/* Append to `plan` the entries of version `ve` aimed at the copies of
 * `o` (version `gen`, mapped with `bias`), or with `o` NULL all at C0 (a
 * revert). */
int inject_plan_version_entries(const struct bolt_output *o, uint64_t bias, uint32_t gen,
				const struct inject_version_entries *ve, struct inject_plan *plan,
				struct core_err *err);

void inject_plan_free(struct inject_plan *plan);
/* AArch64: whether some call site cannot reach its C1 target with a BL,
 * i.e. whether inject_plan_build needs an island. */
int inject_plan_needs_island(const struct elf_binary *b, const struct bolt_output *o);
/* Bytes an island needs for this round's veneers (upper bound). */
uint64_t inject_plan_island_size(const struct elf_binary *b, const struct bolt_output *o);

/* ---- the patch record and transitions (record.c) ---- */

/* A location some round changed: its original bytes and what it holds. */
struct inject_loc {
	uint64_t addr;
	uint8_t len, kind;	/* as in inject_patch */
	uint8_t orig[8], cur[8];
	uint32_t group;
	uint32_t cur_gen;	/* version `cur` leads into (0: none) */
	uint32_t owner_gen;	/* version the location lies in (0: C0, stubs) */
};
struct inject_record {
	struct inject_loc *v; size_t n, cap; /* sorted by addr */
};
struct inject_loc *inject_record_find(const struct inject_record *rec, uint64_t addr);
/* The plan that takes the target from what `rec` says it holds to `want`
 * (a plan whose `old` bytes are the original ones, `new_` the wanted ones):
 * every wanted location from its current bytes, every recorded location
 * not wanted back to its original bytes (slots excepted: a slot keeps the
 * value it was given). Patches that would change nothing are left out. */
int inject_transition(const struct inject_record *rec, const struct inject_plan *want,
		      struct inject_plan *out, struct core_err *err);
/* After a switch wrote `done` (a transition): the applied patches' bytes
 * are what the locations hold now; new locations join the record. */
int inject_record_update(struct inject_record *rec, const struct inject_plan *done,
			 struct core_err *err);
/* Forget the locations lying in version `gen` (it was unmapped). */
void inject_record_drop_owner(struct inject_record *rec, uint32_t gen);
/* The same for a plan: the want plan must not name locations in it (a
 * re-apply would write into unmapped memory). */
void inject_plan_drop_owner(struct inject_plan *plan, uint32_t gen);
/* Does a location outside version `gen` hold bytes that lead into it? */
int inject_record_leads_to(const struct inject_record *rec, uint32_t gen);
void inject_record_free(struct inject_record *rec);

/* ---- entries of older versions a stop may leave (entry.c) ---- */

/*
 * A round's stop redirects the entries of older versions so that threads
 * still running in one leave it as their calls go. Only a thread with a
 * frame in a version can still call into it, and only through the direct
 * calls and jumps of the copies it has frames in: so the entries worth
 * writing in this stop are those of the copies that a live copy (one
 * holding a thread's PC, a register or a stack word) calls or jumps to,
 * and the live copies' own. The others are left for now: nothing can reach
 * them unless something live does first, and that is what the stop looked
 * at. A later stop redirects them if that changes (they stay in the plan).
 * An entry already redirected (to a version since made) is always written:
 * left, it would keep that version mapped.
 * Never a question of correctness — every version computes what C0 does,
 * and retirement looks for threads itself — only of how many writes the
 * pause holds: on fe by pid, 1,490 of them every round.
 */
struct inject_defer {
	const struct inject_version_entries *const *v;
	size_t n, stride;  /* versions; bytes per version in live and need */
	uint8_t *live, *need;
	int all;	   /* a stack could not be read: redirect every entry */
};
/* Before the stop (it allocates): 0, or OCOLOS_ENOMEM. Versions without
 * callee lists (NULL callee_off) are never left alone. */
int inject_defer_init(struct inject_defer *d, const struct inject_version_entries *const *v,
		      size_t n, struct core_err *err);
/* In the stop: a word of a stopped thread (PC, register, stack word). */
void inject_defer_mark(struct inject_defer *d, uint64_t w);
/* In the stop, after the entries check: mark deferred (blocked = 2) the
 * entry patches of those versions that no live copy reaches. */
void inject_defer_apply(struct inject_defer *d, struct inject_plan *plan);
void inject_defer_free(struct inject_defer *d);

/* ---- C1 mapping (map.c) ---- */

/* Map C1's segments from BOLT's output into the reservation `r` of target
 * `t`, each with its own protection (R+X for code), never writable and
 * executable at once (proc_target_ops.map_fill), with the fixups `fx`
 * (may be NULL) applied, named "ocolos-c<gen>" in /proc/PID/maps. *mapped
 * gets the bytes mapped. */
int inject_map_c1(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
		  const struct inject_fixups *fx, uint32_t gen, struct inject_reservation *r,
		  uint64_t *mapped, struct core_err *err);

/* AArch64: map the plan's veneers at plan->island (inside a reservation),
 * read-execute. No-op without veneers. */
int inject_map_island(struct proc_target *t, const struct inject_plan *plan, uint32_t gen,
		      struct core_err *err);

/* ---- unwind tables (unwind.c) ---- */

/* Build an .eh_frame, to live at run-time address `new_addr`, holding the
 * FDEs of `eh` (`size` bytes at run-time address `eh_addr`) whose code
 * starts in [lo, hi), their CIEs, and a terminator; pc-relative pointers are
 * re-based. *out is malloc'ed (*out_len bytes, *fdes FDEs). */
int inject_build_eh_frame(const uint8_t *eh, uint64_t size, uint64_t eh_addr, uint64_t lo,
			  uint64_t hi, uint64_t new_addr, uint8_t **out, size_t *out_len,
			  size_t *fdes);
/* Register C1's unwind tables with the target's unwinder (its libgcc_s),
 * so C++ exceptions and backtraces cross C1 frames: an .eh_frame of C1's
 * FDEs is built from BOLT's output and mapped read-only in the reservation
 * at r->addr + *used (page-aligned; *used advances). *handle is 0 when the
 * target has no unwinder to register with (a C program without libgcc_s),
 * else what inject_unwind_deregister takes. On an error with *handle set,
 * the registering call was started but did not complete as expected: the
 * tables may be registered, so their memory must stay mapped for good and
 * must never be deregistered (libgcc aborts on tables it does not know). */
int inject_unwind_register(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
			   uint32_t gen, struct inject_reservation *r, uint64_t *used,
			   uint64_t *handle, struct core_err *err);
/* The same, calling `before(arg, handle)` once the table is mapped and
 * right before it is registered (the state record notes it: after that
 * call whether it was registered is not known until it returns); a
 * non-zero return stops there. */
int inject_unwind_register_hook(struct proc_target *t, const struct bolt_output *o,
				uint64_t bias, uint32_t gen, struct inject_reservation *r,
				uint64_t *used, uint64_t *handle,
				int (*before)(void *arg, uint64_t handle), void *arg,
				struct core_err *err);
/* Take a registration out of the target's libgcc: 0 (done, or nothing to
 * do), INJECT_UNWIND_LATER (the call could not be made safely now: nothing
 * changed, try again), INJECT_UNWIND_UNKNOWN (the call did not complete as
 * expected: libgcc may still list the tables, so their memory must stay
 * mapped, and the call must never be made again — deregistering what
 * libgcc does not know aborts the process). err says why. */
#define INJECT_UNWIND_LATER 1
#define INJECT_UNWIND_UNKNOWN 2
int inject_unwind_deregister(struct proc_target *t, uint64_t handle, struct core_err *err);

/* ---- applying a plan (apply.c) ---- */

struct inject_apply_result {
	uint32_t call_sites, ptr_slots, entries, stubs; /* written */
	uint32_t slot_stubs;		 /* of stubs, those slots hold (set by
					    api/versions.c after the switch: a
					    stub may serve only an entry) */
	uint32_t blocked;		 /* entries a thread might resume inside */
	uint32_t deferred;		 /* entries of older versions no thread
					    needed now (inject_defer) */
	uint32_t mismatched;		 /* skipped: memory differed from plan */
	/* Slots left on C0 although they matched: another slot of the same
	 * function had been changed by the program (all or none). */
	uint32_t slots_held;
};

/* Forward: write `new_` where `old` is in memory; backward (a revert):
 * write `old` where `new_` is. All threads of `t` must be stopped, and
 * poke_prepare done for the plan's spans (inject_plan_spans). */
int inject_apply(struct proc_target *t, struct inject_plan *plan, int forward,
		 struct inject_apply_result *res, struct core_err *err);
/* The plan's patches merged into runs, each read and written with one
 * access to the target in the stop (apply.c); built before the stop (it
 * allocates), used by inject_apply while plan->runs points at it. */
struct inject_run {
	uint64_t addr;
	uint32_t len, off;	/* bytes; where in the buffers */
	uint8_t code, readable, dirty, written;
};
struct inject_runs {
	struct inject_run *v; size_t n;
	uint32_t *run_of;	/* per patch: its run */
	uint8_t *cur, *orig;	/* the runs' bytes: as being written, as read */
	struct iovec *remote, *local; /* for proc_target_ops.peek_many */
	uint8_t *ok;
};
int inject_runs_build(const struct inject_plan *plan, struct inject_runs *runs,
		      struct core_err *err);
void inject_runs_free(struct inject_runs *runs);
/* The spans a forward or backward switch of `plan` may write, for
 * proc_target_ops.poke_prepare. Malloc'ed (*n entries). */
int inject_plan_spans(const struct inject_plan *plan, struct proc_span **spans, size_t *n,
		      struct core_err *err);

/* ---- entry patches: who could resume inside them (entry.c) ---- */

/* Reads up to `max` 8-byte words of a stopped thread's stack from `sp`
 * upwards (to the end of the stack's mapping); returns how many, 0 if the
 * stack cannot be read (then nothing may be patched). */
typedef size_t (*inject_stack_reader)(void *ctx, uint64_t sp, uint64_t *words, size_t max);

#define INJECT_STACK_WORDS (64 * 1024) /* 512 KiB of stack per thread */
/* The top of a stack that tells a thread inside the unwinder: its
 * frames (_Unwind_RaiseException's two contexts, the FDE search,
 * dl_iterate_phdr's callback, the personality routine) take a few KiB. */
#define INJECT_UNWINDER_WORDS 2048

/* Before writing a plan forward: mark `blocked` every entry patch whose
 * bytes past the first hold a thread's PC, or whose span contains any word
 * on a thread's stack (a saved PC in a signal frame, conservatively). No
 * allocation: `scratch` has INJECT_STACK_WORDS words. */
void inject_entries_check(struct inject_plan *plan, const struct proc_thread_state *ts,
			  size_t nts, inject_stack_reader read, void *ctx, uint64_t *scratch);
/* Whether `plan` holds an entry patch a thread could be inside of (more
 * than one aligned instruction word: x86-64's 5 bytes); if not, the check
 * above has nothing to find. */
int inject_entries_need_check(const struct inject_plan *plan);

/* What the check needs from a stopped target: a snapshot of its mappings
 * (taken before the stop: reading /proc allocates) and scratch space. */
struct inject_stack_snapshot {
	struct procmaps maps;
	struct proc_target *t;
	uint64_t *scratch;	/* INJECT_STACK_WORDS words */
};
int inject_stack_snapshot_take(struct proc_target *t, struct inject_stack_snapshot *ss,
			       struct core_err *err);
void inject_stack_snapshot_free(struct inject_stack_snapshot *ss);
/* An inject_stack_reader over a snapshot (ctx = the snapshot): the words
 * from `sp` to the end of its mapping, read with the target's peek. */
size_t inject_stack_words(void *ctx, uint64_t sp, uint64_t *words, size_t max);

/* ---- the memory scan (scan.c) ---- */

/* Set found[i] when an aligned word of the target's writable memory points
 * into ranges[i] ([lo, hi)), or does once demangled with `guard` (glibc's
 * x86-64 pointer guard; 0: no demangling). The part of a mapping below one
 * of the threads' stack pointers (less the 128-byte red zone), dead stack
 * at the last stop, is skipped, and so are stacks of threads that have
 * exited (proc_dead_thread_stacks). *scanned gets the bytes read. */
/* What keeps a watched range (an old version) busy: the first thing the
 * stop or the memory scan found in it, for the log (api/versions.c says
 * which version stays mapped and why). */
enum inject_pin_kind {
	INJECT_PIN_NONE,
	INJECT_PIN_PC,		/* a stopped thread's PC */
	INJECT_PIN_REG,		/* one of its registers (reg: which) */
	INJECT_PIN_STACK,	/* a word of its stack at `where` */
	INJECT_PIN_SIGFRAME,	/* a register or PC a signal frame at `where` restores */
	INJECT_PIN_UNKNOWN,	/* a stack it could not read, or signal frames
				   nested past what is followed: every range */
	INJECT_PIN_MEMORY,	/* a word of memory at `where` (the scan) */
};

/* A word that may hold a code address, as retirement compares it: on
 * AArch64 without the pointer authentication code that signed return
 * addresses carry in their top bits (-mbranch-protection=pac-ret: a
 * frame saves x30 signed, and x30 holds it signed until the epilogue
 * authenticates it). Which bits those are depends on the kernel's
 * virtual address size, so the CPU strips them: XPACLRI (HINT #7, a no-op
 * on CPUs without pointer authentication, where nothing is signed) on
 * x30, as the kernel's xpaclri() does. The target runs on this CPU and
 * kernel in every mode. A word that was no address may then fall in a
 * version, which only keeps it longer. */
static inline uint64_t inject_code_word(uint64_t w)
{
#if defined(__aarch64__)
	register uint64_t x30 __asm__("x30") = w;
	__asm__("hint #7" : "+r"(x30));
	return x30;
#else
	return w;
#endif
}

struct inject_pin {
	uint8_t kind;		/* enum inject_pin_kind */
	uint8_t throw_site;	/* the word is a throw site (a thread unwinding) */
	uint8_t any_word;	/* a stack word, and the version's return sites unknown */
	uint16_t reg;
	uint32_t thread;	/* the stopped thread's tid (0 if not known) */
	uint64_t sp;		/* its stack pointer (the context's, for a frame) */
	uint64_t where, value;	/* where: 0 for a frame on another stack */
};

struct inject_scan_opts {
	uint64_t guard;			/* see above */
	/* The threads at the last stop: their stacks' dead part, below the
	 * stack pointer, is not read, nor are the stacks of threads that have
	 * exited (proc_dead_thread_stacks learns them from these). */
	const struct proc_live_thread *threads;
	size_t nthreads;
	const uint64_t (*skip)[2];	/* ranges not to read: the calling
					   process's own bookkeeping, when it
					   is the target */
	size_t nskip;
	/* The calling process is the target: memory glibc's malloc manages
	 * (the brk heap, and the 64 MiB-aligned heaps of its other arenas)
	 * is not read — the library's own bookkeeping, and buffers glibc and
	 * libelf allocate on its behalf, live there and name the versions'
	 * addresses (docs/guide.md says what this leaves out). */
	int skip_malloc;
	/* Per range (may be NULL, or an entry NULL): the sorted addresses a
	 * word must equal to count (return sites); else any in the range. */
	const uint64_t *const *sites;
	const size_t *nsites;
	/* Optional, per range: where the first word found in it is. */
	struct inject_pin *pins;
	/* Tests: 0 reads only the pages that hold data, listed by the best
	 * means the kernel has; 1 forces the per-page pagemap entries that
	 * kernels before 6.7 give. */
	int pagemap_entries;
};
int inject_scan_memory(struct proc_target *t, const uint64_t (*ranges)[2], size_t n,
		       const struct inject_scan_opts *so, uint8_t *found, uint64_t *scanned,
		       struct core_err *err);

/* ---- the switch (switch.c) ---- */

struct inject_switch_request {
	struct inject_plan *plan;
	int forward;		/* C0 -> C1 (1) or back (0) */
	/* Optional: C0 ranges of moved functions; the stopped threads' frames
	 * in them are counted (a report: they finish there, safely). */
	const uint64_t (*moved)[2];
	size_t nmoved;
	/* Optional: ranges [lo, hi) to watch: watch_busy[i] is set when a
	 * stopped thread's PC, a register or a word of its stack (from its SP
	 * to the end of that mapping) lies in watch[i]. */
	const uint64_t (*watch)[2];
	size_t nwatch;
	uint8_t *watch_busy;
	struct inject_pin *watch_pins;	/* optional, per range: why busy */
	/* Per watched range (may be NULL, or an entry NULL): the addresses a
	 * stack word must equal to count (return sites, see inject_scan_opts);
	 * PCs and registers count anywhere in the range. */
	const uint64_t *const *watch_sites;
	const size_t *watch_nsites;
	/* Per watched range (may be NULL, or an entry NULL): throw sites
	 * (inject_version_entries.throw_sites), which count in the stack of
	 * a thread inside the unwinder only: its PC, or a word of the top
	 * INJECT_UNWINDER_WORDS of its stack, in one of the `unwinder`
	 * ranges (libgcc_s's code, libstdc++'s throwing functions: made by
	 * proc_unwinder_ranges before the stop). Without ranges, every
	 * thread counts as inside. */
	const uint64_t *const *watch_throw_sites;
	const size_t *watch_nthrow_sites;
	const uint64_t (*unwinder)[2];
	size_t nunwinder;
	/* x86-64, optional: the target's sigreturn trampolines (glibc's
	 * __restore_rt, proc_sigreturn_trampolines): a stack word equal to one
	 * begins a signal frame, whose saved registers and PC count as a
	 * thread's (inject/switch.c). */
	const uint64_t *sigreturn;
	size_t nsigreturn;
	/* Optional (with watch): each stopped thread's stack pointer, thread
	 * pointer and tid, for a memory scan after the stop to skip the dead
	 * part of stacks (threads_cap entries; *nthreads set). */
	struct proc_live_thread *threads;
	size_t threads_cap, *nthreads;
	/* Optional (with watch): the versions whose entries the plan may
	 * redirect; those no stopped thread can reach are left (inject_defer). */
	const struct inject_version_entries *const *versions;
	size_t nversions;
};

struct inject_switch_result {
	uint32_t threads;	/* threads stopped */
	uint64_t pause_ns;	/* from the stop to the release */
	/* Of the pause: stopping the threads, looking at them (entries check,
	 * watched ranges, deferred entries), and writing the plan. */
	uint64_t stop_ns, look_ns, write_ns;
	struct inject_apply_result applied;
	uint32_t stack_threads, stack_frames; /* in `moved`, if counted */
	uint64_t stack_ns;	/* of the pause, spent counting them */
	uint64_t pointer_guard;	/* glibc's (x86-64), read at the stop; 0 if unknown */
};

/* Stop the world of `t`, check entries (forward), write the plan, resume.
 * Everything that allocates or reads /proc happens before the stop. */
int inject_switch(struct proc_target *t, const struct inject_switch_request *rq,
		  struct inject_switch_result *res, struct core_err *err);

#endif

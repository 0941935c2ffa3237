/*
 * Layout engine interface. The one backend spawns Debian's llvm-bolt (no
 * BOLT library exists in Debian) without a shell, under a time limit, and
 * leaves its output file for elf/bolt_output.c to parse.
 */
#ifndef OCOLOS_LAYOUT_H
#define OCOLOS_LAYOUT_H

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include "core/err.h"

struct layout_request {
	const char *bolt_path;	 /* from layout_bolt_probe() */
	const char *binary;	 /* input binary (C0) */
	const char *profile;	 /* pre-aggregated profile */
	const char *output;	 /* where BOLT writes the optimized binary */
	const char *log_path;	 /* BOLT's stdout+stderr */
	uint64_t alloc_vma;	 /* link-time address for new code */
	int self_placed;	 /* 0: pass alloc_vma (--custom-allocation-vma); 1: the
				    BOLT lacks it and places new code itself right after
				    the image (BOLT 19, see inject/reserve.c); `binary`
				    may then be a copy from layout_bolt_placed_copy() */
	int no_split;		 /* leave out --split-functions: new code beyond BL
				    reach of the original code (AArch64), where BOLT
				    19 gives cold fragments no stubs to C0 (its LongJmp
				    pass covers the hot area only) and fails */
	int keep_nops;		 /* --keep-nops: AArch64, where BOLT Address
				    Translation has rows only at block starts and
				    branches, so a NOP removed inside a block
				    throws off the translation of every word after
				    it, which inject/keep_c0.c relies on */
	uint32_t timeout_ms;
	int basic_samples;	 /* profile holds IP samples (S records): --ba */
	int fdata_ready;	 /* basic_samples: an earlier run of this request
				    aggregated the profile already (its .fdata
				    beside it): not again */
	const char *const *extra_args; /* NULL-ended, may be NULL */
	const atomic_int *cancel; /* non-NULL: BOLT is killed once it is set */
	/* Out, if non-NULL: the arguments of the layout run after the input
	 * binary, space-separated (for an artifact's record); cut to fit, and
	 * then ending in " ...". */
	char *args_out;
	size_t args_out_size;
};

/* Find a usable llvm-bolt: `hint` if set, else the known Debian paths, else
 * $PATH. "Usable" means it runs and has --custom-allocation-vma; its help
 * text is captured in the private directory `dir`.
 * Writes the path to `out` (PATH_MAX). OCOLOS_ENOBOLT with what to install. */
int layout_bolt_probe(const char *hint, const char *dir, char *out,
		      struct core_err *err);
/* The same for a binary of ELF machine `machine`. x86-64: as above.
 * AArch64: BOLT 22 crashed on every AArch64 input tried here, BOLT 19
 * handles them but lacks --custom-allocation-vma; so the candidates are
 * tried oldest first from 19, and one without the option is accepted
 * (*custom_vma = 0): the round then relies on the early reservation. */
int layout_bolt_probe_for(const char *hint, const char *dir, uint16_t machine, char *out,
			  int *custom_vma, struct core_err *err);

/* What layout_spawn_wait() lets a child use; a zero field is no limit. */
struct layout_spawn_limits {
	uint32_t wall_ms;  /* wall time: then killed, -2 */
	uint32_t cpu_s;	   /* CPU time of all its threads (RLIMIT_CPU): SIGXCPU, SIGKILL 5 s later */
	uint32_t stall_ms; /* killed when its CPU time has not moved for this long: -4 */
};

/* Spawn argv (argv[0] a path; no shell; LD_PRELOAD left out of its
 * environment) with stdout+stderr to `log` (or /dev/null), wait within
 * `lim` or until *cancel (may be NULL) is set. Returns the wait status,
 * -1 on spawn failure (errno set), -2 past wall_ms, -3 on cancel, -4 when
 * it stalled (the child killed and reaped in each case). For callers that
 * run BOLT on a whole binary rather than a round's (tools/ocolos_bam.c):
 * in the background at nice 19 beside a busy machine, wall time says
 * little about how much work BOLT did, so they limit its CPU time. */
int layout_spawn_wait(char *const argv[], const char *log, const struct layout_spawn_limits *lim,
		      const atomic_int *cancel);
/* The waiting part alone, for a child the caller forked itself (the cpu_s
 * limit is then the caller's to set in the child): the same returns. */
int layout_wait(pid_t pid, const struct layout_spawn_limits *lim, const atomic_int *cancel);

/* ---- BOLT's placement rule (placement.c) ---- */

/* The alignment of BOLT 19's rule: 64 KiB (AArch64's page align; a
 * multiple of x86-64's 4 KiB). */
#define LAYOUT_BOLT_PAGE_ALIGN (64ull << 10)
/* The link-time address a BOLT without --custom-allocation-vma gives new
 * code, from the image's lowest p_vaddr, its highest end, and the file's
 * highest byte (placement.c has the rule). */
uint64_t layout_bolt_new_code_at(uint64_t first, uint64_t img_hi, uint64_t file_hi);
/* Copy the binary `src` to `dst` with its highest PT_LOAD extended so that
 * a BOLT without --custom-allocation-vma places new code at link-time
 * address `vma` (64 KiB-aligned, at or above both terms of the rule). */
int layout_bolt_placed_copy(const char *src, const char *dst, uint64_t vma,
			    struct core_err *err);

/* What `bolt_path --version` says (its LLVM version and BOLT revision),
 * one line, into `out` ("unknown" if it cannot be run). `dir`: a private
 * directory for its output. */
void layout_bolt_version(const char *bolt_path, const char *dir, char *out, size_t size);

/* Run BOLT; returns 0, OCOLOS_EBOLT (with the tail of its log),
 * OCOLOS_ETIMEDOUT or OCOLOS_ECANCELED (req->cancel set; BOLT killed and
 * reaped either way). `elapsed_ns` gets BOLT's wall time. */
int layout_bolt_run(const struct layout_request *req, uint64_t *elapsed_ns,
		    struct core_err *err);

#endif

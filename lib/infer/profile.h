/*
 * Profile writers: turn raw run-time samples into a profile BOLT reads.
 * The pre-aggregated format (BOLT's DataAggregator, `--pa`) takes link-time
 * addresses, so no symbol naming rules (local "name/N" suffixes) are
 * involved: `E <event>` then `S <hex address> <count>` per sampled address.
 */
#ifndef OCOLOS_INFER_PROFILE_H
#define OCOLOS_INFER_PROFILE_H

#include <stdint.h>
#include "core/err.h"
#include "elf/binary.h"
#include "sample/sample.h"

struct infer_profile_stats {
	uint64_t in_binary;	  /* samples inside a function of the binary */
	uint64_t addresses;	  /* distinct addresses written */
	uint32_t functions;	  /* distinct functions sampled */
};

/* The samples of `s` (run-time IPs; `bias` = run-time minus link-time
 * address) that fall inside a function of the binary, as link-time
 * addresses, sorted; *out is malloc'ed (*n entries). OCOLOS_ENOPROFILE
 * (with the message a user needs) if none does. */
int infer_link_samples(const struct elf_binary *b, uint64_t bias, const struct sample_set *s,
		       uint64_t **out, size_t *n, struct core_err *err);

/* Write `s` (run-time IPs; `bias` = run-time minus link-time address) as a
 * pre-aggregated basic-sample profile to `path`. Samples outside the
 * binary's functions (libraries, the kernel, C1) are dropped.
 * OCOLOS_ENOPROFILE if none is left. */
int infer_write_preagg(const struct elf_binary *b, uint64_t bias,
		       const struct sample_set *s, const char *path,
		       struct infer_profile_stats *st, struct core_err *err);

/* Write the branch stacks of `s` (run-time addresses; `bias` = run-time
 * minus link-time address) as a pre-aggregated LBR profile to `path`, read
 * by BOLT with `--pa` and without `--ba` (see lbr_writer.c for the records
 * and BOLT's rules they follow). `st`: in_binary = branches with an end in
 * the binary's image, addresses = records written, functions = distinct
 * functions (by .symtab) touched. OCOLOS_ENOPROFILE if no branch or
 * fall-through touches one of the binary's functions; OCOLOS_EIO /
 * OCOLOS_ENOMEM. */
int infer_write_lbr(const struct elf_binary *b, uint64_t bias,
		    const struct sample_set *s, const char *path,
		    struct infer_profile_stats *st, struct core_err *err);

/* Write `s` as a pre-aggregated branch profile to `path`: for every sampled
 * function, its CFG (infer/cfg.h), block counts from the samples, edge
 * weights from the hybrid estimator with must-have-run inference
 * (infer/hybrid.h), written as `B` (taken branches, calls, entries) and `F`
 * (fall-throughs) records. Read it with `llvm-bolt --pa -p path` WITHOUT
 * `--ba`. Machine from b->machine (x86-64, AArch64). Functions whose bytes
 * do not decode into a CFG get no profile. OCOLOS_ENOPROFILE if no sample
 * is in the binary. */
int infer_write_hybrid(const struct elf_binary *b, uint64_t bias,
		       const struct sample_set *s, const char *path,
		       struct infer_profile_stats *st, struct core_err *err);

#endif

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

/* Write `s` (run-time IPs; `bias` = run-time minus link-time address) as a
 * pre-aggregated basic-sample profile to `path`. Samples outside the
 * binary's functions (libraries, the kernel, C1) are dropped.
 * OCOLOS_ENOPROFILE if none is left. */
int infer_write_preagg(const struct elf_binary *b, uint64_t bias,
		       const struct sample_set *s, const char *path,
		       struct infer_profile_stats *st, struct core_err *err);

#endif

/*
 * Making code versions visible to profilers and debuggers (debuginfo.c):
 * the perf map /tmp/perf-PID.map, and, in the calling process, GDB's JIT
 * interface. Called after a round's switch succeeded (round.c) and when a
 * version is unmapped (versions.c). Neither ever fails the round: what
 * cannot be published is logged as a warning.
 */
#ifndef OCOLOS_API_DEBUGINFO_H
#define OCOLOS_API_DEBUGINFO_H

#include "api/api.h"
#include "elf/bolt_output.h"

/* Version `v` of ctx's target, made from BOLT's output `out` loaded with
 * `bias`, is mapped and in use: append its functions and fragments (and
 * the slot stubs) to the target's perf map, and in the calling process
 * hand GDB an ELF object of its symbols (and unwind tables). */
void api_debuginfo_publish(struct ocolos_ctx *ctx, const struct api_version *v,
			   const struct bolt_output *out, uint64_t bias);

/* Version `v` is being unmapped: GDB forgets its object. The perf map
 * keeps its lines (samples taken while it ran still need the names) until
 * a later version reuses its addresses (docs/guide.md). */
void api_debuginfo_forget(struct ocolos_ctx *ctx, const struct api_version *v);

#endif

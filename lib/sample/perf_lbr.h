/*
 * perf-lbr record parsing, apart from the system calls so that tests can
 * feed it synthetic ring-buffer contents. The collector (perf_lbr.c) asks
 * the kernel for exactly one record layout:
 *
 *   sample_type        = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_BRANCH_STACK
 *   branch_sample_type = PERF_SAMPLE_BRANCH_USER | PERF_SAMPLE_BRANCH_ANY
 *                        (no PERF_SAMPLE_BRANCH_HW_INDEX: no hw_idx word)
 *
 *   struct perf_event_header header;  type PERF_RECORD_SAMPLE, size = whole record
 *   u64 ip;
 *   u32 pid, tid;
 *   u64 nr;
 *   struct perf_branch_entry lbr[nr]; from, to, flags: 24 bytes each, newest first
 *
 * so a record is valid only if header.size == 32 + 24 * nr.
 */
#ifndef OCOLOS_SAMPLE_PERF_LBR_H
#define OCOLOS_SAMPLE_PERF_LBR_H

#include <stddef.h>
#include <stdint.h>
#include "sample/sample.h"

#define SAMPLE_LBR_FIXED_BYTES 32u /* header + ip + pid/tid + nr */
#define SAMPLE_LBR_ENTRY_BYTES 24u /* struct perf_branch_entry */

/* Parse one PERF_RECORD_SAMPLE of the layout above (`len` bytes at `rec`,
 * any alignment) and append its IP to out->ips and its branch stack, newest
 * first, as one stack of `out`. Nothing is appended on failure. Returns 0,
 * OCOLOS_EINVAL if the bytes are not such a record (wrong type, or a size
 * that disagrees with nr), or OCOLOS_ENOMEM. */
int sample_perf_lbr_parse(const void *rec, size_t len, struct sample_set *out);

/* Consume the records of a perf mmap ring: `data` is the data area of
 * `size` bytes (a power of two), records run from byte counter `tail` to
 * `head` and may wrap around the end of the area. PERF_RECORD_SAMPLE goes
 * through sample_perf_lbr_parse() (malformed samples are skipped and
 * counted in *bad, which may be NULL), PERF_RECORD_LOST adds to out->lost,
 * other records are ignored. A header that cannot be a record ends the
 * drain (the rest is counted as one bad record). Returns 0 or OCOLOS_ENOMEM. */
int sample_perf_lbr_drain(const uint8_t *data, uint64_t size, uint64_t tail,
			  uint64_t head, struct sample_set *out, uint64_t *bad);

#endif

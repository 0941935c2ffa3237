/* How much memory a new process of ours may still use, for ocolos-bam's
 * decision whether BOLT's instrumentation of a binary can run beside the
 * build (tools/ocolos_bam.c, instrument_main). */
#ifndef OCOLOS_BAM_MEMORY_H
#define OCOLOS_BAM_MEMORY_H

/* MiB: the least of the kernel's MemAvailable and, for every memory
 * cgroup from ours up to the root (v1 and v2), its limit less its usage.
 * -1 when none of these can be read. */
long long bam_memory_available_mb(void);

#endif

/* How much memory a new process of ours may use, for ocolos-bam's
 * decision whether BOLT's instrumentation of a binary can run beside the
 * build (tools/ocolos_bam.c, instrument_gate). */
#ifndef OCOLOS_BAM_MEMORY_H
#define OCOLOS_BAM_MEMORY_H

struct bam_memory {
	/* MiB, -1 when nothing could be read. The least of the kernel's
	 * MemAvailable and, for every memory cgroup from ours up to its
	 * hierarchy's root (v1 and v2), its limit less what it uses beyond
	 * reclaimable page cache. */
	long long available_mb;
	/* ... the least of MemTotal and those limits: what an idle machine
	 * could give. */
	long long capacity_mb;
};

/* `root` prefixes /proc and /sys ("" for the real ones; tests give a
 * directory of fixtures). The standard mount points are read:
 * /sys/fs/cgroup (v2), /sys/fs/cgroup/unified (v2 beside v1),
 * /sys/fs/cgroup/memory (v1). */
void bam_memory_read(const char *root, struct bam_memory *m);

#endif

/* Whether the machine has a CPU to spare, for ocolos-bam's decision when
 * to start its background work (tools/ocolos_bam.c, worker_may_start):
 * BOLT beside a build that keeps every CPU busy slows the build even at
 * nice 19 (caches, memory bandwidth, the moments the build's tasks wait
 * to be placed), so the work waits for an idle CPU where it can. */
#ifndef OCOLOS_BAM_CPU_H
#define OCOLOS_BAM_CPU_H

#include <sched.h>

#define BAM_CPU_LEVELS 16

/* Cumulative counters at one moment. */
struct bam_cpu_sample {
	double at_s;		/* when (the caller's clock, seconds) */
	int ncpu;		/* our CPUs found in /proc/stat; 0: nothing read */
	unsigned long long idle; /* their idle + iowait time (jiffies) */
	unsigned long long total; /* their time, all of it (jiffies) */
	int nlevels;		/* our cgroup levels with a CPU quota */
	double quota_cpus[BAM_CPU_LEVELS]; /* each one's quota / period */
	long long usage_us[BAM_CPU_LEVELS]; /* each one's CPU use so far */
	/* each one's directory (device, inode): a level is compared only with
	 * itself in the other sample, since quotas come and go between them
	 * (`systemctl set-property`, `docker update`) */
	unsigned long long level_dev[BAM_CPU_LEVELS], level_ino[BAM_CPU_LEVELS];
};

/* Read the counters at `at_s`. `root` prefixes /proc and /sys ("" for the
 * real ones; tests give a directory of fixtures); `cpus`: the CPUs that
 * count (our affinity: a cpuset or taskset confines us to them), NULL for
 * all. The cgroup v2 hierarchy is read at /sys/fs/cgroup and
 * /sys/fs/cgroup/unified (cpu.max, cpu.stat); v1's cpu controller at
 * /sys/fs/cgroup/cpu (or cpu,cpuacct or cpuacct,cpu), where it is mounted
 * with cpuacct (cpu.cfs_quota_us, cpu.cfs_period_us, cpuacct.usage). */
void bam_cpu_read(const char *root, const cpu_set_t *cpus, double at_s, struct bam_cpu_sample *s);

/* CPUs idle on average between samples `a` and `b` (b later): the least of
 * our CPUs' idle time and, for each cgroup level with a quota, the quota
 * less what the level used. -1 when nothing could be read. */
double bam_cpu_idle(const struct bam_cpu_sample *a, const struct bam_cpu_sample *b);

#endif

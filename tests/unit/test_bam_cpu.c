/*
 * ocolos-bam's idle-CPU check (tools/bam/cpu.c: bam_cpu_read, bam_cpu_idle)
 * on fixture trees of /proc and /sys: idle time over all CPUs, over our
 * affinity only, iowait counted as idle and steal as busy; a /proc/stat
 * renumbered as LXCFS does; a cgroup v2 CPU quota that is used up while the
 * machine idles, an ancestor's quota, a "max" quota (none), a quota on our
 * own level under the hybrid layout; cgroup v1's quota (cpu.cfs_quota_us
 * with cpuacct.usage) at a nested level and as a container sees it, and
 * not read without cpuacct or for a cpuacct-only line; counters that go
 * backwards; nothing readable.
 * Expected values worked out by hand below.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bam/cpu.h"
#include "check.h"
#include "fixture_tree.h"

static char root[256];

/* put("sys/fs/cgroup/a/memory.max", "%lld\n", ...): a file under the root. */
#define put(...) fixture_put(root, __VA_ARGS__)

static void fresh(void)
{
	fixture_fresh(root, sizeof(root), "ocolos-bam-cpu");
}

/* /proc/stat with four CPUs; each row: user nice system idle iowait irq
 * softirq steal guest guest_nice. The aggregate "cpu" line is made
 * misleading on purpose: only the per-CPU lines may count. */
static void statn(int ncpu, const unsigned long long v[4][8])
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), "cpu  1 1 1 999999 1 1 1 1 0 0\n");
	for (int c = 0; c < ncpu; c++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n,
			      "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu 7 0\n", c, v[c][0], v[c][1],
			      v[c][2], v[c][3], v[c][4], v[c][5], v[c][6], v[c][7]);
	snprintf(buf + n, sizeof(buf) - (size_t)n, "intr 12345 0 0\nctxt 99\n");
	put("proc/stat", "%s", buf);
}

static void stat4(const unsigned long long v[4][8])
{
	statn(4, v);
}

static int near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

int main(void)
{
	struct bam_cpu_sample a, b;

	/* 1. All CPUs, no cgroup file. Over the interval (100 jiffies per
	 * CPU): cpu0 busy (user 100), cpu1 idle 60 + iowait 20 + user 20,
	 * cpu2 nice 100 (a niced job is busy), cpu3 steal 50 + idle 50.
	 * Idle: (80 + 50) / 400 of 4 CPUs = 1.3 CPUs. */
	fresh();
	const unsigned long long t0[4][8] = { { 10, 0, 5, 100, 0, 0, 0, 0 },
					      { 10, 0, 5, 100, 0, 0, 0, 0 },
					      { 10, 0, 5, 100, 0, 0, 0, 0 },
					      { 10, 0, 5, 100, 0, 0, 0, 0 } };
	const unsigned long long t1[4][8] = { { 110, 0, 5, 100, 0, 0, 0, 0 },
					      { 30, 0, 5, 160, 20, 0, 0, 0 },
					      { 10, 100, 5, 100, 0, 0, 0, 0 },
					      { 10, 0, 5, 150, 0, 0, 0, 50 } };
	stat4(t0);
	bam_cpu_read(root, NULL, 10.0, &a);
	stat4(t1);
	bam_cpu_read(root, NULL, 11.0, &b);
	expect(a.ncpu == 4 && b.ncpu == 4 && a.nlevels == 0, "1: %d cpus, %d levels", b.ncpu,
	       b.nlevels);
	expect(near(bam_cpu_idle(&a, &b), 1.3), "1: %f idle CPUs", bam_cpu_idle(&a, &b));

	/* 2. Our affinity is {0, 2}: both busy, so nothing is idle for us
	 * though cpu1 and cpu3 idle. Then {1, 3}: (80 + 50) / 200 of 2 = 1.3. */
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	CPU_SET(2, &set);
	stat4(t0);
	bam_cpu_read(root, &set, 10.0, &a);
	stat4(t1);
	bam_cpu_read(root, &set, 11.0, &b);
	expect(b.ncpu == 2 && near(bam_cpu_idle(&a, &b), 0.0), "2: %d cpus, %f idle", b.ncpu,
	       bam_cpu_idle(&a, &b));
	CPU_ZERO(&set);
	CPU_SET(1, &set);
	CPU_SET(3, &set);
	stat4(t0);
	bam_cpu_read(root, &set, 10.0, &a);
	stat4(t1);
	bam_cpu_read(root, &set, 11.0, &b);
	expect(near(bam_cpu_idle(&a, &b), 1.3), "2b: %f idle", bam_cpu_idle(&a, &b));
	/* 2c. Affinity {8, 9}, the host's numbers, and a /proc/stat of two
	 * lines, cpu0 and cpu1 (LXCFS renumbers a container's CPUs): as many
	 * as ours, so they are ours: (0 + 80) / 200 of 2 = 0.8. With four
	 * lines none of which is 8 or 9: nothing read, unknown. */
	CPU_ZERO(&set);
	CPU_SET(8, &set);
	CPU_SET(9, &set);
	statn(2, t0);
	bam_cpu_read(root, &set, 10.0, &a);
	statn(2, t1);
	bam_cpu_read(root, &set, 11.0, &b);
	expect(b.ncpu == 2 && near(bam_cpu_idle(&a, &b), 0.8), "2c: %d cpus, %f idle", b.ncpu,
	       bam_cpu_idle(&a, &b));
	stat4(t0);
	bam_cpu_read(root, &set, 10.0, &a);
	stat4(t1);
	bam_cpu_read(root, &set, 11.0, &b);
	expect(b.ncpu == 0 && bam_cpu_idle(&a, &b) < 0, "2d: %d cpus, %f idle", b.ncpu,
	       bam_cpu_idle(&a, &b));

	/* 3. cgroup v2: our /s/c has cpu.max "max 100000" (no quota); its
	 * parent /s has 150000/100000 = 1.5 CPUs and used 1.4 s of CPU in the
	 * 2 s interval (0.7 CPUs): room 0.8, less than the machine's 1.3. */
	fresh();
	put("proc/self/cgroup", "0::/s/c\n");
	put("sys/fs/cgroup/s/c/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/s/c/cpu.stat", "usage_usec 5000\nuser_usec 1\n");
	put("sys/fs/cgroup/s/cpu.max", "150000 100000\n");
	put("sys/fs/cgroup/s/cpu.stat", "usage_usec 1000000\nuser_usec 2\n");
	stat4(t0);
	bam_cpu_read(root, NULL, 20.0, &a);
	put("sys/fs/cgroup/s/cpu.stat", "usage_usec 2400000\nuser_usec 2\n");
	stat4(t1);
	bam_cpu_read(root, NULL, 22.0, &b);
	expect(b.nlevels == 1 && near(b.quota_cpus[0], 1.5), "3: %d levels", b.nlevels);
	expect(near(bam_cpu_idle(&a, &b), 0.8), "3: %f idle", bam_cpu_idle(&a, &b));
	/* ... the quota all used (3 s in 2 s: 1.5 CPUs): nothing idle, while
	 * the machine has 1.3 CPUs idle. */
	put("sys/fs/cgroup/s/cpu.stat", "usage_usec 4000000\n");
	bam_cpu_read(root, NULL, 22.0, &b);
	expect(near(bam_cpu_idle(&a, &b), 0.0), "3b: %f idle", bam_cpu_idle(&a, &b));

	/* 3c. The quota on our own level, under the hybrid layout's v2 mount
	 * (/sys/fs/cgroup/unified): 0.5 CPUs, 0.25 used over 1 s: room 0.25. */
	fresh();
	put("proc/self/cgroup", "4:memory:/\n0::/q\n");
	put("sys/fs/cgroup/unified/q/cpu.max", "50000 100000\n");
	put("sys/fs/cgroup/unified/q/cpu.stat", "usage_usec 100\n");
	stat4(t0);
	bam_cpu_read(root, NULL, 50.0, &a);
	put("sys/fs/cgroup/unified/q/cpu.stat", "usage_usec 250100\n");
	stat4(t1);
	bam_cpu_read(root, NULL, 51.0, &b);
	expect(b.nlevels == 1 && near(bam_cpu_idle(&a, &b), 0.25), "3c: %d levels, %f idle",
	       b.nlevels, bam_cpu_idle(&a, &b));

	/* 3d. cgroup v1, systemd's layout (cpu and cpuacct in one directory,
	 * reached through the "cpu" link; here a directory): /docker/abc has
	 * 0.5 CPUs (50000/100000) and used 0.25 s in 1 s: room 0.25; /docker
	 * has no quota (-1). */
	fresh();
	put("proc/self/cgroup", "12:cpu,cpuacct:/docker/abc\n5:memory:/docker/abc\n0::/\n");
	put("sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us", "50000\n");
	put("sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu/docker/abc/cpuacct.usage", "1000000000\n");
	put("sys/fs/cgroup/cpu/docker/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu/docker/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu/docker/cpuacct.usage", "5000000000\n");
	stat4(t0);
	bam_cpu_read(root, NULL, 60.0, &a);
	put("sys/fs/cgroup/cpu/docker/abc/cpuacct.usage", "1250000000\n");
	stat4(t1);
	bam_cpu_read(root, NULL, 61.0, &b);
	expect(b.nlevels == 1 && near(b.quota_cpus[0], 0.5) && near(bam_cpu_idle(&a, &b), 0.25),
	       "3d: %d levels, %f idle", b.nlevels, bam_cpu_idle(&a, &b));
	/* 3e. As a container without its own cgroup namespace sees it: the
	 * line names /docker/xyz, the mount ("cpuacct,cpu" here) shows only
	 * the container's level at its top. 2 CPUs, 1.5 used in 1 s: 0.5. */
	fresh();
	put("proc/self/cgroup", "3:cpuacct,cpu:/docker/xyz\n");
	put("sys/fs/cgroup/cpuacct,cpu/cpu.cfs_quota_us", "200000\n");
	put("sys/fs/cgroup/cpuacct,cpu/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpuacct,cpu/cpuacct.usage", "0\n");
	stat4(t0);
	bam_cpu_read(root, NULL, 70.0, &a);
	put("sys/fs/cgroup/cpuacct,cpu/cpuacct.usage", "1500000000\n");
	stat4(t1);
	bam_cpu_read(root, NULL, 71.0, &b);
	expect(b.nlevels == 1 && near(bam_cpu_idle(&a, &b), 0.5), "3e: %d levels, %f idle",
	       b.nlevels, bam_cpu_idle(&a, &b));
	/* 3f. A quota with no cpuacct.usage beside it, and cpuacct-only and
	 * cpuset lines whose paths hold whole quota files under the cpu mount
	 * (so a line wrongly taken for cpu's would find them): no level; the
	 * machine's 1.3 CPUs decide. */
	fresh();
	put("proc/self/cgroup", "3:cpu:/a\n4:cpuacct:/b\n5:cpuset:/x\n");
	put("sys/fs/cgroup/cpu/a/cpu.cfs_quota_us", "10000\n");
	put("sys/fs/cgroup/cpu/a/cpu.cfs_period_us", "100000\n");
	const char *const other[] = { "b", "x" };
	for (int i = 0; i < 2; i++) {
		static const char *const files[][2] = { { "cpu.cfs_quota_us", "10000" },
							{ "cpu.cfs_period_us", "100000" },
							{ "cpuacct.usage", "0" } };
		for (int k = 0; k < 3; k++) {
			char rel[128];
			snprintf(rel, sizeof(rel), "sys/fs/cgroup/cpu/%s/%s", other[i], files[k][0]);
			put(rel, "%s\n", files[k][1]);
		}
	}
	stat4(t0);
	bam_cpu_read(root, NULL, 80.0, &a);
	stat4(t1);
	bam_cpu_read(root, NULL, 81.0, &b);
	expect(b.nlevels == 0 && near(bam_cpu_idle(&a, &b), 1.3), "3f: %d levels, %f idle",
	       b.nlevels, bam_cpu_idle(&a, &b));

	/* 3g. The quota moved between the samples from our level /s/c to
	 * its parent /s (as many levels each time): no level is in both, so
	 * the machine's 1.3 decides. Paired by position, /s's 5 s of use
	 * against /s/c's 0 would have read as no room at all. */
	fresh();
	put("proc/self/cgroup", "0::/s/c\n");
	put("sys/fs/cgroup/s/c/cpu.max", "100000 100000\n");
	put("sys/fs/cgroup/s/c/cpu.stat", "usage_usec 0\n");
	put("sys/fs/cgroup/s/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/s/cpu.stat", "usage_usec 5000000\n");
	stat4(t0);
	bam_cpu_read(root, NULL, 90.0, &a);
	put("sys/fs/cgroup/s/c/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/s/cpu.max", "100000 100000\n");
	stat4(t1);
	bam_cpu_read(root, NULL, 91.0, &b);
	expect(a.nlevels == 1 && b.nlevels == 1 && near(bam_cpu_idle(&a, &b), 1.3),
	       "3g: %d/%d levels, %f idle", a.nlevels, b.nlevels, bam_cpu_idle(&a, &b));

	/* 4. Counters that went backwards (a CPU hot-plugged, a fixture
	 * rewritten): the machine's part unknown; no cgroup: -1. */
	fresh();
	stat4(t1);
	bam_cpu_read(root, NULL, 30.0, &a);
	stat4(t0);
	bam_cpu_read(root, NULL, 31.0, &b);
	expect(bam_cpu_idle(&a, &b) < 0, "4: %f", bam_cpu_idle(&a, &b));

	/* 5. Nothing readable: unknown. */
	fresh();
	bam_cpu_read(root, NULL, 40.0, &a);
	bam_cpu_read(root, NULL, 41.0, &b);
	expect(a.ncpu == 0 && bam_cpu_idle(&a, &b) < 0, "5: %d cpus", a.ncpu);

	/* 6. This machine, over 0.3 s: between 0 and the CPUs it has. */
	struct timespec ts = { 0, 300 * 1000000L };
	bam_cpu_read("", NULL, 0.0, &a);
	nanosleep(&ts, NULL);
	bam_cpu_read("", NULL, 0.3, &b);
	double idle = bam_cpu_idle(&a, &b);
	expect(a.ncpu > 0 && idle >= 0 && idle <= a.ncpu, "6: %f idle of %d", idle, a.ncpu);

	fixture_remove(root);
	test_done();
}

/*
 * ocolos-bam's memory check (tools/bam/memory.c, bam_memory_read) on
 * fixture trees of /proc and /sys: MemAvailable/MemTotal alone; a v1
 * memory cgroup whose parent has the limit, with reclaimable page cache;
 * a v1 controller in a comma list; v2 with "max", memory.high and an
 * ancestor's limit; the hybrid layout (v2 under /sys/fs/cgroup/unified);
 * nothing readable. Expected values worked out by hand below (MiB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bam/memory.h"
#include "check.h"
#include "fixture_tree.h"

#define MiB (1024LL * 1024LL)
#define GiB (1024LL * MiB)

static char root[256];

/* put("sys/fs/cgroup/a/memory.max", "%lld\n", ...): a file under the root. */
#define put(...) fixture_put(root, __VA_ARGS__)

static void fresh(void)
{
	fixture_fresh(root, sizeof(root), "ocolos-bam-mem");
}

static void meminfo(long long total_mb, long long avail_mb)
{
	put("proc/meminfo", "MemTotal:       %lld kB\nMemFree:         1000 kB\n"
	    "MemAvailable:   %lld kB\nBuffers:           10 kB\n", total_mb * 1024, avail_mb * 1024);
}

int main(void)
{
	struct bam_memory m;

	/* 1. The machine only: no cgroup file. */
	fresh();
	meminfo(16384, 10240);
	bam_memory_read(root, &m);
	expect(m.available_mb == 10240 && m.capacity_mb == 16384, "1: %lld/%lld", m.available_mb,
	       m.capacity_mb);

	/* 2. v1: our cgroup /a/b has no limit (LONG_MAX rounded to pages),
	 * its parent /a 2 GiB with 1.5 GiB used, of which 0.5 GiB inactive
	 * page cache: room 2 - (1.5 - 0.5) = 1 GiB; capacity 2 GiB. */
	fresh();
	meminfo(16384, 10240);
	put("proc/self/cgroup", "5:cpu,cpuacct:/x\n4:memory:/a/b\n0::/\n");
	put("sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
	put("sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "%lld\n", 1 * GiB);
	put("sys/fs/cgroup/memory/a/memory.limit_in_bytes", "%lld\n", 2 * GiB);
	put("sys/fs/cgroup/memory/a/memory.usage_in_bytes", "%lld\n", 3 * GiB / 2);
	put("sys/fs/cgroup/memory/a/memory.stat", "cache 1\ntotal_cache 9\ntotal_inactive_file %lld\n",
	    GiB / 2);
	bam_memory_read(root, &m);
	expect(m.available_mb == 1024 && m.capacity_mb == 2048, "2: %lld/%lld", m.available_mb,
	       m.capacity_mb);

	/* 3. v1, the memory controller in a comma list, a limit of 300 MiB,
	 * all of it used, no stat: room 0. */
	fresh();
	meminfo(16384, 10240);
	put("proc/self/cgroup", "7:memory,blkio:/c\n");
	put("sys/fs/cgroup/memory/c/memory.limit_in_bytes", "%lld\n", 300 * MiB);
	put("sys/fs/cgroup/memory/c/memory.usage_in_bytes", "%lld\n", 310 * MiB);
	bam_memory_read(root, &m);
	expect(m.available_mb == 0 && m.capacity_mb == 300, "3: %lld/%lld", m.available_mb,
	       m.capacity_mb);

	/* 4. v2: /x/y has memory.max "max" and memory.high 3 GiB with 1 GiB
	 * used (room 2 GiB); its parent /x memory.max 4 GiB with 3 GiB used,
	 * 1 GiB of it inactive file (room 2 GiB too, the least wins either
	 * way); MemAvailable 1.5 GiB is the least. Capacity: 3 GiB (high). */
	fresh();
	meminfo(16384, 1536);
	put("proc/self/cgroup", "0::/x/y\n");
	put("sys/fs/cgroup/x/y/memory.max", "max\n");
	put("sys/fs/cgroup/x/y/memory.high", "%lld\n", 3 * GiB);
	put("sys/fs/cgroup/x/y/memory.current", "%lld\n", 1 * GiB);
	put("sys/fs/cgroup/x/memory.max", "%lld\n", 4 * GiB);
	put("sys/fs/cgroup/x/memory.current", "%lld\n", 3 * GiB);
	put("sys/fs/cgroup/x/memory.stat", "anon 5\ninactive_file %lld\nactive_file 7\n", 1 * GiB);
	bam_memory_read(root, &m);
	expect(m.available_mb == 1536 && m.capacity_mb == 3072, "4: %lld/%lld", m.available_mb,
	       m.capacity_mb);
	/* ... and with MemAvailable out of the way, the ancestor's room:
	 * 4 - (3 - 1) = 2 GiB, /x/y's 3 - 1 = 2 GiB. Raise /x/y's usage to
	 * 2.5 GiB: its room 0.5 GiB is the least. */
	meminfo(16384, 10240);
	put("sys/fs/cgroup/x/y/memory.current", "%lld\n", 5 * GiB / 2);
	bam_memory_read(root, &m);
	expect(m.available_mb == 512, "4b: %lld", m.available_mb);

	/* 5. Hybrid: v1 mounts, v2 at /sys/fs/cgroup/unified. */
	fresh();
	meminfo(8192, 4096);
	put("proc/self/cgroup", "4:memory:/\n0::/u\n");
	put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
	put("sys/fs/cgroup/memory/memory.usage_in_bytes", "%lld\n", 1 * GiB);
	put("sys/fs/cgroup/unified/u/memory.max", "%lld\n", 1 * GiB);
	put("sys/fs/cgroup/unified/u/memory.current", "%lld\n", 256 * MiB);
	bam_memory_read(root, &m);
	expect(m.available_mb == 768 && m.capacity_mb == 1024, "5: %lld/%lld", m.available_mb,
	       m.capacity_mb);

	/* 6. Nothing readable: unknown. */
	fresh();
	bam_memory_read(root, &m);
	expect(m.available_mb == -1 && m.capacity_mb == -1, "6: %lld/%lld", m.available_mb,
	       m.capacity_mb);

	/* 7. This machine: whatever it says, room never exceeds capacity. */
	bam_memory_read("", &m);
	expect(m.available_mb >= 0 && m.available_mb <= m.capacity_mb, "7: %lld/%lld",
	       m.available_mb, m.capacity_mb);

	fixture_remove(root);
	test_done();
}

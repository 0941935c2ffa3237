/* MemAvailable is the machine's view; in a container or a systemd slice
 * the limit that kills BOLT is the cgroup's, which MemAvailable does not
 * show. Both are read, and the smallest room wins. A limit applies to a
 * cgroup's whole subtree, so every ancestor's counts as well. A cgroup's
 * usage includes its page cache, which the kernel reclaims before it
 * kills anything: the inactive part of it counts as room, as in the
 * "working set" container runtimes report. */
#include "bam/memory.h"

#include "bam/cgroup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024LL * 1024LL)
#define NO_LIMIT (1LL << 62) /* v1 says "none" with LONG_MAX rounded down to pages */

/* `key value` from a memory.stat file, or 0. */
static long long stat_field(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	char line[256];
	long long v = 0;
	size_t n = strlen(key);
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ') {
			v = strtoll(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v > 0 ? v : 0;
}

static void least(long long *best, long long v)
{
	if (v >= 0 && (*best < 0 || v < *best))
		*best = v;
}

/* One cgroup directory's limit and room, in MiB (nothing without a limit). */
static void cgroup_dir(const char *dir, int v2, struct bam_memory *m)
{
	char p[4200];
	long long limit = -1, usage, high;
	snprintf(p, sizeof(p), "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
	limit = bam_read_ll(p);
	if (v2) { /* above memory.high the cgroup is throttled and reclaimed hard */
		snprintf(p, sizeof(p), "%s/memory.high", dir);
		high = bam_read_ll(p);
		if (high >= 0 && (limit < 0 || high < limit))
			limit = high;
	}
	if (limit < 0 || limit >= NO_LIMIT)
		return;
	snprintf(p, sizeof(p), "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
	usage = bam_read_ll(p);
	snprintf(p, sizeof(p), "%s/memory.stat", dir);
	usage -= stat_field(p, v2 ? "inactive_file" : "total_inactive_file");
	least(&m->capacity_mb, limit / MIB);
	if (usage >= 0)
		least(&m->available_mb, limit > usage ? (limit - usage) / MIB : 0);
}

struct walk {
	int v2;
	struct bam_memory *m;
};

static void cgroup_dir_v(const char *dir, void *arg)
{
	struct walk *w = arg;
	cgroup_dir(dir, w->v2, w->m);
}

static void cgroup_walk(const char *base, const char *path, int v2, struct bam_memory *m)
{
	struct walk w = { v2, m };
	bam_cgroup_walk(base, path, cgroup_dir_v, &w);
}

void bam_memory_read(const char *root, struct bam_memory *m)
{
	char p[4200], line[4200];
	m->available_mb = m->capacity_mb = -1;
	snprintf(p, sizeof(p), "%s/proc/meminfo", root);
	FILE *f = fopen(p, "re");
	if (f) {
		long long kb;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
				least(&m->available_mb, kb / 1024);
			if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
				least(&m->capacity_mb, kb / 1024);
		}
		fclose(f);
	}
	/* "0::/path" is the v2 hierarchy; "N:memory:/path" (controllers
	 * may be a comma list) is v1's memory controller. */
	snprintf(p, sizeof(p), "%s/proc/self/cgroup", root);
	f = fopen(p, "re");
	if (!f)
		return;
	const char *ctrls, *path;
	while (fgets(line, sizeof(line), f)) {
		if (!bam_cgroup_line(line, &ctrls, &path))
			continue;
		if (!*ctrls) {
			snprintf(p, sizeof(p), "%s/sys/fs/cgroup", root);
			cgroup_walk(p, path, 1, m);
			snprintf(p, sizeof(p), "%s/sys/fs/cgroup/unified", root);
			cgroup_walk(p, path, 1, m);
			continue;
		}
		if (bam_cgroup_names(ctrls, "memory")) {
			snprintf(p, sizeof(p), "%s/sys/fs/cgroup/memory", root);
			cgroup_walk(p, path, 0, m);
		}
	}
	fclose(f);
}

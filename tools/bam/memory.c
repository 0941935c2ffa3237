/* MemAvailable is the machine's view; in a container or a systemd slice
 * the limit that kills BOLT is the cgroup's, which MemAvailable does not
 * show. Both are read, and the smallest room wins. A limit applies to a
 * cgroup's whole subtree, so every ancestor's counts as well. */
#include "bam/memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

static long long read_ll(const char *path, int *unlimited)
{
	FILE *f = fopen(path, "re");
	char buf[64];
	*unlimited = 0;
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	if (!strncmp(buf, "max", 3)) {
		*unlimited = 1;
		return -1;
	}
	char *end;
	long long v = strtoll(buf, &end, 10);
	return end == buf ? -1 : v;
}

/* limit - usage for the cgroup at dir (MiB), or -1 without a limit.
 * v1 reports "no limit" as a huge number (LONG_MAX rounded to pages). */
static long long cgroup_room(const char *dir, int v2)
{
	char lp[4200], up[4200];
	int unl;
	snprintf(lp, sizeof(lp), "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
	snprintf(up, sizeof(up), "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
	long long limit = read_ll(lp, &unl), usage = read_ll(up, &unl);
	if (limit < 0 || usage < 0 || limit >= (1LL << 62))
		return -1;
	return limit > usage ? (long long)((limit - usage) / MIB) : 0;
}

static void consider(long long *best, long long v)
{
	if (v >= 0 && (*best < 0 || v < *best))
		*best = v;
}

/* Our cgroup's path, from mount root base, then each ancestor's. */
static void walk_cgroup(long long *best, const char *base, const char *path, int v2)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s%s", base, path);
	for (;;) {
		size_t n = strlen(dir);
		while (n > strlen(base) && dir[n - 1] == '/')
			dir[--n] = 0;
		consider(best, cgroup_room(dir, v2));
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < strlen(base))
			break;
		*slash = 0;
	}
}

long long bam_memory_available_mb(void)
{
	long long best = -1;
	FILE *f = fopen("/proc/meminfo", "re");
	char line[4200];
	if (f) {
		long long kb;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
				consider(&best, kb / 1024);
		fclose(f);
	}
	/* "0::/path" is the v2 hierarchy; "N:memory:/path" (controllers
	 * may be a comma list) is v1's memory controller. */
	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return best;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = 0;
		const char *ctrls = c1 + 1, *path = c2 + 1;
		if (!*ctrls) {
			walk_cgroup(&best, "/sys/fs/cgroup", path, 1);
			walk_cgroup(&best, "/sys/fs/cgroup/unified", path, 1);
			continue;
		}
		for (const char *s = ctrls; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
			if (!strncmp(s, "memory", 6) && (s[6] == ',' || !s[6]))
				walk_cgroup(&best, "/sys/fs/cgroup/memory", path, 0);
	}
	fclose(f);
	return best;
}

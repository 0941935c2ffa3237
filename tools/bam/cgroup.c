#include "bam/cgroup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long long bam_read_ll(const char *path)
{
	FILE *f = fopen(path, "re");
	char buf[64];
	if (!f)
		return -1;
	char *got = fgets(buf, sizeof(buf), f);
	fclose(f);
	char *end;
	long long v = got ? strtoll(buf, &end, 10) : -1;
	return got && end != buf && v >= 0 ? v : -1;
}

void bam_cgroup_walk(const char *base, const char *path, void (*fn)(const char *dir, void *arg),
		     void *arg)
{
	char dir[4096];
	size_t b = strlen(base);
	if ((size_t)snprintf(dir, sizeof(dir), "%s%s", base, path) >= sizeof(dir))
		return; /* cut short, it would name some other directory */
	for (;;) {
		size_t n = strlen(dir);
		while (n > b && dir[n - 1] == '/')
			dir[--n] = 0;
		fn(dir, arg);
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < b)
			break;
		*slash = 0;
	}
}

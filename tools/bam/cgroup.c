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

int bam_cgroup_line(char *line, const char **controllers, const char **path)
{
	line[strcspn(line, "\n")] = 0;
	char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c2)
		return 0;
	*c2 = 0;
	*controllers = c1 + 1;
	*path = c2 + 1;
	return 1;
}

int bam_cgroup_names(const char *controllers, const char *name)
{
	size_t n = strlen(name);
	for (const char *c = controllers; c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL)
		if (!strncmp(c, name, n) && (c[n] == ',' || !c[n]))
			return 1;
	return 0;
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

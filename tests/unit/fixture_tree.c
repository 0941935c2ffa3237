#include "fixture_tree.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fixture_remove(char *root)
{
	char cmd[600];
	if (!*root)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd))
		abort();
	*root = 0;
}

void fixture_fresh(char *root, unsigned cap, const char *prefix)
{
	fixture_remove(root);
	snprintf(root, cap, "/tmp/%s.XXXXXX", prefix);
	if (!mkdtemp(root))
		abort();
}

void fixture_put(const char *root, const char *rel, const char *fmt, ...)
{
	char p[512], cmd[600];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	char *slash = strrchr(p, '/');
	*slash = 0;
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", p);
	if (system(cmd))
		abort();
	*slash = '/';
	FILE *f = fopen(p, "w");
	if (!f)
		abort();
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

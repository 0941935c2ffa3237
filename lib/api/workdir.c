/*
 * Private work directory of a round. Created with mkdtemp (mode 0700), so
 * the profile and the BOLT output, which describe the program's code, are
 * never readable by other users and never at a guessable path.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "api/workdir.h"

int core_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

int core_workdir_create(struct core_workdir *wd, const char *parent,
			struct core_err *err)
{
	if (!parent)
		parent = getenv("TMPDIR");
	if (!parent || !*parent)
		parent = "/tmp";
	int n = snprintf(wd->path, sizeof(wd->path), "%s/ocolos.XXXXXX", parent);
	if (n < 0 || (size_t)n >= sizeof(wd->path))
		return core_errf(err, OCOLOS_EINVAL, "work directory parent '%s' is too long", parent);
	if (!mkdtemp(wd->path)) {
		int e = errno;
		wd->path[0] = '\0';
		return core_errf(err, OCOLOS_EIO,
				 "cannot create a work directory in '%s': %s; set opts.tmp_dir to a writable directory",
				 parent, strerror(e));
	}
	return 0;
}

int core_workdir_file(const struct core_workdir *wd, const char *name,
		      char *out, struct core_err *err)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", wd->path, name);
	if (n < 0 || n >= PATH_MAX)
		return core_errf(err, OCOLOS_EINVAL, "work file path too long");
	return 0;
}

void core_workdir_remove(struct core_workdir *wd)
{
	if (!wd->path[0])
		return;
	DIR *d = opendir(wd->path);
	if (d) {
		struct dirent *e;
		char p[PATH_MAX];
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (snprintf(p, sizeof(p), "%s/%s", wd->path, e->d_name) < (int)sizeof(p))
				unlink(p);
		}
		closedir(d);
	}
	rmdir(wd->path);
	wd->path[0] = '\0';
}

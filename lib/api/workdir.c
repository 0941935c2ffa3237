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

#include "api/workdir.h"

int api_workdir_create(struct api_workdir *wd, const char *parent,
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

int api_workdir_file(const struct api_workdir *wd, const char *name,
		      char *out, struct core_err *err)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", wd->path, name);
	if (n < 0 || n >= PATH_MAX)
		return core_errf(err, OCOLOS_EINVAL, "work file path too long");
	return 0;
}

void api_workdir_remove(struct api_workdir *wd)
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

/* The private 0700 directory a round keeps its profile and BOLT output in. */
#ifndef OCOLOS_API_WORKDIR_H
#define OCOLOS_API_WORKDIR_H

#include <limits.h>
#include "core/err.h"

struct api_workdir {
	char path[PATH_MAX]; /* "" when not created */
};

/* Create a fresh 0700 directory under `parent` (NULL: $TMPDIR or /tmp). */
int api_workdir_create(struct api_workdir *wd, const char *parent,
			struct core_err *err);

/* Join `name` to the directory into `out` (PATH_MAX bytes). */
int api_workdir_file(const struct api_workdir *wd, const char *name,
		      char *out, struct core_err *err);

/* Remove the directory and the files in it (not recursive beyond that). */
void api_workdir_remove(struct api_workdir *wd);

#endif

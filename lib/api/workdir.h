/* The private 0700 directory a round keeps its profile and BOLT output in. */
#ifndef OCOLOS_CORE_WORKDIR_H
#define OCOLOS_CORE_WORKDIR_H

#include <limits.h>
#include "core/err.h"

struct core_workdir {
	char path[PATH_MAX]; /* "" when not created */
};

/* Create a fresh 0700 directory under `parent` (NULL: $TMPDIR or /tmp). */
int core_workdir_create(struct core_workdir *wd, const char *parent,
			struct core_err *err);

/* Join `name` to the directory into `out` (PATH_MAX bytes). */
int core_workdir_file(const struct core_workdir *wd, const char *name,
		      char *out, struct core_err *err);

/* Remove the directory and the files in it (not recursive beyond that). */
void core_workdir_remove(struct core_workdir *wd);

#endif

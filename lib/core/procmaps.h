/* /proc/PID/maps: where the binary is loaded, and which ranges are free. */
#ifndef OCOLOS_CORE_PROCMAPS_H
#define OCOLOS_CORE_PROCMAPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "core/err.h"

struct procmaps_entry {
	uint64_t start, end, offset;
	uint64_t ino;
	unsigned dev_major, dev_minor;
	char perms[5];
	char path[256];	  /* "" for anonymous mappings; "[vdso]", "[heap]", ... */
};

struct procmaps {
	struct procmaps_entry *v; /* sorted by start (the kernel's order) */
	size_t n, cap;
};

/* /proc/PID/maps of `pid` into `m` (reused: its entries are replaced).
 * OCOLOS_ENOPROC if the process is gone or has no memory left (a zombie),
 * OCOLOS_EIO, OCOLOS_ENOMEM. */
int core_procmaps_read(pid_t pid, struct procmaps *m, struct core_err *err);
/* The parser of core_procmaps_read(): the lines of `f` (`what` names it in
 * messages) in the maps format; lines that are not one are skipped, paths
 * cut at 255 bytes. Entries end up sorted by start, as the kernel writes
 * them (core_procmaps_find_free() needs it). 0 or OCOLOS_ENOMEM. Separate so
 * that it can be fuzzed (tests/fuzz). */
int core_procmaps_parse(FILE *f, const char *what, struct procmaps *m, struct core_err *err);
void core_procmaps_free(struct procmaps *m);

/* Load bias of the file (dev, ino) whose first PT_LOAD is at link-time
 * `first_vaddr` (file offset `first_offset`): run-time address minus
 * link-time address. OCOLOS_EIO if the file is not mapped — including when
 * the file on disk was replaced since the process started it. */
int core_procmaps_load_bias(const struct procmaps *m, dev_t dev, ino_t ino,
		       uint64_t first_vaddr, uint64_t first_offset,
		       uint64_t *bias, struct core_err *err);

/* A free range of `size` bytes (aligned to `align`) wholly inside
 * [lo, hi), preferring addresses close to `near`. 0 if none. */
uint64_t core_procmaps_find_free(const struct procmaps *m, uint64_t size,
			    uint64_t align, uint64_t lo, uint64_t hi,
			    uint64_t near);

#endif

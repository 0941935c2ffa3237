/*
 * Reader of /proc/PID/maps. Used for the load bias (PIE and non-PIE alike:
 * found by the binary's device and inode, not its name, so a replaced file
 * is noticed) and for finding free address space near the code.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "core/procmaps.h"
#include "core/util.h"

int core_procmaps_read(pid_t pid, struct procmaps *m, struct core_err *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f && (errno == ENOENT || errno == ESRCH))
		return core_errf(err, OCOLOS_ENOPROC, "process %d is gone (it exited)", (int)pid);
	if (!f)
		return core_errf(err, OCOLOS_EIO, "cannot read %s: %s", path, strerror(errno));
	int rc = core_procmaps_parse(f, path, m, err);
	fclose(f);
	if (!rc && !m->n) /* a zombie: its memory is gone already */
		return core_errf(err, OCOLOS_ENOPROC, "process %d is exiting (it has no memory left)",
				 (int)pid);
	return rc;
}

static int by_start(const void *a, const void *b)
{
	uint64_t x = ((const struct procmaps_entry *)a)->start;
	uint64_t y = ((const struct procmaps_entry *)b)->start;
	return (x > y) - (x < y);
}

int core_procmaps_parse(FILE *f, const char *what, struct procmaps *m, struct core_err *err)
{
	char line[4096];
	m->n = 0;
	while (fgets(line, sizeof(line), f)) {
		struct procmaps_entry e = { 0 };
		int end = 0;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 "%n",
			   &e.start, &e.end, e.perms, &e.offset, &e.dev_major,
			   &e.dev_minor, &e.ino, &end) != 7)
			continue;
		const char *p = line + end;
		while (*p == ' ')
			p++;
		snprintf(e.path, sizeof(e.path), "%.*s", (int)strcspn(p, "\n"), p);
		if (core_grow((void **)&m->v, &m->cap, m->n, sizeof(*m->v)))
			return core_errf(err, OCOLOS_ENOMEM, "out of memory reading %s", what);
		m->v[m->n++] = e;
	}
	/* The kernel writes ascending starts; the free-range search relies on
	 * it (a gap is what lies between neighbours), so a file that does not
	 * (found by fuzzing: tests/fuzz/regress/procmaps) is put in order
	 * rather than trusted. */
	for (size_t i = 1; i < m->n; i++)
		if (m->v[i].start < m->v[i - 1].start) {
			qsort(m->v, m->n, sizeof(*m->v), by_start);
			break;
		}
	return 0;
}

void core_procmaps_free(struct procmaps *m)
{
	core_free_clear(m->v, m->cap * sizeof(*m->v)); /* it names code versions: core/util.c */
	m->v = NULL;
	m->n = m->cap = 0;
}

int core_procmaps_load_bias(const struct procmaps *m, dev_t dev, ino_t ino,
		       uint64_t first_vaddr, uint64_t first_offset,
		       uint64_t *bias, struct core_err *err)
{
	const uint64_t page = 4096;
	for (size_t i = 0; i < m->n; i++) {
		const struct procmaps_entry *e = &m->v[i];
		if (e->ino != (uint64_t)ino || e->dev_major != major(dev) ||
		    e->dev_minor != minor(dev))
			continue;
		if (e->offset != (first_offset & ~(page - 1)))
			continue;
		*bias = e->start - (first_vaddr & ~(page - 1));
		return 0;
	}
	return core_errf(err, OCOLOS_EIO,
			 "the binary file is not mapped in the process: it was replaced or "
			 "deleted on disk since the process started; restart the process, or "
			 "leave opts.binary_path (the tools' --binary) unset: /proc/PID/exe "
			 "still opens the file it runs, even deleted");
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

uint64_t core_procmaps_find_free(const struct procmaps *m, uint64_t size,
			    uint64_t align, uint64_t lo, uint64_t hi, uint64_t near)
{
	uint64_t best = 0, best_dist = UINT64_MAX;
	uint64_t prev_end = 0x10000; /* stay clear of mmap_min_addr */
	for (size_t i = 0; i <= m->n; i++) {
		uint64_t gap_lo = prev_end;
		uint64_t gap_hi = i < m->n ? m->v[i].start : (1ull << 47) - 0x1000;
		if (i < m->n)
			prev_end = m->v[i].end > prev_end ? m->v[i].end : prev_end;
		if (gap_lo < lo)
			gap_lo = lo;
		if (gap_hi > hi)
			gap_hi = hi;
		if (gap_hi <= gap_lo)
			continue;
		/* Candidate nearest `near` inside the gap. */
		uint64_t c;
		if (near <= gap_lo)
			c = align_up(gap_lo, align);
		else
			c = align_up(near, align) + size <= gap_hi
				    ? align_up(near, align)
				    : (gap_hi - size) & ~(align - 1);
		if (c < gap_lo || c + size > gap_hi || c + size < c)
			continue;
		uint64_t d = c > near ? c - near : near - c;
		if (d < best_dist) {
			best_dist = d;
			best = c;
		}
	}
	return best;
}

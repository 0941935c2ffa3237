/* The /proc/PID/maps parser (core/procmaps.c) on any text, then what the
 * library computes from it: the load bias of a file and free ranges near
 * an address (the reservation). Input: 16 bytes of search parameters, then
 * the text. */
#include <sys/sysmacros.h>

#include "core/procmaps.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint64_t size_log = fuzz_take(&in, 1) % 40, align_log = fuzz_take(&in, 1) % 32;
	uint64_t near = fuzz_take(&in, 6) << 12;
	uint64_t span = fuzz_take(&in, 8);
	FILE *f = fmemopen((void *)in.p, in.n ? in.n : 1, "r");
	if (!f)
		return 0;
	struct procmaps m = { 0 };
	struct core_err err = { 0 };
	if (!in.n || core_procmaps_parse(f, "fuzz input", &m, &err)) {
		fclose(f);
		core_procmaps_free(&m);
		return 0;
	}
	fclose(f);
	uint64_t bias;
	if (m.n) /* the first file mapping's own (dev, ino), and one not there */
		(void)core_procmaps_load_bias(&m, makedev(m.v[0].dev_major, m.v[0].dev_minor),
					      (ino_t)m.v[0].ino, m.v[0].offset, m.v[0].offset, &bias,
					      &err);
	(void)core_procmaps_load_bias(&m, 0, 1, 0x1000, 0, &bias, &err);
	uint64_t lo = near > span ? near - span : 0, hi = near + span < near ? UINT64_MAX : near + span;
	uint64_t got = core_procmaps_find_free(&m, 1ull << size_log, 1ull << align_log, lo, hi, near);
	/* What a reservation relies on: inside [lo, hi), aligned, and clear of
	 * every mapping. */
	if (got) {
		uint64_t sz = 1ull << size_log;
		if (got < lo || got + sz > hi || got + sz < got || (got & ((1ull << align_log) - 1))) {
			fprintf(stderr, "find_free: %#llx+%#llx outside [%#llx, %#llx) or unaligned\n",
				(unsigned long long)got, (unsigned long long)sz,
				(unsigned long long)lo, (unsigned long long)hi);
			abort();
		}
		for (size_t i = 0; i < m.n; i++)
			if (m.v[i].start < m.v[i].end && got < m.v[i].end && m.v[i].start < got + sz) {
				fprintf(stderr, "find_free: %#llx+%#llx overlaps %#llx-%#llx\n",
					(unsigned long long)got, (unsigned long long)sz,
					(unsigned long long)m.v[i].start, (unsigned long long)m.v[i].end);
				abort();
			}
	}
	core_procmaps_free(&m);
	return 0;
}

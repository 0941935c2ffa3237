/* A perf mmap ring's data area (sample/perf_threads.c's walk, with
 * perf-lbr's and perf-ip's record parsers): whatever the kernel, or a
 * corrupted ring, leaves there, the walk stays inside the area and each
 * parser inside its record. Input: 1 byte parser choice, 2 bytes tail
 * offset, then the data area (its size rounded down to a power of two, as
 * the kernel's are; head = tail + that size at most). */
#include "fuzz.h"
#include "sample/perf_lbr.h"
#include "sample/perf_threads.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	unsigned which = (unsigned)fuzz_take(&in, 1);
	uint64_t tail = fuzz_take(&in, 2);
	if (in.n < 8)
		return 0;
	uint64_t area = 1;
	while (area * 2 <= in.n && area < (1u << 20))
		area *= 2;
	/* The area in a buffer of exactly its size, so ASan sees any read past it. */
	uint8_t *ring = malloc(area);
	if (!ring)
		return 0;
	memcpy(ring, in.p, area);
	uint64_t head = tail + area - (which >> 2) % area;
	struct sample_set s = { 0 };
	uint64_t bad = 0;
	if (which & 1)
		(void)sample_perf_lbr_drain(ring, area, tail, head, &s, &bad);
	else
		(void)sample_perf_ring_walk(ring, area, tail, head, sample_perf_ip_parse, &s, &bad);
	/* Stacks must describe the branches that were kept. */
	for (size_t k = 0; k < s.nstacks; k++)
		if (s.stack_start[k] > s.nbranches || (k && s.stack_start[k] < s.stack_start[k - 1]))
			abort();
	sample_set_free(&s);
	free(ring);
	return 0;
}

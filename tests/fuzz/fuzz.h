/*
 * What the fuzz targets share: the input as a file (for parsers that take a
 * path), the fixed binary some parsers read beside their input, and the
 * vma BOLT's seed output was made for. Each target is one
 * LLVMFuzzerTestOneInput in its own fuzz_*.c; CMakeLists.txt says which
 * parser each one reaches.
 */
#ifndef OCOLOS_FUZZ_H
#define OCOLOS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/err.h"
#include "elf/binary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as the contents of one memfd, reused for every input (no file
 * system traffic), named by its /proc/self/fd path. */
static inline const char *fuzz_as_file(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("ocolos-fuzz-input", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	return path;
}

/* The fixture (OCOLOS_FUZZ_FIXTURE, built beside the fuzzers), opened once.
 * Its failure is the harness's, not a finding: abort loudly. */
static inline const struct elf_binary *fuzz_fixture(void)
{
	static struct elf_binary *b;
	if (!b) {
		struct core_err err = { 0 };
		if (elf_binary_open(OCOLOS_FUZZ_FIXTURE, &b, &err)) {
			fprintf(stderr, "fuzz: cannot open the fixture %s: %s\n",
				OCOLOS_FUZZ_FIXTURE, err.msg);
			abort();
		}
	}
	return b;
}

/* Where BOLT was asked to put the fixture's new code for the seed output
 * (fuzz_seeds.c): right past the image. BOLT gives the new segment the
 * file offset of its address, so this keeps the seed small (~100 KiB; a
 * round's 64 MiB away makes a 64 MiB file of zeros). */
static inline uint64_t fuzz_vma(const struct elf_binary *b)
{
	return (b->img_hi + 0x1ffff) & ~0xffffull;
}

/* Little-endian reads from the input, 0 past its end. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};
static inline uint64_t fuzz_take(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}

#endif

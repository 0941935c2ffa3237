/*
 * bam_work: a stand-in for a compiler in the BAM tests. Reads an input
 * file, burns CPU in a few functions with data-dependent branches (so that
 * a profile has hot and cold code for BOLT to lay out), and writes an
 * output file that depends only on the input and the argument: the
 * accelerated run must produce the same bytes.
 *
 *   bam_work IN OUT [ROUNDS [fork]]
 *
 * fork: before writing OUT, a child runs one more pass and exits through
 * exit() (its atexit handlers and finalizers run, as the parent's do); the
 * parent waits for it. OUT is the same either way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((noinline)) static uint64_t mix(uint64_t h, unsigned c)
{
	if (c & 1)
		h = (h ^ c) * 0x100000001b3ull;
	else if (c % 3 == 0)
		h = (h << 7) ^ (h >> 3) ^ c;
	else
		h += c * 0x9e3779b97f4a7c15ull;
	return h;
}

__attribute__((noinline)) static uint64_t rare(uint64_t h)
{
	for (int i = 0; i < 3; i++)
		h = h * 31 + (uint64_t)i;
	return h;
}

/* Called through a pointer: an indirect call, which BOLT's instrumentation
 * counts apart from its counters (the counters hand-over test relies on
 * one). */
static uint64_t (*volatile rare_fn)(uint64_t) = rare;

__attribute__((noinline)) static uint64_t pass(const unsigned char *b, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++) {
		h = mix(h, b[i]);
		if ((h & 0xfff) == 0x5a5)
			h = rare_fn(h);
	}
	return h;
}

#ifndef BAM_VARIANT
#define BAM_VARIANT ""
#endif

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bam_work IN OUT [ROUNDS]\n");
		return 2;
	}
	long rounds = argc > 3 ? atol(argv[3]) : 2000;
	FILE *in = fopen(argv[1], "rb");
	if (!in)
		return perror(argv[1]), 1;
	static unsigned char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf), in);
	fclose(in);
	uint64_t h = 14695981039346656037ull;
	for (long r = 0; r < rounds; r++)
		h = pass(buf, n, h + (uint64_t)r);
	if (argc > 4 && !strcmp(argv[4], "fork")) {
		pid_t child = fork();
		if (child < 0)
			return perror("fork"), 1;
		if (child == 0)
			exit(pass(buf, n, h) == 42);
		int st;
		if (waitpid(child, &st, 0) != child)
			return perror("waitpid"), 1;
	}
	FILE *out = fopen(argv[2], "wb");
	if (!out)
		return perror(argv[2]), 1;
	fprintf(out, BAM_VARIANT "%s %zu %016llx\n", argv[1], n, (unsigned long long)h);
	return fclose(out) ? 1 : 0;
}

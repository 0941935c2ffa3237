/*
 * The seed corpus, from real files, written at build time:
 *   fuzz_seeds OUTDIR FIXTURE [LLVM-BOLT]
 * OUTDIR/<target>/ gets, per fuzz target (CMakeLists.txt):
 *   elf          the fixture binary
 *   bolt_output  BOLT's output for the fixture (a hybrid profile of
 *                samples at every block of its bx_ functions, the new code
 *                at fuzz_vma()), and the fixture itself (not an output)
 *   bat          that output's .note.bolt_bat section
 *   procmaps     this process's /proc/self/maps, behind search parameters
 *   perf_ring    rings as the kernel fills them: LBR samples, one wrapping
 *                around the area's end, a LOST record; IP samples
 *   profile      sample sets at the fixture's functions, for each writer
 * Without BOLT, bolt_output has the fixture only and bat is empty (the
 * fuzzers then start from nothing there).
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "elf/binary.h"
#include "infer/hybrid.h"
#include "layout/layout.h"
#include "sample/sample.h"

#define OCOLOS_FUZZ_FIXTURE fixture_path
static const char *fixture_path;
#include "fuzz.h"

static const char *outdir;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_seeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f))
		die(path);
}

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die(path);
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
		n += got;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	if (!buf)
		die("out of memory");
	*len = n;
	return buf;
}

/* Little-endian appends to a byte buffer (seeds are at most a few KiB). */
struct buf {
	uint8_t b[1 << 16];
	size_t n;
};
static void add(struct buf *b, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		b->b[b->n++] = (uint8_t)(v >> (8 * i));
}

/* One LBR sample record (perf_lbr.h's layout) of `nr` branches. */
static void lbr_record(struct buf *b, uint64_t ip, unsigned nr, uint64_t base)
{
	add(b, PERF_RECORD_SAMPLE, 4);
	add(b, 0, 2);
	add(b, 32 + 24 * nr, 2);
	add(b, ip, 8);
	add(b, 1234, 4);
	add(b, 1234, 4);
	add(b, nr, 8);
	for (unsigned i = 0; i < nr; i++) {
		add(b, base + 0x40 * i + 0x1c, 8);
		add(b, base + 0x40 * (i + 1), 8);
		add(b, 0, 8);
	}
}

static void perf_ring_seeds(const struct elf_binary *fx)
{
	uint64_t base = fx->funcs[fx->nfuncs / 2].addr + 0x555555554000ull;
	struct buf b = { .n = 0 };
	/* LBR: choice 1, tail 0; three samples and a LOST record. */
	add(&b, 1, 1);
	add(&b, 0, 2);
	lbr_record(&b, base, 4, base);
	lbr_record(&b, base + 8, 2, base);
	add(&b, PERF_RECORD_LOST, 4);
	add(&b, 0, 2);
	add(&b, 24, 2);
	add(&b, 1, 8);
	add(&b, 17, 8);
	lbr_record(&b, base + 16, 1, base);
	while ((b.n - 3) & (b.n - 4)) /* the area: a power of two */
		add(&b, 0, 1);
	put("perf_ring", "lbr", b.b, b.n);
	/* The same area with the tail 40 bytes before its end: the first
	 * record wraps around (the walk parses a copy). */
	size_t area = b.n - 3;
	uint64_t tail = area - 40;
	struct buf w = { .n = 0 };
	add(&w, 1, 1);
	add(&w, tail, 2);
	for (size_t i = 0; i < area; i++)
		w.b[w.n + (tail + i) % area] = b.b[3 + i];
	w.n += area;
	put("perf_ring", "lbr_wrap", w.b, w.n);
	/* IP samples: choice 0, header + ip + pid/tid each. */
	struct buf ip = { .n = 0 };
	add(&ip, 0, 1);
	add(&ip, 0, 2);
	for (unsigned i = 0; i < 16; i++) {
		add(&ip, PERF_RECORD_SAMPLE, 4);
		add(&ip, 0, 2);
		add(&ip, 24, 2);
		add(&ip, base + 4 * i, 8);
		add(&ip, 1234, 8);
	}
	put("perf_ring", "ip", ip.b, ip.n);
}

static void profile_seeds(const struct elf_binary *fx)
{
	for (unsigned mode = 0; mode < 3; mode++) {
		struct buf b = { .n = 0 };
		add(&b, mode, 1);
		for (size_t i = 0; i < fx->nfuncs && b.n < 4000; i++) {
			const struct elf_func *f = &fx->funcs[i];
			for (uint64_t off = 0; off < f->size && off < 48; off += 5) {
				add(&b, 0, 1); /* an IP, as an offset into the image */
				add(&b, f->addr + off - (fx->img_lo - 0x100), 4);
			}
			if (mode == 1 && i + 1 < fx->nfuncs) { /* a stack of 2 */
				add(&b, 1 | (2 << 2), 1);
				for (unsigned k = 0; k < 2; k++) {
					add(&b, f->addr + f->size - 1 - (fx->img_lo - 0x100), 4);
					add(&b, fx->funcs[i + 1].addr - (fx->img_lo - 0x100), 4);
				}
			}
		}
		char name[16];
		snprintf(name, sizeof(name), "mode%u", mode);
		put("profile", name, b.b, b.n);
	}
}

static void procmaps_seed(const struct elf_binary *fx)
{
	size_t len;
	char *maps = slurp("/proc/self/maps", &len);
	struct buf b = { .n = 0 };
	add(&b, 24, 1);			 /* 16 MiB */
	add(&b, 21, 1);			 /* 2 MiB aligned */
	add(&b, (uint64_t)(uintptr_t)&procmaps_seed >> 12, 6); /* near this code */
	add(&b, 2ull << 30, 8);		 /* within 2 GiB */
	if (len > sizeof(b.b) - b.n)
		len = sizeof(b.b) - b.n;
	memcpy(b.b + b.n, maps, len);
	put("procmaps", "self", b.b, b.n + len);
	free(maps);
}

/* BOLT's output for the fixture, and its BAT note. */
static void bolt_seeds(const struct elf_binary *fx, const char *bolt)
{
	char dir[PATH_MAX], profile[PATH_MAX], output[PATH_MAX], log[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/bolt-work", outdir);
	if (mkdir(dir, 0755) && errno != EEXIST)
		die(dir);
	snprintf(profile, sizeof(profile), "%s/p.pa", dir);
	snprintf(output, sizeof(output), "%s/out.bolt", dir);
	snprintf(log, sizeof(log), "%s/bolt.log", dir);
	struct sample_set s = { .event = "cycles" };
	for (size_t i = 0; i < fx->nfuncs; i++)
		if (!strncmp(fx->funcs[i].name, "bx_", 3))
			for (uint64_t off = 0; off < fx->funcs[i].size; off += 3)
				sample_set_push(&s, fx->funcs[i].addr + off);
	struct infer_profile_stats ps;
	struct core_err err = { 0 };
	if (infer_write_hybrid_flags(fx, 0, &s, profile, HYBRID_NO_INFER, &ps, NULL, &err)) {
		fprintf(stderr, "fuzz_seeds: profile: %s\n", err.msg);
		exit(1);
	}
	sample_set_free(&s);
	struct layout_request req = { .bolt_path = bolt, .binary = fixture_path,
		.profile = profile, .output = output, .log_path = log,
		.alloc_vma = fuzz_vma(fx), .timeout_ms = 120000 };
	uint64_t ns;
	if (layout_bolt_run(&req, &ns, &err)) {
		fprintf(stderr, "fuzz_seeds: BOLT: %s\n", err.msg);
		exit(1);
	}
	size_t len;
	void *out = slurp(output, &len);
	put("bolt_output", "out.bolt", out, len);
	free(out);
	int fd = open(output, O_RDONLY);
	Elf *e = fd >= 0 ? elf_begin(fd, ELF_C_READ, NULL) : NULL;
	size_t shstrndx;
	if (!e || elf_getshdrstrndx(e, &shstrndx))
		die(output);
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));) {
		GElf_Shdr sh;
		const char *name = gelf_getshdr(scn, &sh) ? elf_strptr(e, shstrndx, sh.sh_name) : NULL;
		Elf_Data *d = name && !strcmp(name, ".note.bolt_bat") ? elf_getdata(scn, NULL) : NULL;
		if (d && d->d_buf)
			put("bat", "note", d->d_buf, d->d_size);
	}
	elf_end(e);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: fuzz_seeds OUTDIR FIXTURE [LLVM-BOLT]\n");
		return 2;
	}
	outdir = argv[1];
	fixture_path = argv[2];
	if (mkdir(outdir, 0755) && errno != EEXIST)
		die(outdir);
	elf_version(EV_CURRENT);
	const struct elf_binary *fx = fuzz_fixture();
	size_t len;
	void *bin = slurp(fixture_path, &len);
	put("elf", "fixture", bin, len);
	put("bolt_output", "fixture", bin, len);
	free(bin);
	procmaps_seed(fx);
	perf_ring_seeds(fx);
	profile_seeds(fx);
	if (argc > 3 && argv[3][0])
		bolt_seeds(fx, argv[3]);
	char bat[PATH_MAX];
	snprintf(bat, sizeof(bat), "%s/bat", outdir);
	if (mkdir(bat, 0755) && errno != EEXIST)
		die(bat);
	return 0;
}

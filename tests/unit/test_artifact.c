/*
 * The artifact's header (lib/api/artifact.c): what BOLT was told to leave
 * in place is recorded by name, since the --skip-funcs-file that bolt-args
 * names is gone with the round's work directory; names that do not fit
 * leave the count alone, never a shorter list; and an artifact of an older
 * version, without the line, is still applied.
 *
 * argv: unit_fixture (an ELF with a build-id: the build the artifacts are
 * "of"). No BOLT: the "output" is a file of our own bytes.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "core/sha256.h"
#include "check.h"

static char dir[] = "/tmp/ocolos-test-artifact.XXXXXX";
static char output[PATH_MAX], art[PATH_MAX], back[PATH_MAX];
static int warned, named;

static void log_cb(enum ocolos_log_level level, const char *msg, void *user)
{
	(void)user;
	fprintf(stderr, "[%d] %s\n", (int)level, msg);
	if (level == OCOLOS_LOG_WARN && strstr(msg, "do not fit"))
		warned++;
	if (level == OCOLOS_LOG_WARN && strstr(msg, "left in place: "))
		named++;
}

/* The whole file `path` into a malloc'ed string (*n bytes). */
static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	check(f, "cannot read %s", path);
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	rewind(f);
	char *s = malloc((size_t)len + 1);
	check(s && fread(s, 1, (size_t)len, f) == (size_t)len, "cannot read %s", path);
	s[len] = '\0';
	fclose(f);
	*n = (size_t)len;
	return s;
}

/* The header's line starting with `key` (up to its '\n'), or NULL. */
static const char *line_of(const char *head, const char *key, size_t *len)
{
	for (const char *l = head; *l && *l != '\n'; l = strchr(l, '\n') + 1)
		if (!strncmp(l, key, strlen(key))) {
			*len = strcspn(l, "\n");
			return l;
		}
	return NULL;
}

/* Write, check the skip-funcs line is `want` (NULL: any), read back. */
static void round_trip(struct ocolos_ctx *ctx, uint64_t vma, const char *const *names, size_t n,
		       const char *want)
{
	unlink(art);
	check(api_artifact_write(ctx, output, vma, 0x10000, "BOLT test",
				 "-o=/gone/c1.bolt --skip-funcs-file=/gone/bolt-skip-funcs.txt",
				 names, n, art) == 0, "write: %s", ctx->err.msg);
	size_t len, ll = 0;
	char *a = slurp(art, &len);
	const char *end = strstr(a, "\n\n");
	check(end, "no end of header");
	expect(end - a + 2 < 8192, "header of %d bytes: longer than readers take", (int)(end - a + 2));
	const char *l = line_of(a, "skip-funcs=", &ll);
	expect(l && (!want || (ll == strlen(want) && !strncmp(l, want, ll))),
	       "skip-funcs line '%.*s', want '%s'", l ? (int)(ll < 200 ? ll : 200) : 4,
	       l ? l : "none", want ? want : "any");
	/* The line comes before content= and the digest: it is covered. */
	const char *c = line_of(a, "content=", &ll);
	expect(l && c && l < c, "skip-funcs after content=");
	free(a);
	uint64_t v = 0, s = 0;
	expect(api_artifact_read(ctx, art, back, &v, &s) == 0 && v == vma && s == 0x10000,
	       "read back: %s", ctx->err.msg);
}

int main(int argc, char **argv)
{
	check(argc == 2, "usage: %s unit_fixture", argv[0]);
	check(mkdtemp(dir), "mkdtemp");
	snprintf(output, sizeof(output), "%s/c1.bolt", dir);
	snprintf(art, sizeof(art), "%s/a.ocolos", dir);
	snprintf(back, sizeof(back), "%s/back.bolt", dir);
	static struct ocolos_ctx ctx;
	ctx.log = (struct core_log){ log_cb, NULL };
	check(elf_binary_open(argv[1], &ctx.bin, &ctx.err) == 0, "%s", ctx.err.msg);
	check(ctx.bin->build_id_len, "%s has no build-id", argv[1]);
	uint64_t vma = (ctx.bin->img_hi + 0xffff) & ~0xffffull;
	/* Stand-in for BOLT's output: bytes that are not all zero. */
	FILE *f = fopen(output, "wb");
	check(f, "cannot write %s", output);
	for (int i = 0; i < 10000; i++)
		fputc(i % 251, f);
	fclose(f);

	/* BOLT ran again, leaving two in place: both named, in order. */
	const char *two[] = { "h_read", "_ZN2ns1fEv/1" };
	round_trip(&ctx, vma, two, 2, "skip-funcs=2 h_read _ZN2ns1fEv/1");
	expect(!warned && !named, "a warning for names that fit");

	/* BOLT ran once: an explicit none. */
	round_trip(&ctx, vma, NULL, 0, "skip-funcs=0");

	/* 40 names of 400 bytes do not fit 8 KiB: the count alone, the names
	 * in the log, the header still within what readers take. */
	static char big[40][401];
	const char *many[40];
	for (int i = 0; i < 40; i++) {
		memset(big[i], 'a' + i % 26, 400);
		big[i][0] = (char)('A' + i % 26);
		many[i] = big[i];
	}
	round_trip(&ctx, vma, many, 40, "skip-funcs=40");
	expect(warned == 1 && named == 40, "%d warnings, %d names logged", warned, named);

	/* Just below the limit they are all there; a name a space would make
	 * two of is never listed. */
	warned = named = 0;
	round_trip(&ctx, vma, many, 15, NULL);
	size_t n;
	char *a = slurp(art, &n);
	size_t ll;
	const char *l = line_of(a, "skip-funcs=15 ", &ll);
	expect(l && ll == strlen("skip-funcs=15") + 15 * 401, "15 names of 400: '%.40s'",
	       l ? l : "none");
	free(a);
	warned = named = 0;
	const char *spaced[] = { "ok", "operator new" };
	round_trip(&ctx, vma, spaced, 2, "skip-funcs=2");
	expect(warned == 1 && named == 2, "%d warnings, %d names logged", warned, named);

	/* An artifact without the line (older versions) is applied: drop it
	 * and put the digest right. */
	round_trip(&ctx, vma, two, 2, "skip-funcs=2 h_read _ZN2ns1fEv/1");
	a = slurp(art, &n);
	l = line_of(a, "skip-funcs=", &ll);
	check(l, "no skip-funcs line");
	memmove((char *)l, l + ll + 1, n - (size_t)(l + ll + 1 - a) + 1);
	n -= ll + 1;
	char *dig = strstr(a, "\nsha256=") + 1, *body = strstr(a, "\n\n") + 2;
	struct core_sha256 h;
	uint8_t d[32];
	core_sha256_init(&h);
	core_sha256_update(&h, a, (size_t)(dig - a));
	core_sha256_update(&h, body, n - (size_t)(body - a));
	core_sha256_final(&h, d);
	for (int i = 0; i < 32; i++)
		snprintf(dig + 7 + 2 * i, 3, "%02x", d[i]);
	dig[7 + 64] = '\n';
	int fd = open(art, O_WRONLY | O_TRUNC);
	check(fd >= 0 && write(fd, a, n) == (ssize_t)n && close(fd) == 0, "rewrite %s", art);
	free(a);
	uint64_t v = 0, s = 0;
	expect(api_artifact_read(&ctx, art, back, &v, &s) == 0 && v == vma,
	       "an artifact without skip-funcs: %s", ctx.err.msg);

	elf_binary_close(ctx.bin);
	unlink(output);
	unlink(art);
	unlink(back);
	rmdir(dir);
	test_done();
}

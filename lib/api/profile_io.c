/*
 * A round's profile as a file that leaves the process: exported after the
 * sampling window, imported instead of one. One profile of a build serves
 * every instance that runs it (a fleet samples a few and optimizes all),
 * and profiles of several instances merge into one.
 *
 * The format is BOLT's own pre-aggregated profile (the B/F branch records
 * the library hands llvm-bolt, with link-time addresses, so the load bias
 * of the instance that sampled does not matter), gzip-compressed for
 * transport: `zcat FILE` is a file `llvm-bolt -pa -p` reads. What says
 * which binary it belongs to travels in the gzip header's comment field,
 * which zcat skips:
 *
 *     ocolos-profile 1 build-id=<hex> records=<n>
 *
 * Merging is concatenation: BOLT adds the counts of records that repeat.
 * An import is checked before anything is done with it: the gzip stream
 * whole (a truncated transfer is an error, not a smaller profile), the
 * header, the build-id against the binary the process runs, and every
 * line's syntax and counts; any failure is OCOLOS_EBADPROFILE naming the
 * file and the fault. Bare IP samples (OCOLOS_EDGES_BOLT) are not
 * exported: their meaning depends on BOLT's aggregation run.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>
#include <zlib.h>

#include "api/api.h"

#define MAGIC "ocolos-profile 1 "
/* Larger than any profile a window gives (records are aggregated): a file
 * past it is not one of ours. */
#define MAX_PROFILE (512u << 20)
/* A count no window reaches (10^13 branches: hours of a core at 1 GHz,
 * every branch recorded): a sign of a corrupt or hostile file. */
#define MAX_COUNT 10000000000000ull

static void build_id_hex(const struct elf_binary *b, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < b->build_id_len && 2 * i + 2 < size; i++)
		snprintf(out + 2 * i, 3, "%02x", b->build_id[i]);
}

static char *slurp(const char *path, size_t max, size_t *len, struct core_err *err)
{
	FILE *f = fopen(path, "rbe");
	if (!f)
		return core_errf(err, OCOLOS_EIO, "cannot read profile '%s': %s", path,
				 strerror(errno)), NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n < cap)
			break;
		if (cap >= max) {
			free(buf);
			fclose(f);
			return core_errf(err, OCOLOS_EBADPROFILE, "profile '%s' is larger than %u MiB: "
					 "not a profile libocolos wrote", path, (unsigned)(max >> 20)), NULL;
		}
		char *nb = realloc(buf, cap * 2);
		if (!nb) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	fclose(f);
	if (!buf)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory"), NULL;
	*len = n;
	return buf;
}

int api_profile_export(struct ocolos_ctx *ctx, const char *profile, const char *path)
{
	size_t len = 0;
	char *text = slurp(profile, MAX_PROFILE, &len, &ctx->err);
	if (!text)
		return ctx->err.code;
	size_t records = 0;
	for (size_t i = 0; i < len; i++)
		records += text[i] == '\n';
	char bid[160], comment[256];
	build_id_hex(ctx->bin, bid, sizeof(bid));
	snprintf(comment, sizeof(comment), MAGIC "build-id=%s records=%zu", bid[0] ? bid : "none",
		 records);
	z_stream z = { 0 };
	gz_header h = { .os = 3 /* Unix */, .comment = (Bytef *)comment };
	uLong bound = 0;
	unsigned char *out = NULL;
	int rc = 0;
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(text);
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "zlib: cannot start compressing");
	}
	deflateSetHeader(&z, &h);
	bound = deflateBound(&z, (uLong)len) + sizeof(comment) + 64;
	out = malloc(bound);
	if (!out) {
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
		goto done;
	}
	z.next_in = (Bytef *)text;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)bound;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		rc = core_errf(&ctx->err, OCOLOS_EIO, "zlib: compressing the profile failed");
		goto done;
	}
	/* Written whole under a temporary name, then renamed: a reader never
	 * sees half a file under the name it was told. */
	char tmp[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	FILE *f = fopen(tmp, "wbe");
	if (!f || fwrite(out, 1, z.total_out, f) != z.total_out || fclose(f) != 0) {
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write profile '%s': %s", tmp,
			       strerror(errno));
		if (f)
			unlink(tmp);
		goto done;
	}
	if (rename(tmp, path) != 0) {
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot rename '%s' to '%s': %s", tmp, path,
			       strerror(errno));
		unlink(tmp);
		goto done;
	}
	core_logf(&ctx->log, OCOLOS_LOG_INFO, "profile exported to %s: %zu records, %lu bytes",
		  path, records, (unsigned long)z.total_out);
done:
	deflateEnd(&z);
	free(out);
	free(text);
	return rc;
}

/* Every line a B/F record with sane counts. */
static int check_lines(struct ocolos_ctx *ctx, const char *path, const char *t, size_t len,
		       uint64_t *records)
{
	size_t line = 0;
	for (size_t i = 0; i < len;) {
		const char *e = memchr(t + i, '\n', len - i);
		if (!e)
			return core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s': the last line "
					 "has no end: truncated", path);
		line++;
		char kind = t[i], a[40], b[40];
		unsigned long long c = 0, m = 0;
		char buf[160];
		size_t n = (size_t)(e - (t + i));
		if (n >= sizeof(buf))
			return core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s', line %zu: too "
					 "long for a branch record", path, line);
		memcpy(buf, t + i, n);
		buf[n] = '\0';
		int f = sscanf(buf, "%*c %39s %39s %llu %llu", a, b, &c, &m);
		int ok = (kind == 'B' && f == 4) || (kind == 'F' && f == 3);
		for (const char *s = a; ok && *s; s++)
			ok = strchr("0123456789abcdefX:", *s) != NULL;
		for (const char *s = b; ok && *s; s++)
			ok = strchr("0123456789abcdefX:", *s) != NULL;
		if (!ok)
			return core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s', line %zu is not a "
					 "branch record (B FROM TO COUNT MISPRED or F FROM TO COUNT): '%.60s'",
					 path, line, buf);
		if (c > MAX_COUNT || m > c)
			return core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s', line %zu: count "
					 "%llu (mispredicted %llu) is not plausible", path, line, c, m);
		i += n + 1;
	}
	*records = line;
	return 0;
}

int api_profile_import(struct ocolos_ctx *ctx, const char *const *paths, const char *profile,
		       uint64_t *records)
{
	char bid[160];
	build_id_hex(ctx->bin, bid, sizeof(bid));
	if (!bid[0])
		return core_errf(&ctx->err, OCOLOS_EBADPROFILE, "'%s' has no build-id: a profile from "
				 "elsewhere cannot be matched to it (link with -Wl,--build-id)",
				 ctx->bin->path);
	FILE *out = fopen(profile, "we");
	if (!out)
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s': %s", profile,
				 strerror(errno));
	int rc = 0;
	*records = 0;
	for (size_t k = 0; !rc && paths[k]; k++) {
		const char *path = paths[k];
		size_t len = 0;
		char *gz = slurp(path, MAX_PROFILE, &len, &ctx->err);
		if (!gz) {
			rc = ctx->err.code;
			break;
		}
		char comment[256] = "";
		gz_header h = { .comment = (Bytef *)comment, .comm_max = sizeof(comment) - 1 };
		z_stream z = { 0 };
		size_t cap = len * 4 + 4096, n = 0;
		char *text = malloc(cap);
		int zr = text && inflateInit2(&z, 16 + MAX_WBITS) == Z_OK ? Z_OK : Z_MEM_ERROR;
		if (zr == Z_OK) {
			inflateGetHeader(&z, &h);
			z.next_in = (Bytef *)gz;
			z.avail_in = (uInt)len;
			while (zr == Z_OK) {
				if (n == cap) {
					char *nt = cap < MAX_PROFILE ? realloc(text, cap * 2) : NULL;
					if (!nt) {
						zr = Z_MEM_ERROR;
						break;
					}
					text = nt;
					cap *= 2;
				}
				z.next_out = (Bytef *)text + n;
				z.avail_out = (uInt)(cap - n);
				zr = inflate(&z, Z_NO_FLUSH);
				n = cap - z.avail_out;
				if (zr == Z_BUF_ERROR && z.avail_in == 0)
					break; /* input ended before the stream did */
				if (zr == Z_BUF_ERROR)
					zr = Z_OK;
			}
			inflateEnd(&z);
		}
		free(gz);
		char want[200];
		snprintf(want, sizeof(want), "build-id=%s ", bid);
		const char *got = strstr(comment, "build-id=");
		if (zr == Z_MEM_ERROR)
			rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "profile '%s': out of memory (more "
				       "than %u MiB uncompressed?)", path, (unsigned)(MAX_PROFILE >> 20));
		else if (zr != Z_STREAM_END)
			rc = core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s' is not a whole gzip "
				       "stream (%s): truncated or not a profile", path,
				       zr == Z_DATA_ERROR ? "corrupt data" : "it ends early");
		else if (strncmp(comment, MAGIC, strlen(MAGIC)) || !got)
			rc = core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s' has no libocolos "
				       "header (its gzip comment is '%.40s'): export profiles with "
				       "opts.profile_export", path, comment);
		else if (strncmp(got, want, strlen(want)))
			rc = core_errf(&ctx->err, OCOLOS_EBADPROFILE, "profile '%s' is of another build "
				       "(%.*s), not of '%s' (build-id %s): a profile only fits the build "
				       "it was taken on", path, (int)strcspn(got, " "), got,
				       ctx->bin->path, bid);
		uint64_t nrec = 0;
		if (!rc)
			rc = check_lines(ctx, path, text, n, &nrec);
		if (!rc && (fwrite(text, 1, n, out) != n))
			rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s': %s", profile,
				       strerror(errno));
		if (!rc)
			core_logf(&ctx->log, OCOLOS_LOG_INFO, "profile imported from %s: %llu records",
				  path, (unsigned long long)nrec);
		*records += nrec;
		free(text);
	}
	if (fclose(out) != 0 && !rc)
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s': %s", profile,
			       strerror(errno));
	if (!rc && !*records)
		rc = core_errf(&ctx->err, OCOLOS_EBADPROFILE, "the imported profiles hold no branch "
			       "records");
	return rc;
}

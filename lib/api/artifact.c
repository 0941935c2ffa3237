/*
 * One BOLT per build: a round's optimized code as a file that other
 * instances of the same build apply without sampling or running BOLT.
 *
 * What makes one BOLT output run in every instance: its new code is
 * linked for one address, so every instance must map it at the same
 * offset from its load bias (absolute for non-PIE). The round reserves C1
 * at that offset first (inject_fleet_vma(): the image end rounded up to
 * 2 MiB at link time plus the heap's room) in every process, and the
 * artifact records where its code was built for; an instance where that
 * range is taken cannot use it (OCOLOS_ETAKEN: run a local round).
 *
 * The file is a short text header, then BOLT's output ELF unchanged (the
 * round's later stages read it exactly as after a local BOLT run):
 *
 *     ocolos-artifact 1
 *     build-id=<hex>          of the binary BOLT optimized
 *     machine=<e_machine>
 *     vma=0x<hex>             link-time address of the new code
 *     size=0x<hex>            bytes reserved for it
 *     bolt=<version>          what `llvm-bolt --version` says
 *     bolt-args=<args>        the layout run's arguments after the input
 *     skip-funcs=<n> <names>  the n functions BOLT was told to leave in place
 *     content=<bytes>         length of the ELF that follows
 *     sha256=<hex>            of every byte above this line and the ELF
 *     <empty line>
 *     <the ELF>
 *
 * skip-funcs: when keep_c0 could not point a copy's address back at C0,
 * BOLT ran again with --skip-funcs-file=<a file of the work directory>
 * (api/round.c); bolt-args names that file, which is gone, so the names
 * are recorded here. The count comes first so that a list that does not
 * fit can be left out whole (count alone) rather than cut into a wrong
 * one. Older artifacts have no such line.
 *
 * Trust. An artifact is code the target will run, so it is treated like
 * a binary: a file (after symlinks) or a directory holding it that group
 * or others may write (a directory with the sticky bit excepted, as /tmp),
 * or that another user than the caller or root owns, is refused
 * (OCOLOS_EUNTRUSTED) before it is read. The digest is checked over the
 * whole file before anything of it is used; the build-id, machine and
 * addresses before anything is reserved. The digest guards against
 * corruption and truncation on the way, not against whoever could write
 * the file: that is what the ownership check is for (docs/api.md,
 * "Artifacts"). What is not here: signatures.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "arch/cpu.h"
#include "core/sha256.h"

#define MAGIC "ocolos-artifact 1\n"
#define MAX_HEADER 8192
/* Larger than any BOLT output of a program we can optimize. */
#define MAX_CONTENT (4ull << 30)

static void hex(const uint8_t *p, size_t n, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < n && 2 * i + 2 < size; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/*
 * The content: BOLT's output in records of at most BLOCK bytes, each a
 * little-endian u64 file offset, a u32 length (1..BLOCK) and the bytes,
 * ascending; blocks of zeros are left out (BOLT's output places the new
 * code at its link-time address, so most of its hundreds of MiB are a
 * hole); a record with offset = the file's size and length 0 ends it.
 */
#define BLOCK 4096u
#define REC_HEAD 12u

static void put_rec_head(uint8_t *p, uint64_t off, uint32_t len)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(off >> (8 * i));
	for (int i = 0; i < 4; i++)
		p[8 + i] = (uint8_t)(len >> (8 * i));
}

static int all_zero(const uint8_t *p, size_t n)
{
	return !n || (!p[0] && !memcmp(p, p + 1, n - 1));
}

/* Encode the file `in` (`total` bytes) into `out`, hashing every byte
 * written into `h`. 0, or -1 (errno set). *data: bytes of blocks kept.
 * The holes of a sparse file (BOLT's output at a high address is mostly
 * one) are skipped without reading them (SEEK_DATA; where the file system
 * has none, the whole file is data and its zero blocks are found by
 * reading). */
static int encode(int in, uint64_t total, FILE *out, struct core_sha256 *h, uint64_t *data)
{
	uint8_t rec[REC_HEAD + BLOCK];
	*data = 0;
	uint64_t off = 0;
	while (off < total) {
		off_t d = lseek(in, (off_t)off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break; /* only a hole up to the end */
		if (d >= 0 && ((uint64_t)d & ~(uint64_t)(BLOCK - 1)) > off)
			off = (uint64_t)d & ~(uint64_t)(BLOCK - 1);
		off_t e = lseek(in, (off_t)off, SEEK_HOLE);
		uint64_t end = e >= 0 && (uint64_t)e < total ? (uint64_t)e : total;
		if (end <= off)
			end = off + 1; /* at least one block: progress */
		for (; off < end && off < total; off += BLOCK) {
			uint32_t len = total - off < BLOCK ? (uint32_t)(total - off) : BLOCK;
			ssize_t got = pread(in, rec + REC_HEAD, len, (off_t)off);
			if (got != (ssize_t)len) {
				if (got >= 0)
					errno = EIO; /* it shrank while read */
				return -1;
			}
			if (all_zero(rec + REC_HEAD, len))
				continue;
			put_rec_head(rec, off, len);
			core_sha256_update(h, rec, REC_HEAD + len);
			if (fwrite(rec, 1, REC_HEAD + len, out) != REC_HEAD + len)
				return -1;
			*data += len;
		}
	}
	put_rec_head(rec, total, 0);
	core_sha256_update(h, rec, REC_HEAD);
	return fwrite(rec, 1, REC_HEAD, out) == REC_HEAD ? 0 : -1;
}

/* Decode records from `in` into the file `out` (sparse), hashing what is
 * read into `h`, for a file of at most `max` bytes. 0; -1 read/write
 * error (errno); 1 malformed or truncated (*why says how). *total: the
 * file's size as the end record says. */
static int decode(FILE *in, int out, uint64_t max, struct core_sha256 *h, uint64_t *total,
		  const char **why)
{
	uint8_t rec[REC_HEAD + BLOCK];
	uint64_t next = 0;
	for (;;) {
		size_t got = fread(rec, 1, REC_HEAD, in);
		if (got != REC_HEAD) {
			*why = "it ends before its last record: truncated";
			return ferror(in) ? -1 : 1;
		}
		core_sha256_update(h, rec, REC_HEAD);
		uint64_t off = 0;
		uint32_t len = 0;
		for (int i = 0; i < 8; i++)
			off |= (uint64_t)rec[i] << (8 * i);
		for (int i = 0; i < 4; i++)
			len |= (uint32_t)rec[8 + i] << (8 * i);
		if (off < next || off > max || len > BLOCK || len > max - off) {
			*why = "a record is out of order or out of bounds: malformed";
			return 1;
		}
		if (!len) {
			*total = off;
			if (fgetc(in) != EOF) {
				*why = "bytes follow its last record";
				return 1;
			}
			return ftruncate(out, (off_t)off) ? -1 : 0;
		}
		if (fread(rec + REC_HEAD, 1, len, in) != len) {
			*why = "it ends inside a record: truncated";
			return ferror(in) ? -1 : 1;
		}
		core_sha256_update(h, rec + REC_HEAD, len);
		if (pwrite(out, rec + REC_HEAD, len, (off_t)off) != (ssize_t)len)
			return -1;
		next = off + len;
	}
}

/* A name the skip-funcs line can hold unambiguously: no separator, no
 * line break, nothing a terminal would act on. */
static int listable(const char *name)
{
	if (!*name)
		return 0;
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			return 0;
	return 1;
}

/* The skip-funcs line into `out` (`size` bytes): the count and the names,
 * or the count alone (*whole 0) when a name is not listable or they do not
 * fit. Its length, or -1 when not even the count fits. */
static int skip_line(char *out, size_t size, const char *const *names, size_t n, int *whole)
{
	int m = snprintf(out, size, "skip-funcs=%zu", n);
	if (m < 0 || (size_t)m + 2 > size)
		return -1;
	size_t k = (size_t)m;
	*whole = 1;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]);
		if (!listable(names[i]) || len > size || k + 1 + len + 2 > size) {
			*whole = 0;
			k = (size_t)m;
			break;
		}
		out[k++] = ' ';
		memcpy(out + k, names[i], len);
		k += len;
	}
	out[k++] = '\n';
	out[k] = '\0';
	return (int)k;
}

int api_artifact_write(struct ocolos_ctx *ctx, const char *output, uint64_t vma, uint64_t size,
		       const char *bolt_version, const char *bolt_args, const char *const *skipped,
		       size_t nskipped, const char *path)
{
	const struct elf_binary *b = ctx->bin;
	char bid[160];
	hex(b->build_id, b->build_id_len, bid, sizeof(bid));
	if (!bid[0])
		return core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "'%s' has no build-id: an artifact "
				 "of it could not be matched to the build it fits (link with "
				 "-Wl,--build-id)", b->path);
	FILE *in = fopen(output, "rbe");
	struct stat st;
	if (!in || fstat(fileno(in), &st) != 0) {
		int e = errno;
		if (in)
			fclose(in);
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot read BOLT's output '%s': %s", output,
				 strerror(e));
	}
	/* The header stays within what every reader takes (MAX_HEADER, the
	 * digest line and the empty one after it included): the skip-funcs
	 * names get what the other lines leave. */
	char head[MAX_HEADER], tail[64];
	int hl = snprintf(head, sizeof(head), MAGIC "build-id=%s\nmachine=%u\nvma=0x%" PRIx64
			  "\nsize=0x%" PRIx64 "\nbolt=%s\nbolt-args=%s\n", bid,
			  (unsigned)b->machine, vma, size, bolt_version, bolt_args);
	int tl = snprintf(tail, sizeof(tail), "content=%llu\n", (unsigned long long)st.st_size);
	int whole = 1;
	if (hl >= 0 && tl >= 0 && (size_t)hl + (size_t)tl < sizeof(head) - 100) {
		size_t room = sizeof(head) - 100 - (size_t)hl - (size_t)tl;
		int sl = skip_line(head + hl, room, skipped, nskipped, &whole);
		hl = sl < 0 ? -1 : hl + sl + snprintf(head + hl + sl, (size_t)tl + 1, "%s", tail);
	} else {
		hl = -1;
	}
	if (hl < 0 || (size_t)hl >= sizeof(head) - 100 || strchr(bolt_args, '\n') ||
	    strchr(bolt_version, '\n') || (uint64_t)st.st_size > MAX_CONTENT) {
		fclose(in);
		return core_errf(&ctx->err, OCOLOS_EINVAL, "the artifact's header would be longer than "
				 "%d bytes or hold a line break, or BOLT's output is over %llu GiB: "
				 "shorten opts.bolt_extra_args", MAX_HEADER - 100,
				 (unsigned long long)(MAX_CONTENT >> 30));
	}
	/* Written whole under a temporary name, then renamed: a reader never
	 * sees half a file under the name it was told. The digest comes after
	 * the content is hashed, so it is written last, at its place. */
	char tmp[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!out) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		fclose(in);
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot write artifact '%s': %s", tmp,
				 strerror(e));
	}
	struct core_sha256 h;
	core_sha256_init(&h);
	core_sha256_update(&h, head, (size_t)hl);
	char line[7 + 64 + 2 + 1]; /* "sha256=<hex>\n\n" */
	memset(line, '0', sizeof(line));
	uint64_t data = 0;
	int rc = 0;
	errno = 0;
	if (fwrite(head, 1, (size_t)hl, out) != (size_t)hl ||
	    fwrite(line, 1, sizeof(line) - 1, out) != sizeof(line) - 1 ||
	    encode(fileno(in), (uint64_t)st.st_size, out, &h, &data) || fflush(out))
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write artifact '%s': %s", tmp,
			       strerror(errno ? errno : EIO));
	uint8_t d[32];
	core_sha256_final(&h, d);
	memcpy(line, "sha256=", 7);
	hex(d, sizeof(d), line + 7, sizeof(line) - 7);
	line[7 + 64] = '\n';
	line[7 + 64 + 1] = '\n';
	if (!rc && pwrite(fd, line, sizeof(line) - 1, hl) != (ssize_t)sizeof(line) - 1)
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write artifact '%s': %s", tmp,
			       strerror(errno));
	fclose(in);
	if (fclose(out) != 0 && !rc)
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write artifact '%s': %s", tmp,
			       strerror(errno));
	if (!rc && rename(tmp, path) != 0)
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot rename '%s' to '%s': %s", tmp, path,
			       strerror(errno));
	if (rc) {
		unlink(tmp);
		return rc;
	}
	core_logf(&ctx->log, OCOLOS_LOG_INFO, "artifact written to %s: BOLT output of %llu bytes "
		  "(%llu not zero) for 0x%llx (+0x%llx), sha256 %.16s...", path,
		  (unsigned long long)st.st_size, (unsigned long long)data, (unsigned long long)vma,
		  (unsigned long long)size, line + 7);
	if (!whole) {
		/* The log is then the only record of them. */
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "artifact %s: the names of the %zu functions "
			  "BOLT left in place do not fit its header (or one holds a space or control "
			  "character): it records their number only (skip-funcs=%zu); they follow",
			  path, nskipped, nskipped);
		for (size_t i = 0; i < nskipped; i++)
			core_logf(&ctx->log, OCOLOS_LOG_WARN, "artifact %s: left in place: %s", path,
				  skipped[i]);
	}
	return 0;
}

/* A file or directory that only the caller (or root) can change. */
static int trusted(const struct stat *st, int is_dir)
{
	uid_t me = geteuid();
	if (st->st_uid != me && st->st_uid != 0)
		return 0;
	if (!(st->st_mode & (S_IWGRP | S_IWOTH)))
		return 1;
	return is_dir && (st->st_mode & S_ISVTX); /* others may add, not replace */
}

/* Open the artifact `path` if it can be trusted (see the top). */
static int open_trusted(struct ocolos_ctx *ctx, const char *path, int *fd)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot read artifact '%s': %s", path,
				 strerror(errno));
	*fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st, dst;
	if (*fd < 0 || fstat(*fd, &st) != 0) {
		int e = errno;
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot read artifact '%s': %s", path,
				 strerror(e));
	}
	char *slash = strrchr(real, '/');
	const char *why = NULL;
	if (!S_ISREG(st.st_mode)) {
		close(*fd);
		*fd = -1;
		return core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s' is not a regular "
				 "file", path);
	}
	if (!trusted(&st, 0))
		why = st.st_mode & (S_IWGRP | S_IWOTH) ? "is writable by group or others"
						       : "is owned by another user";
	if (!why && slash) {
		*slash = '\0';
		if (stat(real[0] ? real : "/", &dst) != 0)
			why = "has a directory that cannot be read";
		else if (!trusted(&dst, 1))
			why = dst.st_uid != geteuid() && dst.st_uid != 0
			      ? "is in a directory owned by another user"
			      : "is in a directory writable by group or others";
	}
	if (!why)
		return 0;
	close(*fd);
	*fd = -1;
	return core_errf(&ctx->err, OCOLOS_EUNTRUSTED,
			 "artifact '%s' %s: it is code this process would run, so it must be "
			 "writable only by its owner (you or root), in such a directory; fix its "
			 "permissions (chmod go-w) or owner, or run a local round", path, why);
}

/* The header's value of `key` ("vma="), as text into `out`. */
static int field(const char *head, const char *key, char *out, size_t size)
{
	for (const char *l = head; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, key, strlen(key))) {
			const char *v = l + strlen(key);
			size_t n = strcspn(v, "\n");
			if (n >= size)
				return -1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 0;
		}
	return -1;
}

static int field_u64(const char *head, const char *key, uint64_t *v)
{
	char s[40], *end;
	if (field(head, key, s, sizeof(s)) || !s[0])
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 0);
	return *end || errno ? -1 : 0;
}

/* Read and check the header from `fd` (left at the content's start). */
static int read_header(struct ocolos_ctx *ctx, const char *path, int fd, char *head,
		       size_t *hlen, size_t *dlen)
{
	ssize_t got = pread(fd, head, MAX_HEADER - 1, 0);
	if (got < 0)
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot read artifact '%s': %s", path,
				 strerror(errno));
	head[got] = '\0';
	if ((size_t)got < strlen(MAGIC) || memcmp(head, MAGIC, strlen(MAGIC)))
		return core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "'%s' is not an artifact libocolos "
				 "wrote (no '%.*s' line): write artifacts with opts.artifact_out",
				 path, (int)strlen(MAGIC) - 1, MAGIC);
	char *end = memmem(head, (size_t)got, "\n\n", 2);
	char *dig = end ? memmem(head, (size_t)(end - head) + 1, "\nsha256=", 8) : NULL;
	if (!end || !dig || end - (dig + 8) != 64)
		return core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s': its header has no "
				 "end or no digest line: truncated or malformed", path);
	*dlen = (size_t)(dig + 1 - head); /* the digest covers the header before its line */
	*hlen = (size_t)(end + 2 - head);
	end[1] = '\0';
	if (lseek(fd, (off_t)*hlen, SEEK_SET) < 0)
		return core_errf(&ctx->err, OCOLOS_EIO, "cannot read artifact '%s': %s", path,
				 strerror(errno));
	return 0;
}

int api_artifact_read(struct ocolos_ctx *ctx, const char *path, const char *output,
		      uint64_t *vma, uint64_t *size)
{
	const struct elf_binary *b = ctx->bin;
	int fd = -1;
	int rc = open_trusted(ctx, path, &fd);
	if (rc)
		return rc;
	char *head = malloc(MAX_HEADER);
	if (!head) {
		close(fd);
		return core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	}
	size_t hlen = 0, dlen = 0;
	rc = read_header(ctx, path, fd, head, &hlen, &dlen);
	int out = -1;
	uint64_t n = 0, content = 0, machine = 0;
	struct core_sha256 h;
	uint8_t d[32];
	char want[65], got[65];
	if (!rc && (out = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s': %s", output, strerror(errno));
	FILE *in = NULL;
	if (!rc && !(in = fdopen(fd, "rb")))
		rc = core_errf(&ctx->err, OCOLOS_ENOMEM, "out of memory");
	if (!rc) {
		/* The digest first: nothing of the header is believed before it
		 * (its size only bounds what is written to our own file). */
		const char *why = "";
		if (field_u64(head, "content=", &content) || content > MAX_CONTENT)
			content = MAX_CONTENT;
		core_sha256_init(&h);
		core_sha256_update(&h, head, dlen);
		int cr = decode(in, out, content, &h, &n, &why);
		core_sha256_final(&h, d);
		hex(d, sizeof(d), got, sizeof(got));
		if (field(head, "sha256=", want, sizeof(want)))
			want[0] = '\0';
		if (cr < 0)
			rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot copy artifact '%s' to '%s': %s",
				       path, output, strerror(errno));
		else if (cr > 0)
			rc = core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s': %s; copy it again "
				       "from where it was written", path, why);
		else if (strcmp(want, got))
			rc = core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s' does not match its "
				       "digest (sha256 %.16s..., recorded %.16s...): it was altered or "
				       "damaged; copy it again from where it was written", path, got, want);
		else if (n != content)
			rc = core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s' holds %llu bytes "
				       "of BOLT output where its header says %llu: malformed", path,
				       (unsigned long long)n, (unsigned long long)content);
	}
	if (out >= 0 && close(out) != 0 && !rc)
		rc = core_errf(&ctx->err, OCOLOS_EIO, "cannot write '%s': %s", output, strerror(errno));
	if (in)
		fclose(in);
	else
		close(fd);
	char bid[160], abid[160];
	hex(b->build_id, b->build_id_len, bid, sizeof(bid));
	if (!rc && field(head, "build-id=", abid, sizeof(abid)))
		abid[0] = '\0';
	if (!rc && (!bid[0] || strcmp(abid, bid)))
		rc = core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s' is of another build "
			       "(build-id %s), not of '%s' (build-id %s): an artifact only fits the "
			       "build it was made on", path, abid[0] ? abid : "none", b->path,
			       bid[0] ? bid : "none");
	uint64_t page = arch_page_size();
	if (!rc && (field_u64(head, "machine=", &machine) || machine != b->machine ||
		    field_u64(head, "vma=", vma) || field_u64(head, "size=", size) ||
		    !*size || (*vma | *size) & (page - 1) || *vma < b->img_hi ||
		    *vma + *size < *vma || *vma + *size - b->img_lo > (uint64_t)INT32_MAX))
		rc = core_errf(&ctx->err, OCOLOS_EBADARTIFACT, "artifact '%s': its machine or address "
			       "range (vma, size) is not one libocolos can place for '%s'", path,
			       b->path);
	if (!rc) {
		char bolt[256];
		if (field(head, "bolt=", bolt, sizeof(bolt)))
			snprintf(bolt, sizeof(bolt), "?");
		core_logf(&ctx->log, OCOLOS_LOG_INFO, "artifact %s: %llu bytes of BOLT output (%s) "
			  "for 0x%llx (+0x%llx), digest and build-id match", path,
			  (unsigned long long)n, bolt, (unsigned long long)*vma,
			  (unsigned long long)*size);
	}
	free(head);
	return rc;
}

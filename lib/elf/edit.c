/*
 * Editing a copy of an ELF file: today one edit, extending the highest
 * PT_LOAD's p_memsz (BOLT 19 derives where new code goes from it; see
 * layout/placement.c). The copy is byte for byte the original except that
 * one program header field: libelf is told the layout is ours
 * (ELF_F_LAYOUT), so it moves nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf/edit.h"

/* Copy `src` to `dst` (0600) byte for byte. */
static int copy_file(const char *src, const char *dst, struct core_err *err)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return core_errf(err, OCOLOS_EIO, "cannot open '%s': %s", src, strerror(errno));
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t bufsz = 1u << 20;
	char *buf = malloc(bufsz);
	int rc = 0;
	if (out < 0 || !buf) {
		rc = core_errf(err, out < 0 ? OCOLOS_EIO : OCOLOS_ENOMEM, "cannot create '%s': %s",
			       dst, out < 0 ? strerror(errno) : "out of memory");
		goto done;
	}
	for (;;) {
		ssize_t n = read(in, buf, bufsz);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				rc = core_errf(err, OCOLOS_EIO, "reading '%s': %s", src, strerror(errno));
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = core_errf(err, OCOLOS_EIO, "writing '%s': %s (is the work directory's "
					       "file system full? set opts.tmp_dir)", dst, strerror(errno));
				goto done;
			}
			off += w;
		}
	}
done:
	free(buf);
	if (out >= 0 && close(out) != 0 && !rc)
		rc = core_errf(err, OCOLOS_EIO, "writing '%s': %s", dst, strerror(errno));
	close(in);
	return rc;
}

int elf_copy_with_load_end(const char *src, const char *dst, uint64_t end, struct core_err *err)
{
	int rc = copy_file(src, dst, err);
	if (rc)
		return rc;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return core_errf(err, OCOLOS_EELF, "libelf is too old: %s", elf_errmsg(-1));
	int fd = open(dst, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return core_errf(err, OCOLOS_EIO, "cannot open '%s': %s", dst, strerror(errno));
	Elf *e = elf_begin(fd, ELF_C_RDWR, NULL);
	size_t phnum = 0;
	if (!e || elf_kind(e) != ELF_K_ELF || gelf_getclass(e) != ELFCLASS64 ||
	    elf_getphdrnum(e, &phnum) != 0) {
		rc = core_errf(err, OCOLOS_EELF, "'%s' is not a 64-bit ELF file with program headers",
			       src);
		goto done;
	}
	int top = -1;
	GElf_Phdr ph, best = { 0 };
	for (size_t i = 0; i < phnum; i++)
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD &&
		    (top < 0 || ph.p_vaddr + ph.p_memsz > best.p_vaddr + best.p_memsz)) {
			top = (int)i;
			best = ph;
		}
	if (top < 0 || best.p_vaddr + best.p_memsz > end) {
		rc = core_errf(err, OCOLOS_EINVAL, "internal: '%s' cannot end at 0x%llx: its image "
			       "reaches beyond", src, (unsigned long long)end);
		goto done;
	}
	best.p_memsz = end - best.p_vaddr;
	elf_flagelf(e, ELF_C_SET, ELF_F_LAYOUT);
	if (!gelf_update_phdr(e, top, &best) || elf_update(e, ELF_C_WRITE) < 0)
		rc = core_errf(err, OCOLOS_EIO, "writing the program headers of '%s': %s", dst,
			       elf_errmsg(-1));
done:
	if (e)
		elf_end(e);
	close(fd);
	return rc;
}

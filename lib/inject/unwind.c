/*
 * C1's unwind tables: which of its FDEs to register, and registering them
 * with the process's unwinder (libgcc_s, which libstdc++ and glibc's
 * backtrace() use). C1 lies outside every loaded object's PT_LOAD ranges,
 * so the unwinder's dl_iterate_phdr lookup never finds it; frames
 * registered by address are searched as well — and first.
 *
 * BOLT's new .eh_frame describes every function of its output, including
 * the ones it did not move, at their C0 addresses, and moved functions at
 * their old addresses with tables that may no longer match C0's code. Since
 * registered frames win over the binary's own .eh_frame_hdr, registering
 * those would break unwinding through C0 (after a revert, or in a thread
 * still in C0). So only FDEs whose code lies in C1 are registered.
 *
 * So a new .eh_frame is built: the FDEs of C1 and the CIEs they use,
 * copied next to C1 in the reservation with their pc-relative pointers
 * (code start, LSDA, personality) re-based to the new place, and the zero
 * terminator __register_frame() needs (BOLT's has none: its .eh_frame_hdr
 * follows it). (__register_frame_table() would not do: each of its entries
 * must itself be a terminated list of FDEs.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "core/procmaps.h"
#include "inject/inject.h"
#include "proc/proc.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif


#define DW_EH_PE_omit 0xff

static uint64_t uleb(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
	}
	return v;
}

/* Size of a pointer in encoding `enc` (0 if unsupported). */
static int enc_size(uint8_t enc)
{
	switch (enc & 0x0f) {
	case 0x00: case 0x04: case 0x0c: return 8; /* absptr, udata8, sdata8 */
	case 0x02: case 0x0a: return 2;
	case 0x03: case 0x0b: return 4;
	default: return 0;
	}
}

/* Read a pointer of encoding `enc` at `p`, whose run-time address is `at`. */
static int read_ptr(const uint8_t *p, uint8_t enc, uint64_t at, uint64_t *out)
{
	int n = enc_size(enc);
	int64_t v = 0;
	if (n == 8) {
		memcpy(&v, p, 8);
	} else if (n == 4) {
		int32_t s; uint32_t u;
		memcpy(&s, p, 4); memcpy(&u, p, 4);
		v = (enc & 0x08) ? s : (int64_t)u;
	} else if (n == 2) {
		int16_t s; uint16_t u;
		memcpy(&s, p, 2); memcpy(&u, p, 2);
		v = (enc & 0x08) ? s : (int64_t)u;
	} else {
		return -1;
	}
	switch (enc & 0x70) {
	case 0x00: *out = (uint64_t)v; return 0;		/* absolute */
	case 0x10: *out = at + (uint64_t)v; return 0;		/* pc-relative */
	default: return -1;
	}
}

/* Where the pointer fields of a CIE's augmentation data are. */
struct cie_info {
	uint8_t fde_enc, lsda_enc, pers_enc;
	uint64_t pers_off;	/* offset of the personality pointer in the CIE, or 0 */
	int has_z;
};

static int parse_cie(const uint8_t *cie, const uint8_t *end, struct cie_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	ci->lsda_enc = ci->pers_enc = DW_EH_PE_omit;
	const uint8_t *p = cie + 8; /* length, id */
	uint8_t version = *p++;
	const char *aug = (const char *)p;
	p += strnlen(aug, (size_t)(end - p)) + 1;
	uleb(&p, end); /* code alignment */
	uleb(&p, end); /* data alignment (an sleb skips alike) */
	if (version == 1)
		p++;   /* return address register */
	else
		uleb(&p, end);
	if (aug[0] != 'z')
		return aug[0] ? -1 : 0; /* unknown augmentation without 'z' */
	ci->has_z = 1;
	uleb(&p, end);
	for (const char *a = aug + 1; *a; a++) {
		if (p >= end)
			return -1;
		if (*a == 'R') {
			ci->fde_enc = *p++;
		} else if (*a == 'L') {
			ci->lsda_enc = *p++;
		} else if (*a == 'P') {
			ci->pers_enc = *p++;
			ci->pers_off = (uint64_t)(p - cie);
			if (!enc_size(ci->pers_enc))
				return -1;
			p += enc_size(ci->pers_enc);
		} else if (*a != 'S' && *a != 'B') {
			return -1;
		}
	}
	return 0;
}

/* Move a pointer field of encoding `enc` from run-time address `from` to
 * `to`: pc-relative values are re-based; absolute ones stay. */
static int move_ptr(uint8_t *field, uint8_t enc, uint64_t from, uint64_t to)
{
	if ((enc & 0x70) != 0x10)
		return (enc & 0x70) == 0x00 ? 0 : -1;
	uint64_t target;
	if (read_ptr(field, enc, from, &target))
		return -1;
	int64_t d = (int64_t)(target - to);
	if (enc_size(enc) == 8) {
		memcpy(field, &d, 8);
	} else if (enc_size(enc) == 4 && d >= INT32_MIN && d <= INT32_MAX) {
		int32_t d32 = (int32_t)d;
		memcpy(field, &d32, 4);
	} else {
		return -1;
	}
	return 0;
}

struct ehf_builder {
	uint8_t *buf;
	size_t len, cap;
	uint64_t new_addr;	/* run-time address buf will live at */
	uint64_t *cie_old, *cie_new; /* copied CIEs: old eh offset -> new buf offset */
	size_t ncie;
};

static int ehf_append(struct ehf_builder *b, const uint8_t *rec, size_t n)
{
	if (b->len + n + 4 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
		uint8_t *g = realloc(b->buf, cap);
		if (!g)
			return -1;
		b->buf = g;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, rec, n);
	b->len += n;
	return 0;
}

/* New offset of the CIE at old offset `off`, copying it on first use. */
static long ehf_cie(struct ehf_builder *b, const uint8_t *eh, uint64_t eh_addr, uint64_t off,
		    const struct cie_info *ci)
{
	for (size_t i = 0; i < b->ncie; i++)
		if (b->cie_old[i] == off)
			return (long)b->cie_new[i];
	uint32_t len;
	memcpy(&len, eh + off, 4);
	uint64_t at = b->len;
	uint64_t *o = realloc(b->cie_old, (b->ncie + 1) * sizeof(*o));
	if (o)
		b->cie_old = o;
	uint64_t *nw = o ? realloc(b->cie_new, (b->ncie + 1) * sizeof(*nw)) : NULL;
	if (!o || !nw || ehf_append(b, eh + off, 4 + len))
		return -1;
	b->cie_new = nw;
	if (ci->pers_off && move_ptr(b->buf + at + ci->pers_off, ci->pers_enc,
				     eh_addr + off + ci->pers_off, b->new_addr + at + ci->pers_off))
		return -1;
	b->cie_old[b->ncie] = off;
	b->cie_new[b->ncie++] = at;
	return (long)at;
}

/* Copy the FDE at `off` and re-base its pointers. */
static int ehf_fde(struct ehf_builder *b, const uint8_t *eh, uint64_t eh_addr, uint64_t off,
		   uint64_t cie_off, const struct cie_info *ci)
{
	long cie_new = ehf_cie(b, eh, eh_addr, cie_off, ci);
	if (cie_new < 0)
		return -1;
	uint32_t len;
	memcpy(&len, eh + off, 4);
	uint64_t at = b->len;
	if (ehf_append(b, eh + off, 4 + len))
		return -1;
	uint8_t *f = b->buf + at;
	uint32_t id = (uint32_t)(at + 4 - (uint64_t)cie_new);
	memcpy(f + 4, &id, 4);
	if (move_ptr(f + 8, ci->fde_enc, eh_addr + off + 8, b->new_addr + at + 8))
		return -1;
	if (ci->has_z && ci->lsda_enc != DW_EH_PE_omit) {
		const uint8_t *p = f + 8 + 2 * enc_size(ci->fde_enc);
		uleb(&p, f + 4 + len); /* augmentation data length */
		uint64_t lo = (uint64_t)(p - f);
		if (move_ptr(f + lo, ci->lsda_enc, eh_addr + off + lo, b->new_addr + at + lo))
			return -1;
	}
	return 0;
}

int inject_build_eh_frame(const uint8_t *eh, uint64_t size, uint64_t eh_addr, uint64_t lo,
			  uint64_t hi, uint64_t new_addr, uint8_t **out, size_t *out_len,
			  size_t *fdes)
{
	struct ehf_builder b = { .new_addr = new_addr };
	int rc = 0;
	*fdes = 0;
	for (uint64_t off = 0; off + 8 <= size && !rc;) {
		uint32_t len, id;
		memcpy(&len, eh + off, 4);
		if (len == 0 || len == 0xffffffffu || off + 4 + len > size)
			break; /* end, 64-bit DWARF (not produced by BOLT), or truncated */
		memcpy(&id, eh + off + 4, 4);
		struct cie_info ci;
		uint64_t cie_off = off + 4 - id, pc;
		if (id != 0 && id <= off + 4 && !parse_cie(eh + cie_off, eh + size, &ci) &&
		    !read_ptr(eh + off + 8, ci.fde_enc, eh_addr + off + 8, &pc) && pc >= lo && pc < hi) {
			rc = ehf_fde(&b, eh, eh_addr, off, cie_off, &ci) ? OCOLOS_ENOMEM : 0;
			*fdes += !rc;
		}
		off += 4 + len;
	}
	static const uint8_t zero[4];
	if (!rc && ehf_append(&b, zero, 4)) /* the terminator __register_frame needs */
		rc = OCOLOS_ENOMEM;
	free(b.cie_old);
	free(b.cie_new);
	if (rc) {
		free(b.buf);
		return rc;
	}
	*out = b.buf;
	*out_len = b.len;
	return 0;
}

/* C1's .eh_frame as BOLT wrote it (malloc'ed), from the output file. */
static uint8_t *read_eh_frame(const struct bolt_output *o, struct core_err *err)
{
	for (size_t i = 0; i < o->nsegs; i++) {
		const struct elf_segment *s = &o->segs[i];
		if (o->eh_frame < s->vaddr || o->eh_frame - s->vaddr > s->filesz ||
		    o->eh_frame_size > s->filesz - (o->eh_frame - s->vaddr))
			continue;
		uint8_t *eh = malloc(o->eh_frame_size ? o->eh_frame_size : 1);
		if (eh && pread(o->fd, eh, o->eh_frame_size, (off_t)(s->offset + o->eh_frame - s->vaddr)) ==
			  (ssize_t)o->eh_frame_size)
			return eh;
		free(eh);
		core_errf(err, OCOLOS_EIO, "cannot read C1's .eh_frame from BOLT's output");
		return NULL;
	}
	core_errf(err, OCOLOS_EBOLT, "BOLT's new .eh_frame is not in its new segments");
	return NULL;
}

int inject_unwind_register(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
			   uint32_t gen, struct inject_reservation *r, uint64_t *used,
			   uint64_t *handle, struct core_err *err)
{
	return inject_unwind_register_hook(t, o, bias, gen, r, used, handle, NULL, NULL, err);
}

int inject_unwind_register_hook(struct proc_target *t, const struct bolt_output *o,
				uint64_t bias, uint32_t gen, struct inject_reservation *r,
				uint64_t *used, uint64_t *handle,
				int (*before)(void *arg, uint64_t handle), void *arg,
				struct core_err *err)
{
	char name[32];
	snprintf(name, sizeof(name), "ocolos-c%u-unwind", gen);
	*handle = 0;
	if (!o->eh_frame)
		return 0;
	uint8_t *eh = read_eh_frame(o, err);
	if (!eh)
		return err->code;
	uint64_t page = arch_page_size(); /* 64 KiB on some AArch64 kernels */
	uint64_t at = (r->addr + *used + page - 1) & ~(page - 1);
	uint8_t *buf = NULL;
	size_t len = 0, n = 0;
	int rc = 0;
	if (inject_build_eh_frame(eh, o->eh_frame_size, bias + o->eh_frame, bias + o->lo,
				  bias + o->hi, at, &buf, &len, &n))
		rc = core_errf(err, OCOLOS_ENOTSUP, "C1's .eh_frame could not be rebuilt (an "
			       "encoding this library does not handle)");
	free(eh);
	uint64_t pages = (len + page - 1) & ~(page - 1);
	/* One more page, read-write, for the unwinder's record of the table
	 * (libgcc's `struct object`, handed to __register_frame_info). Were
	 * libgcc to malloc it (__register_frame), it would sit in the
	 * program's heap, and its first word — the lowest PC of the table,
	 * once an exception has searched it — would keep the version from
	 * ever being retired (the retirement scan reads the heap by pid).
	 * Here it is the library's own mapping, which the scan leaves out. */
	uint64_t obj = at + pages;
	if (!rc && n && obj + page > r->addr + r->size)
		rc = core_errf(err, OCOLOS_ERESERVE, "no room after C1 for its unwind table");
	if (!rc && n)
		rc = t->ops->map_fill(t, at, pages, PROT_READ, buf, len, name, err);
	free(buf);
	if (!rc && n) {
		static const uint8_t zero[64];
		snprintf(name, sizeof(name), "ocolos-c%u-unwind-obj", gen);
		rc = t->ops->map_fill(t, obj, page, PROT_READ | PROT_WRITE, zero, sizeof(zero), name,
				      err);
	}
	if (!rc && n && before)
		rc = before(arg, at);
	if (!rc && n) {
		rc = t->ops->call_lib(t, "libgcc_s.so.1", "__register_frame_info", at, obj, err);
		if (rc == PROC_CALL_NOT_MADE) /* nothing registered; err says why */
			rc = err->code ? err->code : OCOLOS_ETIMEDOUT;
		else if (rc < 0)
			*handle = at; /* started: registered or not, nobody knows */
		if (rc == 1) {
			core_logf(t->log, OCOLOS_LOG_INFO,
				  "process %d has no libgcc_s loaded: C1's unwind tables are not "
				  "registered (a C program without exceptions does not need them)",
				  (int)t->pid);
			return 0; /* the unused table is trimmed with the reservation */
		}
	}
	if (rc || !n)
		return rc;
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer scans the heap, stacks and globals, not our mappings:
	 * the sorted FDE vector libgcc allocates and hangs on this record
	 * would look leaked. Never unregistered: LSan scans only what is
	 * mapped, and a later version at the address registers it again. */
	if (t->ops == &proc_target_self_ops)
		__lsan_register_root_region((void *)(uintptr_t)obj, page);
#endif
	*used = obj + page - r->addr;
	*handle = at;
	core_logf(t->log, OCOLOS_LOG_DEBUG, "registered %zu FDEs of C1 with process %d's unwinder",
		  n, (int)t->pid);
	return 0;
}

/* The object handed to libgcc with the table at `handle`: the mapping
 * right after the table's (inject_unwind_register_hook). 0 if not found. */
static uint64_t object_of(struct proc_target *t, uint64_t handle)
{
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	uint64_t obj = 0;
	if (core_procmaps_read(t->pid, &m, &ignore))
		return 0;
	for (size_t i = 0; i + 1 < m.n; i++)
		if (m.v[i].start == handle && m.v[i + 1].start == m.v[i].end &&
		    strstr(m.v[i + 1].path, "-unwind-obj"))
			obj = m.v[i + 1].start;
	core_procmaps_free(&m);
	return obj;
}

int inject_unwind_deregister(struct proc_target *t, uint64_t handle, struct core_err *err)
{
	if (!handle)
		return 0;
	/* By pid: not while the malloc lock it will take is held (proc.h). */
	t->call_lock = t->ops != &proc_target_self_ops
			       ? proc_free_lock(t->pid, t->memfd, object_of(t, handle))
			       : 0;
	if (t->call_lock)
		core_logf(t->log, OCOLOS_LOG_DEBUG, "deregistering the table at 0x%llx: its free() "
			  "takes the lock of the malloc arena at 0x%llx", (unsigned long long)handle,
			  (unsigned long long)t->call_lock);
	int rc = t->ops->call_lib(t, "libgcc_s.so.1", "__deregister_frame_info", handle, 0, err);
	t->call_lock = 0;
	if (rc == 0)
		return 0;
	/* 1: libgcc_s or its symbol not found now (its file replaced since,
	 * say) — it did register the tables, so it may still list them. */
	return rc == PROC_CALL_NOT_MADE ? INJECT_UNWIND_LATER : INJECT_UNWIND_UNKNOWN;
}

/*
 * BOLT output reader (see bolt_output.h).
 *
 * The C1 entry of each moved function comes from the output's symbol
 * table (see elf_bolt_match_functions).
 */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "elf/bolt_output.h"
#include "elf/table.h"

#define PAGE 4096ull

static int read_new_segments(Elf *e, struct bolt_output *o, uint64_t vma,
			     uint64_t room, struct core_err *err)
{
	size_t phnum;
	if (elf_getphdrnum(e, &phnum))
		return core_errf(err, OCOLOS_EBOLT, "BOLT output has no program headers");
	o->segs = calloc(phnum ? phnum : 1, sizeof(*o->segs));
	if (!o->segs)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	o->lo = UINT64_MAX;
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || ph.p_vaddr < vma)
			continue;
		if (ph.p_vaddr + ph.p_memsz > vma + room)
			return core_errf(err, OCOLOS_EBOLT,
					 "BOLT placed %llu bytes at 0x%llx, beyond the %llu bytes reserved at 0x%llx",
					 (unsigned long long)ph.p_memsz, (unsigned long long)ph.p_vaddr,
					 (unsigned long long)room, (unsigned long long)vma);
		if ((ph.p_vaddr - ph.p_offset) % PAGE)
			return core_errf(err, OCOLOS_EBOLT, "BOLT output segment at 0x%llx is not page-congruent",
					 (unsigned long long)ph.p_vaddr);
		o->segs[o->nsegs++] = (struct elf_segment){ ph.p_vaddr, ph.p_memsz, ph.p_offset,
			ph.p_filesz, ph.p_flags };
		if ((ph.p_vaddr & ~(PAGE - 1)) < o->lo)
			o->lo = ph.p_vaddr & ~(PAGE - 1);
		if (((ph.p_vaddr + ph.p_memsz + PAGE - 1) & ~(PAGE - 1)) > o->hi)
			o->hi = (ph.p_vaddr + ph.p_memsz + PAGE - 1) & ~(PAGE - 1);
	}
	if (!o->nsegs)
		return core_errf(err, OCOLOS_EBOLT, "BOLT output has no segment at the reserved address 0x%llx",
				 (unsigned long long)vma);
	return 0;
}

struct named { const char *name; uint64_t value; uint32_t order; uint32_t func; };

static int cmp_named(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* Output function symbols inside the executable segments segs[0..nsegs),
 * sorted by (name, symbol index). */
static struct named *out_symbols(Elf *e, const struct elf_segment *segs, size_t nsegs,
				 size_t *count)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	*count = 0;
	while ((scn = elf_nextscn(e, scn)))
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
			break;
	if (!scn)
		return NULL;
	Elf_Data *d = elf_getdata(scn, NULL);
	size_t nsyms = elf_table_len(&sh, d), n = 0;
	struct named *v = calloc(nsyms ? nsyms : 1, sizeof(*v));
	for (size_t i = 1; v && d && i < nsyms; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s) || GELF_ST_TYPE(s.st_info) != STT_FUNC)
			continue;
		const char *name = elf_strptr(e, sh.sh_link, s.st_name);
		int inside = 0;
		for (size_t k = 0; k < nsegs; k++)
			inside |= (segs[k].flags & PF_X) && s.st_value >= segs[k].vaddr &&
				  s.st_value < segs[k].vaddr + segs[k].memsz;
		if (name && inside)
			v[n++] = (struct named){ name, s.st_value, (uint32_t)i, 0 };
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_named);
	*count = n;
	return v;
}

/*
 * Functions are matched by name: BOLT gives a moved function's symbol its
 * new address and keeps its name (fragments get new names, "f.cold.0").
 * Local functions may share a name (two files' `static init`); those are
 * matched in symbol-table order, and only when the input and the output
 * have the same number of them — otherwise left unmatched, which is safe:
 * their C0 call sites simply keep calling C0, and BAT leaves their samples
 * untranslated.
 */
int elf_bolt_match_functions(Elf *e, const struct elf_binary *in,
			     const struct elf_segment *segs, size_t nsegs,
			     uint64_t *out_addr, uint32_t *matched, struct core_err *err)
{
	size_t nout, nin = 0;
	struct named *out = out_symbols(e, segs, nsegs, &nout);
	struct named *inv = calloc(in->nfuncs ? in->nfuncs : 1, sizeof(*inv));
	*matched = 0;
	if (!inv || (!out && nout)) {
		free(out);
		free(inv);
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	memset(out_addr, 0, in->nfuncs * sizeof(*out_addr));
	for (size_t i = 0; i < in->nfuncs; i++)
		inv[nin++] = (struct named){ in->funcs[i].name, in->funcs[i].addr,
			in->funcs[i].symidx, (uint32_t)i };
	if (nin)
		qsort(inv, nin, sizeof(*inv), cmp_named);
	size_t i = 0, j = 0;
	while (i < nin && j < nout) {
		int c = strcmp(inv[i].name, out[j].name);
		if (c) {
			c < 0 ? i++ : j++;
			continue;
		}
		size_t i2 = i, j2 = j;
		while (i2 < nin && !strcmp(inv[i2].name, inv[i].name))
			i2++;
		while (j2 < nout && !strcmp(out[j2].name, out[j].name))
			j2++;
		if (i2 - i == j2 - j)
			for (size_t k = 0; k < i2 - i; k++) {
				out_addr[inv[i + k].func] = out[j + k].value;
				(*matched)++;
			}
		i = i2;
		j = j2;
	}
	free(out);
	free(inv);
	return 0;
}

/* The C1 entry of every moved function (see elf_bolt_match_functions). */
static int match_functions(Elf *e, const struct elf_binary *in, struct bolt_output *o,
			   struct core_err *err)
{
	o->c1_addr = calloc(in->nfuncs ? in->nfuncs : 1, sizeof(*o->c1_addr));
	o->nfuncs = in->nfuncs;
	if (!o->c1_addr)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	int rc = elf_bolt_match_functions(e, in, o->segs, o->nsegs, o->c1_addr, &o->moved, err);
	if (rc)
		return rc;
	if (!o->moved)
		return core_errf(err, OCOLOS_ENOTHOT,
				 "BOLT moved no function: the profile was too thin to make any function hot; "
				 "sample longer (opts.profile_ms) while the program does its real work");
	return 0;
}

static int find_eh_frame(Elf *e, struct bolt_output *o)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx))
		return 0;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		const char *name = elf_strptr(e, shstrndx, sh.sh_name);
		if (name && !strcmp(name, ".eh_frame") && sh.sh_addr >= o->lo && sh.sh_addr <= o->hi &&
		    sh.sh_size <= o->hi - sh.sh_addr) {
			o->eh_frame = sh.sh_addr;
			o->eh_frame_size = sh.sh_size;
		}
	}
	return 0;
}

static int is_slot_byte(const struct elf_binary *in, uint64_t a)
{
	size_t lo = 0, hi = in->nslots;
	/* slots are few; a linear scan keeps this obviously right */
	for (; lo < hi; lo++)
		if (a >= in->slots[lo].addr && a < in->slots[lo].addr + 8)
			return 1;
	return 0;
}

/* BOLT must not have rewritten original read-only data other than function
 * pointer slots (e.g. non-PIC jump tables updated in place): the process
 * would keep the old bytes while C1 expects the new ones. Words the
 * dynamic linker writes are not compared: the process holds what it wrote
 * (BOLT 19 rewrites the file's bytes of an AArch64 v-table slot that
 * names an imported virtual, e.g. std::runtime_error::what, which the
 * dynamic linker fills in). */
static int check_rodata(Elf *e, const struct elf_binary *in, struct core_err *err)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx))
		return 0;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
		    !(sh.sh_flags & SHF_ALLOC) || (sh.sh_flags & SHF_EXECINSTR))
			continue;
		const char *name = elf_strptr(e, shstrndx, sh.sh_name);
		if (!name || (strncmp(name, ".rodata", 7) && strncmp(name, ".data.rel.ro", 12)))
			continue;
		if (sh.sh_addr < in->img_lo || sh.sh_addr > in->img_hi ||
		    sh.sh_size > in->img_hi - sh.sh_addr)
			continue; /* a new section in C1 (or a header no file has) */
		/* Compared over the bytes the file holds: sh_size is only what
		 * the header says (fuzz_bolt_output: a claim of 2^64 bytes). */
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t len = d ? (sh.sh_size < d->d_size ? (size_t)sh.sh_size : d->d_size) : 0;
		if (!len)
			continue;
		uint8_t *orig = malloc(len);
		if (!orig)
			return core_errf(err, OCOLOS_ENOMEM, "out of memory");
		struct core_err ignore = { 0 };
		int rc = elf_read_vaddr(in, sh.sh_addr, orig, len, &ignore);
		for (uint64_t k = 0; !rc && k < len; k++) {
			if (orig[k] == ((uint8_t *)d->d_buf)[k] || is_slot_byte(in, sh.sh_addr + k) ||
			    elf_dyn_reloc_byte(in, sh.sh_addr + k))
				continue;
			free(orig);
			return core_errf(err, OCOLOS_ENOTSUP,
					 "BOLT rewrote %s at 0x%llx in place (likely a jump table of a moved "
					 "function); the running process cannot follow that: rebuild with "
					 "-fno-jump-tables or as PIE", name, (unsigned long long)(sh.sh_addr + k));
		}
		free(orig);
	}
	return 0;
}

int elf_bolt_output_open(const char *path, const struct elf_binary *in,
			 uint64_t vma, uint64_t room, struct bolt_output **out,
			 struct core_err *err)
{
	*out = NULL;
	struct bolt_output *o = calloc(1, sizeof(*o));
	if (!o)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	o->fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf *e = o->fd >= 0 ? elf_begin(o->fd, ELF_C_READ_MMAP, NULL) : NULL;
	int rc;
	if (!e || elf_kind(e) != ELF_K_ELF) {
		rc = core_errf(err, OCOLOS_EBOLT, "cannot read BOLT output '%s'", path);
		goto fail;
	}
	if ((rc = read_new_segments(e, o, vma, room, err)) ||
	    (rc = match_functions(e, in, o, err)) || (rc = find_eh_frame(e, o)) ||
	    (rc = check_rodata(e, in, err)))
		goto fail;
	elf_end(e);
	*out = o;
	return 0;
fail:
	if (e)
		elf_end(e);
	elf_bolt_output_close(o);
	return rc;
}

int elf_bolt_output_read(const struct bolt_output *o, uint64_t addr, void *buf, size_t len)
{
	for (size_t i = 0; i < o->nsegs; i++) {
		const struct elf_segment *s = &o->segs[i];
		if (addr < s->vaddr || addr + len > s->vaddr + s->filesz)
			continue;
		return pread(o->fd, buf, len, (off_t)(s->offset + addr - s->vaddr)) == (ssize_t)len ? 0
												       : -1;
	}
	return -1;
}

void elf_bolt_output_close(struct bolt_output *o)
{
	if (!o)
		return;
	if (o->fd >= 0)
		close(o->fd);
	free(o->segs);
	core_free_clear(o->c1_addr, o->nfuncs * sizeof(*o->c1_addr)); /* core/util.c: why */
	free(o);
}

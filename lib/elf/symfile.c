/*
 * Symbols of a code version, and the ELF object handed to debuggers
 * (symfile.h).
 *
 * The object is written by hand rather than with libelf: it is a fixed
 * shape of five or six sections, and building it must not depend on a
 * file or on libelf's memory image rules. Why ET_REL with values relative
 * to .text: the object lives in the process's heap for as long as the
 * version does, and the in-process retirement scan (inject/scan.c) looks
 * for words pointing into old versions; section addresses are the only
 * such words left, and a section start is never a return site.
 */
#include <elf.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "elf/symfile.h"
#include "elf/table.h"

static int cmp_sym(const void *a, const void *b)
{
	const struct elf_code_sym *x = a, *y = b;
	return (x->addr > y->addr) - (x->addr < y->addr);
}

int elf_code_syms_add(struct elf_code_syms *s, uint64_t addr, uint64_t size, const char *name)
{
	size_t l = strlen(name) + 1;
	while (s->len + l > s->strs_cap) {
		size_t cap = s->strs_cap ? 2 * s->strs_cap : 4096;
		char *p = realloc(s->strs, cap);
		if (!p)
			return -1;
		s->strs = p;
		s->strs_cap = cap;
	}
	if (core_grow((void **)&s->v, &s->cap, s->n, sizeof(*s->v)))
		return -1;
	memcpy(s->strs + s->len, name, l);
	s->v[s->n++] = (struct elf_code_sym){ addr, size, (uint32_t)s->len };
	s->len += l;
	return 0;
}

static int in_new_code(const struct bolt_output *o, uint64_t a)
{
	for (size_t k = 0; k < o->nsegs; k++)
		if ((o->segs[k].flags & PF_X) && a >= o->segs[k].vaddr &&
		    a < o->segs[k].vaddr + o->segs[k].memsz)
			return 1;
	return 0;
}

int elf_code_syms_from_bolt(const struct bolt_output *o, struct elf_code_syms *out,
			    struct core_err *err)
{
	memset(out, 0, sizeof(*out));
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(o->fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF) {
		if (e)
			elf_end(e);
		return core_errf(err, OCOLOS_EBOLT, "cannot read BOLT's output again for its "
				 "symbols: %s", elf_errmsg(-1));
	}
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn)))
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
			break;
	Elf_Data *d = scn ? elf_getdata(scn, NULL) : NULL;
	size_t nsyms = scn ? elf_table_len(&sh, d) : 0;
	int rc = 0;
	for (size_t i = 1; !rc && i < nsyms; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s) || GELF_ST_TYPE(s.st_info) != STT_FUNC ||
		    !in_new_code(o, s.st_value))
			continue;
		const char *name = elf_strptr(e, sh.sh_link, s.st_name);
		if (name && *name && elf_code_syms_add(out, s.st_value, s.st_size, name))
			rc = core_errf(err, OCOLOS_ENOMEM, "out of memory");
	}
	elf_end(e);
	if (!rc && out->n)
		qsort(out->v, out->n, sizeof(*out->v), cmp_sym);
	return rc;
}

void elf_code_syms_free(struct elf_code_syms *s)
{
	core_free_clear(s->v, s->cap * sizeof(*s->v)); /* link-time addresses only, but cheap */
	free(s->strs);
	memset(s, 0, sizeof(*s));
}

/* Section indices of the object. */
enum { SEC_NULL, SEC_TEXT, SEC_SYMTAB, SEC_STRTAB, SEC_SHSTRTAB, SEC_EH, SEC_MAX };

static const char shstrtab[] = "\0.text\0.symtab\0.strtab\0.shstrtab\0.eh_frame";
enum { NAME_TEXT = 1, NAME_SYMTAB = 7, NAME_STRTAB = 15, NAME_SHSTRTAB = 23, NAME_EH = 33 };

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

int elf_symfile_build(const struct elf_symfile_desc *d, uint8_t **img, size_t *len,
		      struct core_err *err)
{
	const struct elf_code_syms *s = d->syms;
	size_t nsec = d->eh_frame && d->eh_len ? SEC_MAX : SEC_EH;
	/* Symbols in the span, and the string table they need. */
	size_t nsym = 1, strsz = 1;
	for (size_t i = 0; i < s->n; i++) {
		uint64_t a = s->v[i].addr + d->bias;
		if (a >= d->text_addr && a < d->text_addr + d->text_size) {
			nsym++;
			strsz += strlen(s->strs + s->v[i].name) + 1;
		}
	}
	size_t off_sym = align8(sizeof(Elf64_Ehdr));
	size_t off_str = off_sym + nsym * sizeof(Elf64_Sym);
	size_t off_shstr = off_str + strsz;
	size_t off_eh = align8(off_shstr + sizeof(shstrtab));
	size_t off_sh = align8(off_eh + (nsec == SEC_MAX ? d->eh_len : 0));
	size_t total = off_sh + nsec * sizeof(Elf64_Shdr);
	uint8_t *b = calloc(1, total);
	if (!b)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");

	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_ident[EI_OSABI] = ELFOSABI_NONE;
	eh->e_type = ET_REL;
	eh->e_machine = d->machine;
	eh->e_version = EV_CURRENT;
	eh->e_shoff = off_sh;
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = (Elf64_Half)nsec;
	eh->e_shstrndx = SEC_SHSTRTAB;

	Elf64_Sym *sym = (Elf64_Sym *)(b + off_sym);
	char *str = (char *)(b + off_str);
	size_t k = 1, at = 1;
	for (size_t i = 0; i < s->n; i++) {
		uint64_t a = s->v[i].addr + d->bias;
		if (a < d->text_addr || a >= d->text_addr + d->text_size)
			continue;
		const char *name = s->strs + s->v[i].name;
		size_t l = strlen(name) + 1;
		memcpy(str + at, name, l);
		/* Global: GDB prefers them when a name is looked up, and a
		 * breakpoint on a function then gets a location in every
		 * version as well as in C0. */
		sym[k++] = (Elf64_Sym){ .st_name = (Elf64_Word)at,
			.st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), .st_shndx = SEC_TEXT,
			.st_value = a - d->text_addr, .st_size = s->v[i].size };
		at += l;
	}
	memcpy(b + off_shstr, shstrtab, sizeof(shstrtab));
	if (nsec == SEC_MAX)
		memcpy(b + off_eh, d->eh_frame, d->eh_len);

	Elf64_Shdr *sh = (Elf64_Shdr *)(b + off_sh);
	sh[SEC_TEXT] = (Elf64_Shdr){ .sh_name = NAME_TEXT, .sh_type = SHT_NOBITS,
		.sh_flags = SHF_ALLOC | SHF_EXECINSTR, .sh_addr = d->text_addr,
		.sh_offset = off_sym, .sh_size = d->text_size, .sh_addralign = 16 };
	sh[SEC_SYMTAB] = (Elf64_Shdr){ .sh_name = NAME_SYMTAB, .sh_type = SHT_SYMTAB,
		.sh_offset = off_sym, .sh_size = nsym * sizeof(Elf64_Sym), .sh_link = SEC_STRTAB,
		.sh_info = 1, .sh_addralign = 8, .sh_entsize = sizeof(Elf64_Sym) };
	sh[SEC_STRTAB] = (Elf64_Shdr){ .sh_name = NAME_STRTAB, .sh_type = SHT_STRTAB,
		.sh_offset = off_str, .sh_size = strsz, .sh_addralign = 1 };
	sh[SEC_SHSTRTAB] = (Elf64_Shdr){ .sh_name = NAME_SHSTRTAB, .sh_type = SHT_STRTAB,
		.sh_offset = off_shstr, .sh_size = sizeof(shstrtab), .sh_addralign = 1 };
	if (nsec == SEC_MAX)
		sh[SEC_EH] = (Elf64_Shdr){ .sh_name = NAME_EH, .sh_type = SHT_PROGBITS,
			.sh_flags = SHF_ALLOC, .sh_addr = d->eh_addr, .sh_offset = off_eh,
			.sh_size = d->eh_len, .sh_addralign = 8 };
	*img = b;
	*len = total;
	return 0;
}

/*
 * Binary model (see binary.h). Reads the program's ELF file with libelf:
 * functions, PT_LOAD segments, build-id, and the call sites and pointer
 * slots recovered from the static relocations kept by -Wl,--emit-relocs.
 *
 * Call sites come from two sources that check each other:
 *  - relocations: one of type R_X86_64_PLT32/PC32 at offset P inside code is
 *    the rel32 field of the instruction ending at P+4. The byte before a
 *    rel32 is either the opcode of `call` (e8) / `jmp` (e9) or a ModRM byte
 *    of a RIP-relative operand (mod=00 rm=101: 0x05 ... 0x3d), never e8/e9,
 *    and jcc rel32 is 0f 8x: so "byte before is e8/e9" is exact.
 *  - a linear sweep of each function with a decoder: the assembler resolves
 *    a call to a local (static) function in the same section itself and
 *    keeps no relocation for it, even with --emit-relocs.
 * The union is kept: a function whose sweep stops early (bytes that do not
 * decode) still has its relocation sites.
 *
 * AArch64: R_AARCH64_CALL26 / JUMP26 at P is the `BL` / `B` at P itself.
 * A site counts only if the linked instruction still targets S + A: a call
 * the linker routed through its own veneer (a long-branch stub) is left
 * alone. GNU as resolves a BL to a local function of the same section
 * itself, as on x86-64, so the sweep runs here too: every word is an
 * instruction (fixed width) except data the assembler marks with a `$d`
 * mapping symbol, where the sweep of that function stops. Function-pointer
 * slots are R_AARCH64_ABS64.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "elf/binary.h"
#include "elf/table.h"
#include "arch/arch.h"

struct scan {
	struct elf_binary *b;
	Elf *elf;
	size_t shnum;
	GElf_Shdr *shdrs;	 /* all section headers, by index */
	uint64_t relro_lo, relro_hi;
	size_t symtab_idx;
	Elf_Data *symdata;
	size_t dynsym_idx;	 /* 0 when the binary has no .dynsym */
	uint64_t *data_marks;	 /* AArch64 `$d` mapping symbols, sorted */
	size_t ndata_marks, nalloc_marks;
};

static int cmp_func(const void *a, const void *b)
{
	const struct elf_func *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->symidx < y->symidx ? -1 : x->symidx > y->symidx;
}

static int cmp_site(const void *a, const void *b)
{
	const struct elf_branch_site *x = a, *y = b;
	return x->site < y->site ? -1 : x->site > y->site;
}

long elf_func_at(const struct elf_binary *b, uint64_t addr)
{
	size_t lo = 0, hi = b->nfuncs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->funcs[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < b->nfuncs && b->funcs[lo].addr == addr)
		return (long)lo;
	return -1;
}

long elf_func_containing(const struct elf_binary *b, uint64_t addr)
{
	size_t lo = 0, hi = b->nfuncs;
	while (lo < hi) { /* first function with start > addr */
		size_t mid = lo + (hi - lo) / 2;
		if (b->funcs[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	const struct elf_func *f = &b->funcs[lo - 1];
	if (addr < f->addr + (f->size ? f->size : 1))
		return (long)(lo - 1);
	return -1;
}

int elf_read_vaddr(const struct elf_binary *b, uint64_t addr, void *buf,
		   size_t len, struct core_err *err)
{
	for (size_t i = 0; i < b->nsegs; i++) {
		const struct elf_segment *s = &b->segs[i];
		if (addr < s->vaddr || addr + len > s->vaddr + s->filesz)
			continue;
		ssize_t n = pread(b->fd, buf, len, (off_t)(s->offset + (addr - s->vaddr)));
		if (n != (ssize_t)len)
			return core_errf(err, OCOLOS_EIO, "cannot read %zu bytes at 0x%llx of '%s'",
					 len, (unsigned long long)addr, b->path);
		return 0;
	}
	return core_errf(err, OCOLOS_EELF, "address 0x%llx is not in a loaded part of '%s'",
			 (unsigned long long)addr, b->path);
}

static int read_segments(struct scan *sc, struct core_err *err)
{
	struct elf_binary *b = sc->b;
	size_t phnum;
	if (elf_getphdrnum(sc->elf, &phnum) != 0)
		return core_errf(err, OCOLOS_EELF, "'%s': no program headers: %s", b->path, elf_errmsg(-1));
	b->segs = calloc(phnum ? phnum : 1, sizeof(*b->segs));
	if (!b->segs)
		return OCOLOS_ENOMEM;
	b->img_lo = UINT64_MAX;
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(sc->elf, (int)i, &ph))
			return core_errf(err, OCOLOS_EELF, "'%s': bad program header %zu", b->path, i);
		if (ph.p_type == PT_GNU_RELRO) {
			sc->relro_lo = ph.p_vaddr;
			sc->relro_hi = ph.p_vaddr + ph.p_memsz;
		}
		if (ph.p_type != PT_LOAD)
			continue;
		b->segs[b->nsegs++] = (struct elf_segment){ ph.p_vaddr, ph.p_memsz,
			ph.p_offset, ph.p_filesz, ph.p_flags };
		if (ph.p_vaddr < b->img_lo)
			b->img_lo = ph.p_vaddr;
		if (ph.p_vaddr + ph.p_memsz > b->img_hi)
			b->img_hi = ph.p_vaddr + ph.p_memsz;
		if (ph.p_flags & PF_X)
			b->text_bytes += ph.p_memsz;
	}
	if (!b->nsegs)
		return core_errf(err, OCOLOS_EELF, "'%s' has no loadable segments", b->path);
	return 0;
}

static int read_sections(struct scan *sc, struct core_err *err)
{
	struct elf_binary *b = sc->b;
	if (elf_getshdrnum(sc->elf, &sc->shnum) != 0)
		return core_errf(err, OCOLOS_EELF, "'%s': no section headers", b->path);
	sc->shdrs = calloc(sc->shnum ? sc->shnum : 1, sizeof(*sc->shdrs));
	if (!sc->shdrs)
		return OCOLOS_ENOMEM;
	for (size_t i = 0; i < sc->shnum; i++) {
		Elf_Scn *scn = elf_getscn(sc->elf, i);
		if (!scn || !gelf_getshdr(scn, &sc->shdrs[i]))
			return core_errf(err, OCOLOS_EELF, "'%s': bad section header %zu", b->path, i);
		if (sc->shdrs[i].sh_type == SHT_SYMTAB) {
			sc->symtab_idx = i;
			sc->symdata = elf_getdata(scn, NULL);
		}
		if (sc->shdrs[i].sh_type == SHT_DYNSYM)
			sc->dynsym_idx = i;
		if (sc->shdrs[i].sh_type == SHT_NOTE && !b->build_id_len) {
			Elf_Data *d = elf_getdata(scn, NULL);
			size_t off = 0, noff, doff;
			GElf_Nhdr nh;
			while (d && (off = gelf_getnote(d, off, &nh, &noff, &doff)) > 0) {
				if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
				    !memcmp((char *)d->d_buf + noff, "GNU", 4) &&
				    nh.n_descsz <= sizeof(b->build_id)) {
					memcpy(b->build_id, (char *)d->d_buf + doff, nh.n_descsz);
					b->build_id_len = nh.n_descsz;
					if (sc->shdrs[i].sh_flags & SHF_ALLOC)
						b->build_id_vaddr = sc->shdrs[i].sh_addr + doff;
				}
			}
		}
	}
	if (!sc->symdata)
		return core_errf(err, OCOLOS_ENOSYMS,
				 "'%s' is stripped: it has no .symtab, so functions cannot be found "
				 "(and `strip` also removed the relocations --emit-relocs kept); ship the "
				 "unstripped binary, or strip it with `strip --strip-debug`, which keeps "
				 "both (debug info can go to a separate file)", b->path);
	return 0;
}

static int read_functions(struct scan *sc, struct core_err *err)
{
	struct elf_binary *b = sc->b;
	size_t nsyms = elf_table_len(&sc->shdrs[sc->symtab_idx], sc->symdata);
	size_t strndx = sc->shdrs[sc->symtab_idx].sh_link;
	for (size_t i = 1; i < nsyms; i++) {
		GElf_Sym sym;
		if (!gelf_getsym(sc->symdata, (int)i, &sym))
			continue;
		const char *sname = elf_strptr(sc->elf, strndx, sym.st_name);
		if (sname && !b->sanitizer) /* BOLT's own test: these runtimes' entry points */
			b->sanitizer = !strcmp(sname, "__asan_init") ? "AddressSanitizer"
				     : !strcmp(sname, "__tsan_init") ? "ThreadSanitizer"
				     : !strcmp(sname, "__msan_init") ? "MemorySanitizer" : NULL;
		if (b->machine == EM_AARCH64 && sname && !strncmp(sname, "$d", 2) &&
		    (sname[2] == '\0' || sname[2] == '.')) {
			if (core_grow((void **)&sc->data_marks, &sc->nalloc_marks, sc->ndata_marks,
				      sizeof(*sc->data_marks)))
				return OCOLOS_ENOMEM;
			sc->data_marks[sc->ndata_marks++] = sym.st_value;
		}
		if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
		    sym.st_shndx >= sc->shnum || !sym.st_value)
			continue;
		if (!(sc->shdrs[sym.st_shndx].sh_flags & SHF_EXECINSTR))
			continue;
		/* A function that would end past the address space is not one
		 * (every later range check adds addr and size). */
		if (sym.st_size > UINT64_MAX - sym.st_value)
			continue;
		if (core_grow((void **)&b->funcs, &b->nalloc_funcs, b->nfuncs, sizeof(*b->funcs)))
			return OCOLOS_ENOMEM;
		const char *name = elf_strptr(sc->elf, strndx, sym.st_name);
		b->funcs[b->nfuncs++] = (struct elf_func){ .addr = sym.st_value, .size = sym.st_size,
			.name = name ? name : "?", .symidx = (uint32_t)i };
	}
	if (!b->nfuncs)
		return core_errf(err, OCOLOS_ENOSYMS, "'%s' has no function symbols", b->path);
	if (b->sanitizer)
		return core_errf(err, OCOLOS_ENOTSUP,
				 "'%s' is built with a sanitizer (%s): BOLT refuses such binaries; "
				 "optimize a build without -fsanitize", b->path, b->sanitizer);
	qsort(b->funcs, b->nfuncs, sizeof(*b->funcs), cmp_func);
	if (sc->ndata_marks)
		qsort(sc->data_marks, sc->ndata_marks, sizeof(*sc->data_marks), core_cmp_u64);
	/* Aliases share an address: keep the lowest symbol index of each. */
	size_t w = 0;
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!w || b->funcs[w - 1].addr != b->funcs[i].addr)
			b->funcs[w++] = b->funcs[i];
		else if (!b->funcs[w - 1].size)
			b->funcs[w - 1].size = b->funcs[i].size;
	b->nfuncs = w;
	return 0;
}

/* The function starting exactly at `addr`, if any, has its address taken. */
static void mark_taken(struct elf_binary *b, uint64_t addr)
{
	long f = elf_func_at(b, addr);
	if (f >= 0)
		b->funcs[f].addr_taken = 1;
}

/* .dynsym: a function defined there can be found by name at run time
 * (dlsym, or another object's reference resolved to it), yielding its C0
 * address; an import of dladdr lets the program name the object a
 * pointer points into, which C1 is not. */
static void read_dynamic_symbols(struct scan *sc)
{
	struct elf_binary *b = sc->b;
	if (!sc->dynsym_idx)
		return;
	const GElf_Shdr *sh = &sc->shdrs[sc->dynsym_idx];
	Elf_Data *d = elf_getdata(elf_getscn(sc->elf, sc->dynsym_idx), NULL);
	size_t n = elf_table_len(sh, d);
	for (size_t i = 1; i < n; i++) {
		GElf_Sym sym;
		if (!gelf_getsym(d, (int)i, &sym))
			continue;
		if (sym.st_shndx == SHN_UNDEF) {
			const char *name = elf_strptr(sc->elf, sh->sh_link, sym.st_name);
			if (name && (!strcmp(name, "dladdr") || !strcmp(name, "dladdr1")))
				b->imports_dladdr = 1;
			continue;
		}
		int type = GELF_ST_TYPE(sym.st_info);
		if (type == STT_FUNC || type == STT_GNU_IFUNC)
			mark_taken(b, sym.st_value);
	}
}

/* The words the dynamic linker writes: r_offset of every relocation of an
 * allocated RELA section but the PLT's (which covers .got.plt only). */
static int read_dyn_relocs(struct scan *sc)
{
	struct elf_binary *b = sc->b;
	size_t cap = 0;
	for (size_t i = 0; i < sc->shnum; i++) {
		const GElf_Shdr *sh = &sc->shdrs[i];
		if (sh->sh_type != SHT_RELA || !(sh->sh_flags & SHF_ALLOC) || !sh->sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(elf_getscn(sc->elf, i), NULL);
		for (size_t k = 0, n = elf_table_len(sh, d); k < n; k++) {
			GElf_Rela r;
			if (!gelf_getrela(d, (int)k, &r))
				continue;
			if (core_grow((void **)&b->dyn_relocs, &cap, b->ndyn_relocs, sizeof(*b->dyn_relocs)))
				return OCOLOS_ENOMEM;
			b->dyn_relocs[b->ndyn_relocs++] = r.r_offset;
		}
	}
	if (b->ndyn_relocs)
		qsort(b->dyn_relocs, b->ndyn_relocs, sizeof(*b->dyn_relocs), core_cmp_u64);
	return 0;
}

int elf_dyn_reloc_byte(const struct elf_binary *b, uint64_t addr)
{
	size_t lo = 0, hi = b->ndyn_relocs;
	while (lo < hi) { /* first word ending after addr */
		size_t mid = lo + (hi - lo) / 2;
		if (b->dyn_relocs[mid] + 8 <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->ndyn_relocs && b->dyn_relocs[lo] <= addr;
}

/* Value S of the symbol a relocation refers to, or 0 if undefined;
 * *section says whether it is a section symbol (then the addend, not S,
 * says which object is meant). */
static uint64_t reloc_sym_value(struct scan *sc, size_t symidx, int *section)
{
	GElf_Sym sym;
	*section = 0;
	if (!gelf_getsym(sc->symdata, (int)symidx, &sym) || sym.st_shndx == SHN_UNDEF)
		return 0;
	if (GELF_ST_TYPE(sym.st_info) == STT_SECTION) {
		*section = 1;
		return sym.st_shndx < sc->shnum ? sc->shdrs[sym.st_shndx].sh_addr : 0;
	}
	return sym.st_value;
}

/* A relocation that is not a direct call/jump site refers to the object at
 * S (a symbol) or S + A (a section symbol plus offset; `pc_slack` > 0 for
 * an x86-64 PC-relative field in code, whose addend also subtracts the
 * distance from the field to the end of the instruction: 4, or 5, 6 or 8
 * with an immediate after it). Every function start it may mean is
 * marked: marking one too many costs a redirection, never correctness. */
static void note_reference(struct scan *sc, const GElf_Rela *r, uint64_t s, int section,
			   int pc_slack)
{
	struct elf_binary *b = sc->b;
	if (!section) {
		mark_taken(b, s);
		return;
	}
	uint64_t t = s + (uint64_t)r->r_addend;
	if (!pc_slack) {
		mark_taken(b, t);
		return;
	}
	static const int tail[] = { 4, 5, 6, 8 };
	for (size_t i = 0; i < sizeof(tail) / sizeof(tail[0]); i++)
		mark_taken(b, t + (uint64_t)tail[i]);
}

static int push_site(struct elf_binary *b, uint64_t site, long f, uint8_t op)
{
	if (core_grow((void **)&b->sites, &b->nalloc_sites, b->nsites, sizeof(*b->sites)))
		return OCOLOS_ENOMEM;
	b->sites[b->nsites++] = (struct elf_branch_site){ site, (uint32_t)f, op };
	return 0;
}

/* AArch64: remember an address-forming relocation against a function
 * start (binary.h, struct elf_a64_ref). Other types naming a function
 * (MOVW, a literal-pool word, GOT loads) are not needed there: keep_c0.c
 * finds their output forms by decoding. */
static int add_a64_ref(struct elf_binary *b, const GElf_Rela *r, uint64_t s)
{
	uint8_t kind;
	switch (GELF_R_TYPE(r->r_info)) {
	case R_AARCH64_ADR_PREL_PG_HI21:
	case R_AARCH64_ADR_PREL_PG_HI21_NC: kind = ELF_A64_REF_PAGE; break;
	case R_AARCH64_ADD_ABS_LO12_NC: kind = ELF_A64_REF_ADD; break;
	case R_AARCH64_ADR_PREL_LO21: kind = ELF_A64_REF_ADR; break;
	case R_AARCH64_LDST8_ABS_LO12_NC:
	case R_AARCH64_LDST16_ABS_LO12_NC:
	case R_AARCH64_LDST32_ABS_LO12_NC:
	case R_AARCH64_LDST64_ABS_LO12_NC:
	case R_AARCH64_LDST128_ABS_LO12_NC: kind = ELF_A64_REF_LO12_LDST; break;
	default: return 0;
	}
	long f = elf_func_at(b, s + (uint64_t)r->r_addend);
	if (f < 0)
		return 0;
	if (core_grow((void **)&b->a64_refs, &b->nalloc_a64_refs, b->na64_refs, sizeof(*b->a64_refs)))
		return OCOLOS_ENOMEM;
	b->a64_refs[b->na64_refs++] = (struct elf_a64_ref){ r->r_offset, (uint32_t)f, kind };
	return 0;
}

static int cmp_a64_ref(const void *a, const void *b)
{
	const struct elf_a64_ref *x = a, *y = b;
	return x->at < y->at ? -1 : x->at > y->at;
}

size_t elf_a64_ref_from(const struct elf_binary *b, uint64_t at)
{
	size_t lo = 0, hi = b->na64_refs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->a64_refs[mid].at < at)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct elf_a64_ref *elf_a64_ref_at(const struct elf_binary *b, uint64_t at)
{
	size_t i = elf_a64_ref_from(b, at);
	return i < b->na64_refs && b->a64_refs[i].at == at ? &b->a64_refs[i] : NULL;
}

/* AArch64: a BL/B at r_offset that, as linked, targets a function start.
 * Conditional branches only branch; every other relocation in code (ADRP,
 * ADD :lo12:, ADR, MOVW, GOT loads, literal-pool words) materializes an
 * address. */
static int add_code_reloc_a64(struct scan *sc, const GElf_Shdr *tsh, Elf_Data *tdata,
			      const GElf_Rela *r, uint64_t s, int section)
{
	uint32_t type = (uint32_t)GELF_R_TYPE(r->r_info);
	if (type == R_AARCH64_CONDBR19 || type == R_AARCH64_TSTBR14)
		return 0;
	if (type != R_AARCH64_CALL26 && type != R_AARCH64_JUMP26) {
		note_reference(sc, r, s, section, 0);
		return add_a64_ref(sc->b, r, s);
	}
	if (!tdata || tsh->sh_type == SHT_NOBITS || r->r_offset < tsh->sh_addr ||
	    r->r_offset - tsh->sh_addr + 4 > tdata->d_size || (r->r_offset & 3))
		return 0;
	const uint8_t *p = (const uint8_t *)tdata->d_buf + (r->r_offset - tsh->sh_addr);
	uint32_t insn = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	uint8_t op = arch_a64_branch_kind(insn);
	uint64_t target = s + (uint64_t)r->r_addend;
	if (!op || arch_a64_branch_target(r->r_offset, insn) != target)
		return 0;
	long f = elf_func_at(sc->b, target);
	return f < 0 ? 0 : push_site(sc->b, r->r_offset, f, op);
}

/* x86-64 relocation types whose field is relative to its own address. */
static int x86_pc_relative(uint32_t type)
{
	return type == R_X86_64_PC32 || type == R_X86_64_PLT32 || type == R_X86_64_GOTPCREL ||
	       type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX ||
	       type == R_X86_64_PC64 || type == R_X86_64_PC16 || type == R_X86_64_PC8;
}

/* x86-64: R_X86_64_PLT32/PC32 after an e8/e9 opcode is a direct call/jump
 * (binary.h); after 0f 8x a conditional jump. Anything else against a
 * function — lea f(%rip), a GOT load, mov $f — materializes its address. */
static int add_code_reloc(struct scan *sc, const GElf_Shdr *tsh, Elf_Data *tdata,
			  const GElf_Rela *r, uint64_t s, int section)
{
	struct elf_binary *b = sc->b;
	if (b->machine == EM_AARCH64)
		return add_code_reloc_a64(sc, tsh, tdata, r, s, section);
	uint32_t type = (uint32_t)GELF_R_TYPE(r->r_info);
	int branch_type = type == R_X86_64_PLT32 || type == R_X86_64_PC32;
	const uint8_t *code = tdata && tsh->sh_type != SHT_NOBITS ? tdata->d_buf : NULL;
	uint64_t off = r->r_offset - tsh->sh_addr;
	if (branch_type && code && r->r_offset > tsh->sh_addr && off - 1 < tdata->d_size) {
		uint8_t op = code[off - 1];
		if (op == 0xe8 || op == 0xe9) {
			long f = elf_func_at(b, s + (uint64_t)r->r_addend + 4);
			return f < 0 ? 0 : push_site(b, r->r_offset - 1, f, op);
		}
		if (off >= 2 && (op & 0xf0) == 0x80 && code[off - 2] == 0x0f)
			return 0;
	}
	note_reference(sc, r, s, section, x86_pc_relative(type));
	return 0;
}

/* A word of data that refers to a function: an 8-byte absolute pointer
 * to its start is a slot we may redirect; any other reference (a 32-bit
 * or PC-relative pointer, a pointer past the start) makes the address
 * observable as it is. */
static int add_data_reloc(struct scan *sc, const char *tname, const GElf_Shdr *tsh,
			  const GElf_Rela *r, uint64_t s, int section)
{
	struct elf_binary *b = sc->b;
	/* Unwind and exception tables describe C0 and must keep doing so; the
	 * constructor and destructor arrays are read by the C library, which
	 * only calls them. Neither is a value the program compares. */
	static const char *const skip[] = { ".eh_frame", ".gcc_except_table",
		".init_array", ".fini_array", ".preinit_array", NULL };
	for (int i = 0; skip[i]; i++)
		if (!strcmp(tname, skip[i]))
			return 0;
	uint32_t abs64 = b->machine == EM_AARCH64 ? R_AARCH64_ABS64 : R_X86_64_64;
	long f = GELF_R_TYPE(r->r_info) == abs64 ? elf_func_at(b, s + (uint64_t)r->r_addend) : -1;
	if (f < 0) {
		note_reference(sc, r, s, section, 0);
		return 0;
	}
	int in_relro = r->r_offset >= sc->relro_lo && r->r_offset < sc->relro_hi;
	if (core_grow((void **)&b->slots, &b->nalloc_slots, b->nslots, sizeof(*b->slots)))
		return OCOLOS_ENOMEM;
	b->slots[b->nslots++] = (struct elf_ptr_slot){ r->r_offset, (uint32_t)f,
		(uint8_t)((tsh->sh_flags & SHF_WRITE) && !in_relro) };
	return 0;
}

struct sweep {
	struct elf_binary *b;
	int rc;
	uint64_t *targets;	/* direct branch targets seen (x86-64) */
	size_t ntargets, cap;
};

static void on_target(uint64_t target, void *user)
{
	struct sweep *sw = user;
	if (sw->rc || core_grow((void **)&sw->targets, &sw->cap, sw->ntargets, sizeof(*sw->targets))) {
		sw->rc = OCOLOS_ENOMEM;
		return;
	}
	sw->targets[sw->ntargets++] = target;
}

/* A function whose entry bytes some branch targets (past its first byte)
 * cannot have them overwritten. */
static void entries_hit_by_branches(struct sweep *sw)
{
	struct elf_binary *b = sw->b;
	if (sw->ntargets)
		qsort(sw->targets, sw->ntargets, sizeof(*sw->targets), core_cmp_u64);
	size_t t = 0;
	for (size_t i = 0; i < b->nfuncs; i++) {
		struct elf_func *f = &b->funcs[i];
		while (t < sw->ntargets && sw->targets[t] <= f->addr)
			t++;
		if (t < sw->ntargets && sw->targets[t] < f->addr + ARCH_X86_BRANCH_LEN)
			f->entry_ok = 0;
	}
}

static void on_address(uint64_t addr, void *user)
{
	struct sweep *sw = user;
	mark_taken(sw->b, addr);
}

static int on_branch(uint64_t site, uint8_t opcode, uint64_t target, void *user)
{
	struct sweep *sw = user;
	struct elf_binary *b = sw->b;
	long f = elf_func_at(b, target);
	if (f < 0)
		return 0;
	if (core_grow((void **)&b->sites, &b->nalloc_sites, b->nsites, sizeof(*b->sites))) {
		sw->rc = OCOLOS_ENOMEM;
		return 1;
	}
	b->sites[b->nsites++] = (struct elf_branch_site){ site, (uint32_t)f, opcode };
	return 0;
}

/* AArch64: bytes of `f` before the first `$d` (data) mark inside it. */
static uint64_t code_len_a64(const struct scan *sc, const struct elf_func *f)
{
	size_t lo = 0, hi = sc->ndata_marks;
	while (lo < hi) { /* first mark >= f->addr */
		size_t mid = lo + (hi - lo) / 2;
		if (sc->data_marks[mid] < f->addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < sc->ndata_marks && sc->data_marks[lo] < f->addr + f->size)
		return sc->data_marks[lo] - f->addr;
	return f->size;
}

/* Decode every function of every executable section for direct branches. */
static int sweep_functions(struct scan *sc, struct core_err *err)
{
	struct sweep sw = { .b = sc->b };
	for (size_t i = 0; i < sc->shnum && !sw.rc; i++) {
		const GElf_Shdr *sh = &sc->shdrs[i];
		if (!(sh->sh_flags & SHF_EXECINSTR) || sh->sh_type != SHT_PROGBITS)
			continue;
		Elf_Data *d = elf_getdata(elf_getscn(sc->elf, i), NULL);
		if (!d || !d->d_buf)
			continue;
		for (size_t k = 0; k < sc->b->nfuncs && !sw.rc; k++) {
			const struct elf_func *f = &sc->b->funcs[k];
			/* Inside the section's bytes, without adding what a
			 * corrupt file can make wrap. */
			if (f->addr < sh->sh_addr || f->addr - sh->sh_addr > d->d_size ||
			    f->size > d->d_size - (f->addr - sh->sh_addr))
				continue;
			const uint8_t *code = (const uint8_t *)d->d_buf + (f->addr - sh->sh_addr);
			if (sc->b->machine == EM_AARCH64) {
				uint64_t clen = code_len_a64(sc, f);
				arch_a64_scan_function(code, clen, f->addr, on_branch, on_address, &sw);
				int off = f->addr & 3 ? -1 : arch_a64_entry_word(code, clen);
				sc->b->funcs[k].entry_ok = off >= 0;
				sc->b->funcs[k].entry_off = (uint8_t)(off > 0 ? off : 0);
				continue;
			}
			struct arch_entry_info info = { .on_target = on_target,
							 .on_address = on_address };
			size_t done = arch_x86_scan_function(code, f->size, f->addr, on_branch, &info, &sw);
			sc->b->funcs[k].entry_ok = done == f->size && info.decoded_entry &&
						   !info.call_in_entry && !info.indirect_jump;
		}
	}
	if (!sw.rc)
		entries_hit_by_branches(&sw);
	free(sw.targets);
	return sw.rc ? core_errf(err, sw.rc, "out of memory") : 0;
}

/* Sort and merge the two sources' sites. */
static void dedupe_sites(struct elf_binary *b)
{
	if (!b->nsites) /* sites may be NULL: no qsort(NULL, 0) (fuzzing, tests/fuzz) */
		return;
	qsort(b->sites, b->nsites, sizeof(*b->sites), cmp_site);
	size_t w = 0;
	for (size_t i = 0; i < b->nsites; i++)
		if (!w || b->sites[w - 1].site != b->sites[i].site)
			b->sites[w++] = b->sites[i];
	b->nsites = w;
}

static int read_relocations(struct scan *sc, struct core_err *err)
{
	struct elf_binary *b = sc->b;
	size_t shstrndx, code_relocs = 0;
	if (elf_getshdrstrndx(sc->elf, &shstrndx) != 0)
		return core_errf(err, OCOLOS_EELF, "'%s': no section name table", b->path);
	for (size_t i = 0; i < sc->shnum; i++) {
		const GElf_Shdr *sh = &sc->shdrs[i];
		/* Static relocations kept by --emit-relocs are non-alloc RELA
		 * sections against .symtab; .rela.dyn/.rela.plt are alloc. */
		if (sh->sh_type != SHT_RELA || (sh->sh_flags & SHF_ALLOC) ||
		    sh->sh_link != sc->symtab_idx || !sh->sh_info || sh->sh_info >= sc->shnum)
			continue;
		const GElf_Shdr *tsh = &sc->shdrs[sh->sh_info];
		if (!(tsh->sh_flags & SHF_ALLOC))
			continue;
		const char *tname = elf_strptr(sc->elf, shstrndx, tsh->sh_name);
		Elf_Data *rdata = elf_getdata(elf_getscn(sc->elf, i), NULL);
		Elf_Data *tdata = elf_getdata(elf_getscn(sc->elf, sh->sh_info), NULL);
		size_t n = elf_table_len(sh, rdata);
		int is_code = (tsh->sh_flags & SHF_EXECINSTR) != 0;
		code_relocs += is_code ? n : 0;
		for (size_t k = 0; rdata && k < n; k++) {
			GElf_Rela r;
			if (!gelf_getrela(rdata, (int)k, &r))
				return core_errf(err, OCOLOS_EELF, "'%s': bad relocation", b->path);
			int section;
			uint64_t s = reloc_sym_value(sc, GELF_R_SYM(r.r_info), &section);
			if (!s)
				continue;
			int rc = is_code ? add_code_reloc(sc, tsh, tdata, &r, s, section)
					 : add_data_reloc(sc, tname ? tname : "", tsh, &r, s, section);
			if (rc)
				return rc;
		}
	}
	if (!code_relocs)
		return core_errf(err, OCOLOS_ENORELOCS,
				 "'%s' has no static relocations for its code: relink it with "
				 "-Wl,--emit-relocs (LDFLAGS) so call sites and v-tables can be found", b->path);
	b->reloc_sites = b->nsites;
	int rc = sweep_functions(sc, err);
	if (rc)
		return rc;
	dedupe_sites(b);
	if (b->na64_refs)
		qsort(b->a64_refs, b->na64_refs, sizeof(*b->a64_refs), cmp_a64_ref);
	return 0;
}

int elf_binary_open(const char *path, struct elf_binary **out, struct core_err *err)
{
	*out = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return core_errf(err, OCOLOS_EELF, "libelf is too old: %s", elf_errmsg(-1));
	struct elf_binary *b = calloc(1, sizeof(*b));
	if (!b || !(b->path = strdup(path))) {
		free(b);
		return OCOLOS_ENOMEM;
	}
	b->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct scan sc = { .b = b };
	int rc;
	struct stat st;
	if (b->fd < 0 || fstat(b->fd, &st) != 0) {
		rc = core_errf(err, OCOLOS_EIO, "cannot open '%s': %s", path, strerror(errno));
		goto fail;
	}
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	Elf *elf = elf_begin(b->fd, ELF_C_READ_MMAP, NULL);
	b->elf = elf;
	sc.elf = elf;
	GElf_Ehdr eh;
	if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh) ||
	    gelf_getclass(elf) != ELFCLASS64) {
		rc = core_errf(err, OCOLOS_EELF, "'%s' is not a 64-bit ELF file", path);
		goto fail;
	}
	b->machine = eh.e_machine;
	b->is_pie = eh.e_type == ET_DYN;
	if (eh.e_machine != EM_X86_64 && eh.e_machine != EM_AARCH64) {
		rc = core_errf(err, OCOLOS_ENOTSUP,
			       "'%s': ELF machine %u is not supported (x86-64 and AArch64 only)",
			       path, eh.e_machine);
		goto fail;
	}
	if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) {
		rc = core_errf(err, OCOLOS_EELF, "'%s' is not an executable", path);
		goto fail;
	}
	if ((rc = read_segments(&sc, err)) || (rc = read_sections(&sc, err)) ||
	    (rc = read_functions(&sc, err)) || (rc = read_relocations(&sc, err)) ||
	    (rc = read_dyn_relocs(&sc)) || (rc = elf_read_noreturn_plt(b)))
		goto fail;
	read_dynamic_symbols(&sc);
	free(sc.shdrs);
	free(sc.data_marks);
	*out = b;
	return 0;
fail:
	free(sc.shdrs);
	free(sc.data_marks);
	elf_binary_close(b);
	return rc == OCOLOS_ENOMEM ? core_errf(err, rc, "out of memory reading '%s'", path) : rc;
}

void elf_binary_close(struct elf_binary *b)
{
	if (!b)
		return;
	if (b->elf)
		elf_end(b->elf);
	if (b->fd >= 0)
		close(b->fd);
	free(b->segs);
	free(b->funcs);
	free(b->sites);
	free(b->slots);
	free(b->a64_refs);
	free(b->dyn_relocs);
	free(b->noreturn_plt);
	free(b->unwinding_plt);
	free(b->path);
	free(b);
}

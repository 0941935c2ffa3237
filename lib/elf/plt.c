/*
 * Which PLT entries lead to functions that never return (x86-64), and how.
 *
 * Why: retiring an old code version waits until no thread can return
 * into it, and the evidence is conservative — any stack or heap word equal
 * to one of the version's return sites (the address after one of its
 * calls) keeps it mapped. The address after a call to abort, exit or
 * __stack_chk_fail is a return site no thread ever returns to, yet the
 * call pushed it, and the word can stay behind in stack memory. Knowing
 * the callee never returns, the version leaves that address out of its
 * return sites (inject/version.c).
 *
 * Two kinds. Functions that end the process or the thread without
 * unwinding, or jump elsewhere (longjmp): the address after their call is
 * left out. Functions that unwind through their caller (__cxa_throw,
 * _Unwind_Resume, __cxa_rethrow, std::__throw_*, pthread_exit...): they
 * never return either, but while their unwind runs, the address after the
 * call is what the unwinder uses to find the caller's frame and its
 * landing pad — in the version. Those "throw sites" are kept apart: they
 * keep a version mapped only in the stack of a thread that is inside the
 * unwinder at the stop (inject/switch.c); once the throw is over, the word
 * left behind is dead, and no thread can start a new throw from a version
 * it no longer runs in.
 *
 * An entry is resolved as the dynamic linker does: its `jmp *GOT(%rip)`
 * names a GOT word, and the JUMP_SLOT (lazy PLT) or GLOB_DAT (.plt.got)
 * relocation of that word names the symbol. An entry we cannot read is
 * simply not listed: its return sites are kept, as before.
 */
#include <elf.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "elf/binary.h"
#include "elf/table.h"

static const char *const noreturn_names[] = {
	"_ZSt9terminatev", "abort", "exit", "_exit", "_Exit", "quick_exit",
	"__stack_chk_fail", "__assert_fail", "__assert_perror_fail", "__chk_fail",
	"__fortify_fail", "longjmp", "_longjmp", "siglongjmp", "__longjmp_chk",
	"err", "errx", "verr", "verrx",
};

static const char *const unwinding_names[] = {
	"__cxa_throw", "__cxa_rethrow", "_Unwind_Resume", "_Unwind_RaiseException",
	"_Unwind_Resume_or_Rethrow", "_Unwind_ForcedUnwind", "pthread_exit",
	"__cxa_bad_cast", "__cxa_bad_typeid", "__cxa_throw_bad_array_new_length",
	"_ZSt17rethrow_exceptionNSt15__exception_ptr13exception_ptrE",
};

int elf_unwinding_name(const char *name)
{
	if (!name)
		return 0;
	for (size_t i = 0; i < sizeof(unwinding_names) / sizeof(unwinding_names[0]); i++)
		if (!strcmp(name, unwinding_names[i]))
			return 1;
	/* std::__throw_logic_error(char const*) and its family:
	 * _ZSt<length>__throw_<what> */
	if (!strncmp(name, "_ZSt", 4)) {
		const char *p = name + 4;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p > name + 4 && !strncmp(p, "__throw_", 8))
			return 1;
	}
	return 0;
}

/* ELF_NORETURN_ENDS, ELF_NORETURN_UNWINDS or 0 for the function `name`. */
static int noreturn_kind(const char *name)
{
	if (!name)
		return 0;
	for (size_t i = 0; i < sizeof(noreturn_names) / sizeof(noreturn_names[0]); i++)
		if (!strcmp(name, noreturn_names[i]))
			return ELF_NORETURN_ENDS;
	return elf_unwinding_name(name) ? ELF_NORETURN_UNWINDS : 0;
}

/* GOT word -> the noreturn kind of its symbol; sorted by GOT address. */
struct got_word {
	uint64_t got;
	int kind;
};

static int cmp_got(const void *a, const void *b)
{
	const struct got_word *x = a, *y = b;
	return x->got < y->got ? -1 : x->got > y->got;
}

static const struct got_word *find_got(const struct got_word *v, size_t n, uint64_t got)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].got < got)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].got == got ? &v[lo] : NULL;
}

/* The GOT words the PLT may jump through, from the allocated RELA
 * sections' JUMP_SLOT and GLOB_DAT relocations. */
static int read_got_words(Elf *elf, struct got_word **out, size_t *nout)
{
	struct got_word *v = NULL;
	size_t n = 0, cap = 0;
	for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_RELA || !(sh.sh_flags & SHF_ALLOC) ||
		    !sh.sh_entsize)
			continue;
		Elf_Scn *symscn = elf_getscn(elf, sh.sh_link);
		GElf_Shdr symsh;
		Elf_Data *d = elf_getdata(scn, NULL);
		Elf_Data *syms = symscn ? elf_getdata(symscn, NULL) : NULL;
		if (!d || !syms || !gelf_getshdr(symscn, &symsh))
			continue;
		for (size_t i = 0, nrel = elf_table_len(&sh, d); i < nrel; i++) {
			GElf_Rela r;
			GElf_Sym sym;
			if (!gelf_getrela(d, (int)i, &r))
				continue;
			uint32_t type = (uint32_t)GELF_R_TYPE(r.r_info);
			if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
				continue;
			if (!gelf_getsym(syms, (int)GELF_R_SYM(r.r_info), &sym))
				continue;
			if (core_grow((void **)&v, &cap, n, sizeof(*v))) {
				free(v);
				return OCOLOS_ENOMEM;
			}
			v[n++] = (struct got_word){ r.r_offset,
				noreturn_kind(elf_strptr(elf, symsh.sh_link, sym.st_name)) };
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_got);
	*out = v;
	*nout = n;
	return 0;
}

int elf_read_noreturn_plt(struct elf_binary *b)
{
	Elf *elf = b->elf;
	size_t shstrndx;
	if (b->machine != EM_X86_64 || elf_getshdrstrndx(elf, &shstrndx))
		return 0;
	struct got_word *got = NULL;
	size_t ngot = 0, cap[2] = { 0, 0 };
	if (read_got_words(elf, &got, &ngot))
		return OCOLOS_ENOMEM;
	int rc = 0;
	for (Elf_Scn *scn = elf_nextscn(elf, NULL); ngot && scn && !rc; scn = elf_nextscn(elf, scn)) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
		    !(sh.sh_flags & SHF_EXECINSTR))
			continue;
		const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name || strncmp(name, ".plt", 4) || (name[4] && name[4] != '.'))
			continue; /* .plt, .plt.sec, .plt.got */
		Elf_Data *d = elf_getdata(scn, NULL);
		if (!d || !d->d_buf || d->d_size < 6)
			continue;
		const uint8_t *code = d->d_buf;
		uint64_t ent = sh.sh_entsize ? sh.sh_entsize : 16;
		/* Every `jmp *rel32(%rip)` (ff 25, after endbr64 / a bnd prefix
		 * or not) names the GOT word of the entry it is in. */
		for (size_t i = 0; i + 6 <= d->d_size && !rc; i++) {
			if (code[i] != 0xff || code[i + 1] != 0x25)
				continue;
			int32_t rel;
			memcpy(&rel, code + i + 2, 4);
			const struct got_word *g = find_got(got, ngot, sh.sh_addr + i + 6 + (int64_t)rel);
			if (!g || !g->kind)
				continue;
			uint64_t at = sh.sh_addr + i / ent * ent;
			int u = g->kind == ELF_NORETURN_UNWINDS;
			uint64_t **v = u ? &b->unwinding_plt : &b->noreturn_plt;
			size_t *n = u ? &b->nunwinding_plt : &b->nnoreturn_plt;
			if (core_grow((void **)v, &cap[u], *n, sizeof(**v)))
				rc = OCOLOS_ENOMEM;
			else
				(*v)[(*n)++] = at;
		}
	}
	free(got);
	if (b->nnoreturn_plt)
		qsort(b->noreturn_plt, b->nnoreturn_plt, sizeof(*b->noreturn_plt), core_cmp_u64);
	if (b->nunwinding_plt)
		qsort(b->unwinding_plt, b->nunwinding_plt, sizeof(*b->unwinding_plt), core_cmp_u64);
	return rc;
}

int elf_noreturn_target(const struct elf_binary *b, uint64_t addr)
{
	if (core_sorted_has(b->noreturn_plt, b->nnoreturn_plt, addr))
		return ELF_NORETURN_ENDS;
	return core_sorted_has(b->unwinding_plt, b->nunwinding_plt, addr) ? ELF_NORETURN_UNWINDS : 0;
}

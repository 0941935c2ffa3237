/*
 * elf/binary.c on an AArch64 executable (this test itself, linked with
 * --emit-relocs): call sites come from R_AARCH64_CALL26/JUMP26 and each
 * one's instruction, as loaded, branches to the start of its function;
 * the const function-pointer table is found through R_AARCH64_ABS64;
 * the ADRP, ADD :lo12: and load forming or reading a function's address
 * are recorded with the function they name.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "elf/binary.h"
#include "arch/arch.h"

__attribute__((noipa)) static int leaf(int x) { return x * 3 + 1; }
int mid(int x);
__attribute__((noipa)) int mid(int x) { return leaf(x) + leaf(x + 1); }
static int (*const table[])(int) = { leaf, mid };

/* leaf's address formed as GCC does at -Os (one ADRP, two ADDs apart),
 * and its first word read through the same page: the relocations name
 * each of them (keep_c0.c relies on it). */
__attribute__((noipa)) static uintptr_t takes_leaf(uint32_t *first)
{
	uintptr_t page, a, b;
	__asm__ volatile("adrp %0, leaf" : "=r"(page));
	__asm__ volatile("add %0, %1, :lo12:leaf" : "=r"(a) : "r"(page));
	__asm__ volatile("ldr %w0, [%1, :lo12:leaf]" : "=r"(*first) : "r"(page));
	__asm__ volatile("add %0, %1, :lo12:leaf" : "=r"(b) : "r"(page));
	return a ^ b;
}

int main(int argc, char **argv)
{
	(void)argc;
	struct elf_binary *b;
	struct core_err err = { 0 };
	check(elf_binary_open("/proc/self/exe", &b, &err) == 0, "open: %s", err.msg);
	check(b->machine == 183 /* EM_AARCH64 */, "machine %u", b->machine);
	check(b->reloc_sites > 0 && b->nsites > b->reloc_sites, "sites %zu (relocs %zu)", b->nsites,
	       b->reloc_sites);
	long fm = -1;
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!strcmp(b->funcs[i].name, "mid"))
			fm = (long)i;
	check(fm >= 0, "no function 'mid'");
	uint64_t bias = (uint64_t)(uintptr_t)mid - b->funcs[fm].addr;
	int to_leaf = 0;
	for (size_t i = 0; i < b->nsites; i++) {
		const struct elf_branch_site *s = &b->sites[i];
		uint32_t w;
		memcpy(&w, (const void *)(uintptr_t)(bias + s->site), 4);
		check(arch_a64_branch_kind(w) == s->opcode, "site 0x%llx: %08x", (unsigned long long)s->site, w);
		check(arch_a64_branch_target(s->site, w) == b->funcs[s->func].addr,
		       "site 0x%llx does not branch to %s", (unsigned long long)s->site, b->funcs[s->func].name);
		to_leaf += !strcmp(b->funcs[s->func].name, "leaf");
	}
	/* mid calls the static leaf twice (or once plus a tail call) */
	check(to_leaf >= 2, "calls to the static function 'leaf' found: %d", to_leaf);
	int slots = 0;
	for (size_t i = 0; i < b->nslots; i++)
		slots += b->slots[i].addr + bias == (uint64_t)(uintptr_t)&table[0] ||
			 b->slots[i].addr + bias == (uint64_t)(uintptr_t)&table[1];
	check(slots == 2, "const table slots found: %d", slots);
	/* The references forming leaf's address, as relocated: each word, as
	 * loaded, is the form its kind says, naming leaf. */
	uint32_t first;
	check(takes_leaf(&first) == 0 && first, "takes_leaf");
	int kinds[5] = { 0 };
	uint64_t leaf_addr = (uint64_t)(uintptr_t)leaf - bias;
	for (size_t i = 0; i < b->na64_refs; i++) {
		const struct elf_a64_ref *r = &b->a64_refs[i];
		check(i == 0 || b->a64_refs[i - 1].at < r->at, "refs not sorted");
		check(elf_a64_ref_at(b, r->at) == r, "lookup of 0x%llx", (unsigned long long)r->at);
		if (strcmp(b->funcs[r->func].name, "leaf"))
			continue;
		uint32_t w;
		uint64_t page;
		memcpy(&w, (const void *)(uintptr_t)(bias + r->at), 4);
		if (r->kind == ELF_A64_REF_PAGE)
			check(arch_a64_adrp_page(r->at, w, &page) && page == (leaf_addr & ~0xfffull),
			      "ADRP at 0x%llx: %08x", (unsigned long long)r->at, w);
		if (r->kind == ELF_A64_REF_ADD)
			check(arch_a64_is_add_lo12(w) && ((w >> 10) & 0xfff) == (leaf_addr & 0xfff),
			      "ADD at 0x%llx: %08x", (unsigned long long)r->at, w);
		kinds[r->kind < 5 ? r->kind : 0]++;
	}
	check(kinds[ELF_A64_REF_PAGE] >= 1 && kinds[ELF_A64_REF_ADD] >= 2 &&
	      kinds[ELF_A64_REF_LO12_LDST] >= 1, "references to leaf: %d ADRP, %d ADD, %d loads",
	      kinds[ELF_A64_REF_PAGE], kinds[ELF_A64_REF_ADD], kinds[ELF_A64_REF_LO12_LDST]);
	check(!elf_a64_ref_at(b, leaf_addr), "a reference where none is");
	printf("%d\n", table[argv[0][0] == 0](2)); /* keep the table */
	fprintf(stderr, "PASS: %zu sites, %zu slots\n", b->nsites, b->nslots);
	elf_binary_close(b);
	return 0;
}

/*
 * Where BOLT puts new code, when it cannot be told (BOLT 19 has no
 * --custom-allocation-vma; RewriteInstance::discoverStorage with
 * --no-huge-pages; PageAlign is 64 KiB for AArch64 inputs, 4 KiB for
 * x86-64, and 64 KiB covers both):
 *   A = alignTo(max(p_vaddr + p_memsz), PageAlign)
 *   O = alignTo(max(max(p_offset + p_filesz), file size), PageAlign)
 *   if O > A - first p_vaddr:  A = O + first p_vaddr
 * then the new program-header table, then the code (64-byte aligned).
 * The file size matters because BOLT keeps file offset and address
 * congruent: a binary with large non-loaded sections (.symtab, the
 * relocations of --emit-relocs, debug info) gets its new code further up.
 *
 * And how to make it put new code at an address of our choosing: the rule
 * reads only the program headers, so a copy of the binary whose highest
 * PT_LOAD ends exactly at that address (64 KiB-aligned, at or above both
 * terms) makes A that address; nothing BOLT reads for code or the profile
 * moves.
 */
#include "elf/edit.h"
#include "layout/layout.h"

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

uint64_t layout_bolt_new_code_at(uint64_t first, uint64_t img_hi, uint64_t file_hi)
{
	uint64_t a = align_up(img_hi, LAYOUT_BOLT_PAGE_ALIGN);
	uint64_t o = align_up(file_hi, LAYOUT_BOLT_PAGE_ALIGN);
	return o > a - first ? o + first : a;
}

int layout_bolt_placed_copy(const char *src, const char *dst, uint64_t vma,
			    struct core_err *err)
{
	if (vma & (LAYOUT_BOLT_PAGE_ALIGN - 1))
		return core_errf(err, OCOLOS_EINVAL, "internal: new code at 0x%llx is not %llu "
				 "KiB-aligned", (unsigned long long)vma,
				 (unsigned long long)(LAYOUT_BOLT_PAGE_ALIGN >> 10));
	return elf_copy_with_load_end(src, dst, vma, err);
}

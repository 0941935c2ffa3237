/*
 * Mapping C1 into the reservation. Each new segment is mapped anonymous
 * read-write over its part of the reservation, filled from BOLT's output,
 * then mprotect'ed to the segment's own protection. Nothing can execute C1
 * yet (no call site points there until the stop), so the brief RW state
 * is never executable. Anonymous rather than a file mapping: the output
 * file lives in a work directory that is deleted after the round.
 */
#include <errno.h>
#include <elf.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "inject/inject.h"

static int prot_of(uint32_t flags)
{
	return ((flags & PF_R) ? PROT_READ : 0) | ((flags & PF_W) ? PROT_WRITE : 0) |
	       ((flags & PF_X) ? PROT_EXEC : 0);
}

int inject_map_c1(const struct bolt_output *o, uint64_t bias,
		  struct inject_reservation *r, uint64_t *mapped, struct core_err *err)
{
	*mapped = 0;
	const uint64_t PAGE = arch_page_size();
	/* Each segment gets pages of its own protection: two sharing a page
	 * would need one mapping with both protections. BOLT page-aligns its
	 * segments; refuse anything else rather than weaken W^X. */
	for (size_t i = 0; i < o->nsegs; i++)
		for (size_t k = 0; k < o->nsegs; k++) {
			const struct elf_segment *a = &o->segs[i], *b = &o->segs[k];
			if (i != k && a->vaddr <= b->vaddr &&
			    ((a->vaddr + a->memsz + PAGE - 1) & ~(PAGE - 1)) > (b->vaddr & ~(PAGE - 1)))
				return core_errf(err, OCOLOS_EBOLT,
						 "BOLT placed two new segments on one page (0x%llx, 0x%llx)",
						 (unsigned long long)a->vaddr, (unsigned long long)b->vaddr);
		}
	for (size_t i = 0; i < o->nsegs; i++) {
		const struct elf_segment *s = &o->segs[i];
		uint64_t start = (bias + s->vaddr) & ~(PAGE - 1);
		uint64_t end = (bias + s->vaddr + s->memsz + PAGE - 1) & ~(PAGE - 1);
		if (start < r->addr || end > r->addr + r->size)
			return core_errf(err, OCOLOS_EBOLT, "C1 segment 0x%llx-0x%llx is outside the reservation",
					 (unsigned long long)start, (unsigned long long)end);
		void *p = mmap((void *)start, end - start, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		if (p == MAP_FAILED)
			return core_errf(err, OCOLOS_ENOMEM, "cannot map %llu bytes of C1: %s",
					 (unsigned long long)(end - start), strerror(errno));
		uint64_t done = 0;
		while (done < s->filesz) {
			ssize_t n = pread(o->fd, (void *)(bias + s->vaddr + done), s->filesz - done,
					  (off_t)(s->offset + done));
			if (n <= 0)
				return core_errf(err, OCOLOS_EIO, "cannot read C1 from BOLT's output");
			done += (uint64_t)n;
		}
		if (s->flags & PF_X)
			arch_code_changed(bias + s->vaddr, bias + s->vaddr + s->filesz);
		if (mprotect(p, end - start, prot_of(s->flags)) != 0)
			return core_errf(err, OCOLOS_ENOTSUP, "cannot make C1 executable: %s "
					 "(a policy forbids new executable memory?)", strerror(errno));
		*mapped += end - start;
	}
	return 0;
}

int inject_map_island(const struct inject_plan *plan, struct core_err *err)
{
	if (!plan->island || !plan->island_len)
		return 0;
	const uint64_t PAGE = arch_page_size();
	uint64_t start = plan->island & ~(PAGE - 1);
	uint64_t end = (plan->island + plan->island_len + PAGE - 1) & ~(PAGE - 1);
	/* Over the island's PROT_NONE reservation; nothing branches here
	 * before the stop, so the read-write window is never executable. */
	void *p = mmap((void *)start, end - start, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED)
		return core_errf(err, OCOLOS_ENOMEM, "cannot map the veneer island: %s", strerror(errno));
	memcpy((void *)(uintptr_t)plan->island, plan->island_code, plan->island_len);
	arch_code_changed(plan->island, plan->island + plan->island_len);
	if (mprotect(p, end - start, PROT_READ | PROT_EXEC) != 0)
		return core_errf(err, OCOLOS_ENOTSUP, "cannot make the veneer island executable: %s "
				 "(a policy forbids new executable memory?)", strerror(errno));
	return 0;
}

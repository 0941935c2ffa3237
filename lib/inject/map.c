/*
 * Mapping new code into the reservation: C1's segments from BOLT's output,
 * and (AArch64) the veneer island. Each mapping gets its final protection
 * without ever being writable and executable at once (how is the target's
 * business: proc_target_ops.map_fill). Nothing can execute the new code yet:
 * no call site points there until the stop. Anonymous rather than a file
 * mapping: the output file lives in a work directory removed after the
 * round.
 */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
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

int inject_map_c1(struct proc_target *t, const struct bolt_output *o, uint64_t bias,
		  const struct inject_fixups *fx, uint32_t gen, struct inject_reservation *r,
		  uint64_t *mapped, struct core_err *err)
{
	char name[32];
	snprintf(name, sizeof(name), "ocolos-c%u", gen);
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
		int prot = prot_of(s->flags);
		if (start < r->addr || end > r->addr + r->size || ((prot & PROT_WRITE) && (prot & PROT_EXEC)))
			return core_errf(err, OCOLOS_EBOLT, "C1 segment 0x%llx-0x%llx cannot be mapped "
					 "(outside the reservation, or writable and executable)",
					 (unsigned long long)start, (unsigned long long)end);
		size_t lead = (size_t)(bias + s->vaddr - start), len = lead + (size_t)s->filesz;
		uint8_t *buf = calloc(1, len ? len : 1);
		if (!buf)
			return core_errf(err, OCOLOS_ENOMEM, "out of memory reading C1");
		if (pread(o->fd, buf + lead, s->filesz, (off_t)s->offset) != (ssize_t)s->filesz) {
			free(buf);
			return core_errf(err, OCOLOS_EIO, "cannot read C1 from BOLT's output");
		}
		inject_fixups_apply(fx, s->vaddr, buf + lead, (size_t)s->filesz);
		int rc = t->ops->map_fill(t, start, end - start, prot, buf, len, name, err);
		free(buf);
		if (rc)
			return rc;
		*mapped += end - start;
	}
	return 0;
}

int inject_map_island(struct proc_target *t, const struct inject_plan *plan, uint32_t gen,
		      struct core_err *err)
{
	char name[32];
	snprintf(name, sizeof(name), "ocolos-c%u-veneers", gen);
	if (!plan->island || !plan->island_len)
		return 0;
	const uint64_t PAGE = arch_page_size();
	uint64_t start = plan->island & ~(PAGE - 1);
	uint64_t end = (plan->island + plan->island_len + PAGE - 1) & ~(PAGE - 1);
	size_t lead = (size_t)(plan->island - start);
	uint8_t *buf = calloc(1, lead + plan->island_len);
	if (!buf)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory");
	memcpy(buf + lead, plan->island_code, plan->island_len);
	int rc = t->ops->map_fill(t, start, end - start, PROT_READ | PROT_EXEC, buf,
				  lead + plan->island_len, name, err);
	free(buf);
	return rc;
}

/*
 * Reservation of the C1 address range. It must be
 *  - within rel32 reach of the whole image, both ways (C1 calls C0 and
 *    reads its data RIP-relatively; C0 call sites jump to C1);
 *  - above the image, so its link-time address is above every original
 *    segment (BOLT appends new segments there);
 *  - away from the image's end, so a brk heap growing after .bss keeps room.
 * It is mapped PROT_NONE at once so nothing else lands there while BOLT runs
 * (by the target: a local mmap, or one injected into another process).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inject/inject.h"
#include "inject/target.h"

#define HEAP_ROOM (256ull << 20)
#define ALIGN (2ull << 20)

int inject_reserve(struct target *t, const struct elf_binary *b, uint64_t bias, uint64_t size,
		   struct inject_reservation *r, struct core_err *err)
{
	uint64_t img_lo = bias + b->img_lo, img_hi = bias + b->img_hi;
	uint64_t lo = (img_hi + ALIGN - 1) & ~(ALIGN - 1);
	uint64_t hi = img_lo + (uint64_t)INT32_MAX;
	memset(r, 0, sizeof(*r));
	if (hi <= lo || hi - lo < size)
		return core_errf(err, OCOLOS_ERESERVE,
				 "the binary's image is too large to place %llu MiB of new code within "
				 "2 GiB of it", (unsigned long long)(size >> 20));
	uint64_t slack = hi - lo - size;
	uint64_t near = lo + (slack / 2 < HEAP_ROOM ? slack / 2 : HEAP_ROOM);
	for (int attempt = 0; attempt < 4; attempt++) {
		struct procmaps m = { 0 };
		int rc = procmaps_read(t->pid, &m, err);
		if (rc)
			return rc;
		uint64_t a = procmaps_find_free(&m, size, ALIGN, lo, hi, near);
		procmaps_free(&m);
		if (!a)
			break;
		rc = t->ops->reserve_at(t, a, size, err);
		if (rc == 0) {
			r->addr = a;
			r->size = size;
			return 0;
		}
		if (rc < 0)
			return rc;
		/* someone mapped the gap meanwhile: look again */
	}
	return core_errf(err, OCOLOS_ERESERVE,
			 "no free %llu MiB range within 2 GiB above the binary (0x%llx-0x%llx); "
			 "the address space near the program is full",
			 (unsigned long long)(size >> 20), (unsigned long long)lo, (unsigned long long)hi);
}

void inject_reservation_trim(struct target *t, struct inject_reservation *r, uint64_t from)
{
	from = (from + 4095) & ~4095ull;
	if (!r->size || from >= r->addr + r->size)
		return;
	if (from <= r->addr) {
		inject_reservation_release(t, r);
		return;
	}
	t->ops->unmap(t, from, r->addr + r->size - from);
	r->size = from - r->addr;
}

void inject_reservation_release(struct target *t, struct inject_reservation *r)
{
	if (r->size)
		t->ops->unmap(t, r->addr, r->size);
	r->addr = r->size = 0;
}

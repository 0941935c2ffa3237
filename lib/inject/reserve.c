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
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "inject/inject.h"
#include "layout/layout.h"
#include "proc/target.h"
#include "arch/arch.h"

#define HEAP_ROOM (256ull << 20)
#define ALIGN (2ull << 20)

/* Reserve `size` bytes in the target within [lo, hi), nearest `near`:
 * 0 (done), 1 (no free range), or an OCOLOS_E* code. An address the
 * target refuses although the maps show it free — mapped by someone else
 * between looking and mapping, or (qemu-user, 64 KiB pages) never listed
 * in /proc/self/maps — is stepped over, and the search goes on beyond it,
 * at most `tries` times. */
#define REFUSED_STEP (2ull << 20)

static int reserve_in(struct proc_target *t, uint64_t size, uint64_t align, uint64_t lo,
		      uint64_t hi, uint64_t near, int tries, struct inject_reservation *r,
		      struct core_err *err)
{
	for (int i = 0; i < tries && hi > lo && hi - lo >= size; i++) {
		struct procmaps m = { 0 };
		int rc = core_procmaps_read(t->pid, &m, err);
		if (rc)
			return rc;
		uint64_t a = core_procmaps_find_free(&m, size, align, lo, hi, near);
		core_procmaps_free(&m);
		if (!a)
			return 1;
		rc = t->ops->reserve_at(t, a, size, err);
		if (rc == 0) {
			r->addr = a;
			r->size = size;
			return 0;
		}
		if (rc < 0)
			return rc;
		if (a >= near) { /* look above it */
			lo = a + REFUSED_STEP;
			near = lo;
		} else {	 /* look below it */
			hi = a + size > REFUSED_STEP ? a + size - REFUSED_STEP : 0;
		}
	}
	return 1;
}

int inject_reserve(struct proc_target *t, const struct elf_binary *b, uint64_t bias, uint64_t size,
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
	int rc = reserve_in(t, size, ALIGN, lo, hi, near, 4, r, err);
	if (rc <= 0)
		return rc;
	return core_errf(err, OCOLOS_ERESERVE,
			 "no free %llu MiB range within 2 GiB above the binary (0x%llx-0x%llx); "
			 "the address space near the program is full",
			 (unsigned long long)(size >> 20), (unsigned long long)lo, (unsigned long long)hi);
}

/*
 * The fleet's place for C1: a fixed link-time address, the same in every
 * instance of a build (run time: load bias + it; absolute for non-PIE),
 * so that one BOLT output (an artifact, api/artifact.c) runs in all of
 * them. The kernel starts the brk heap at a random page up to 1 GiB after
 * the image (x86-64's arch_randomize_brk), so a place near the image is
 * taken by the heap in some instances; the top of rel32 reach of the
 * image (less a margin) is past that range for any image under ~600 MiB
 * and is otherwise empty (libraries and mmaps come from the top of the
 * address space). An image too large for that gets the place after it
 * inject_reserve() prefers; 0 if even that is out of reach for `size`.
 */
#define FLEET_MARGIN (64ull << 20)

uint64_t inject_fleet_vma(const struct elf_binary *b, uint64_t size)
{
	uint64_t lo = ((b->img_hi + ALIGN - 1) & ~(ALIGN - 1)) + HEAP_ROOM;
	uint64_t reach = (uint64_t)INT32_MAX + 1 - FLEET_MARGIN;
	if (lo + size - b->img_lo > reach)
		return 0;
	uint64_t top = (b->img_lo + reach - size) & ~(ALIGN - 1);
	return top > lo ? top : lo;
}

int inject_reserve_fixed(struct proc_target *t, uint64_t addr, uint64_t size,
			 struct inject_reservation *r, struct core_err *err)
{
	memset(r, 0, sizeof(*r));
	uint64_t page = arch_page_size();
	if (!size || (addr & (page - 1)) || (size & (page - 1)))
		return core_errf(err, OCOLOS_EINVAL, "cannot reserve %llu bytes at 0x%llx: not "
				 "page-aligned", (unsigned long long)size, (unsigned long long)addr);
	int rc = t->ops->reserve_at(t, addr, size, err);
	if (rc > 0)
		return core_errf(err, OCOLOS_ETAKEN, "the range 0x%llx-0x%llx is taken in "
				 "process %d (the heap or another mapping is there)",
				 (unsigned long long)addr, (unsigned long long)(addr + size), (int)t->pid);
	if (rc == 0) {
		r->addr = addr;
		r->size = size;
	}
	return rc;
}

int inject_reserve_island(struct proc_target *t, const struct elf_binary *b, uint64_t bias,
			  uint64_t size, struct inject_reservation *r, struct core_err *err)
{
	uint64_t page = arch_page_size();
	size = (size + page - 1) & ~(page - 1);
	uint64_t tlo = UINT64_MAX, thi = 0;
	for (size_t i = 0; i < b->nsegs; i++)
		if (b->segs[i].flags & PF_X) {
			tlo = b->segs[i].vaddr + bias < tlo ? b->segs[i].vaddr + bias : tlo;
			thi = b->segs[i].vaddr + b->segs[i].memsz + bias > thi
			      ? b->segs[i].vaddr + b->segs[i].memsz + bias : thi;
		}
	memset(r, 0, sizeof(*r));
	/* Every byte of the island within reach of every byte of the text. */
	uint64_t reach = ARCH_A64_BRANCH_REACH - page;
	uint64_t lo = thi > reach ? thi - reach : page;
	uint64_t hi = tlo + reach;
	int rc = thi > tlo ? reserve_in(t, size, page, lo, hi, tlo, 4, r, err) : 1;
	if (rc <= 0)
		return rc;
	return core_errf(err, OCOLOS_ERESERVE,
			 "C1 is out of BL reach of the code and there is no free %llu KiB within "
			 "128 MiB of it for veneers (0x%llx-0x%llx)", (unsigned long long)(size >> 10),
			 (unsigned long long)lo, (unsigned long long)hi);
}

/*
 * BOLT 19 puts new code right after the image (layout/placement.c has its
 * rule). We reserve from the lowest address that rule can give,
 * page-aligned, so that its result is inside whatever the exact layout:
 * [align(img_hi), A + room). The room is generous address space, not
 * memory (PROT_NONE, MAP_NORESERVE).
 */
#define EARLY_ALIGN LAYOUT_BOLT_PAGE_ALIGN
static struct inject_reservation early;	/* set once by the constructor */
static int early_taken;

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

/* The range the stack we run on may use, [*lo, *hi): its rlimit (256 MiB
 * at most) below the current frame plus 1 MiB, and 1 MiB above it. Kept
 * out of reservations because qemu-user with 64 KiB pages leaves the
 * guest stack out of /proc/self/maps. */
static void own_stack_range(uint64_t *lo, uint64_t *hi)
{
	struct rlimit rl;
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	uint64_t grow = getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur < (256ull << 20)
			? rl.rlim_cur : (256ull << 20);
	*lo = sp > grow + (1ull << 20) ? (sp - grow - (1ull << 20)) & ~(EARLY_ALIGN - 1) : 0;
	*hi = align_up(sp + (1ull << 20), EARLY_ALIGN);
}
#if defined(__aarch64__)
/* Only AArch64 needs it: on x86-64 the BOLT used has
 * --custom-allocation-vma and the reservation is made at round time. */

struct early_scan { uint64_t bias, first, hi, text, file_hi; int done; };

static int early_phdrs(struct dl_phdr_info *info, size_t size, void *data)
{
	struct early_scan *e = data;
	(void)size;
	if (e->done)
		return 1;
	e->done = 1; /* the first object is the executable */
	e->bias = info->dlpi_addr;
	e->first = UINT64_MAX;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		e->first = ph->p_vaddr < e->first ? ph->p_vaddr : e->first;
		e->hi = ph->p_vaddr + ph->p_memsz > e->hi ? ph->p_vaddr + ph->p_memsz : e->hi;
		e->file_hi = ph->p_offset + ph->p_filesz > e->file_hi ? ph->p_offset + ph->p_filesz
								     : e->file_hi;
		if (ph->p_flags & PF_X)
			e->text += ph->p_memsz;
	}
	return 1;
}

/* Start of the first mapping of /proc/self/maps that ends above `lo`
 * (<= lo: lo itself is taken), UINT64_MAX if none, 0 if the file cannot
 * be read. Reads with read(2) into a stack buffer: allocating here would
 * itself grow the brk heap into the range being checked. */
static uint64_t next_mapping(uint64_t lo)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[4096];
	size_t have = 0;
	uint64_t next = UINT64_MAX;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			char *end;
			uint64_t a = strtoull(line, &end, 16), b = *end == '-' ? strtoull(end + 1, NULL, 16) : 0;
			if (b > lo && a < next)
				next = a;
			line = nl + 1;
		}
		have = (size_t)(buf + have - line);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			have = 0; /* a line longer than the buffer: drop it (paths only) */
	}
	close(fd);
	return next;
}

/* Reserve the range BOLT 19 will choose for this process's executable. */
static void reserve_early(void)
{
	if (getenv("OCOLOS_NO_EARLY_RESERVE")) /* tests: show what happens without */
		return;
	struct early_scan e = { 0 };
	dl_iterate_phdr(early_phdrs, &e);
	if (!e.done || e.first == UINT64_MAX)
		return;
	struct stat st;
	uint64_t fsize = stat("/proc/self/exe", &st) == 0 ? (uint64_t)st.st_size : 0;
	uint64_t lo = align_up(e.hi, EARLY_ALIGN);
	uint64_t a = layout_bolt_new_code_at(e.first, e.hi, e.file_hi > fsize ? e.file_hi : fsize);
	uint64_t room = align_up(2 * e.text + (64ull << 20), 2ull << 20);
	uint64_t size = a - lo + room;
	/* qemu-user (7.2) treats MAP_FIXED_NOREPLACE as a mere hint and maps
	 * elsewhere; so look at /proc/self/maps first and map MAP_FIXED only
	 * over a free range. A constructor runs before main() starts threads,
	 * so nothing can map there in between. The range may be cut short by
	 * the next mapping (qemu-user puts the stack 32 MiB after the image):
	 * C1 is the hot code only, a fraction of the text. */
	uint64_t next = next_mapping(e.bias + lo);
	/* Keep clear of the stack we run on, too (own_stack_range). */
	uint64_t stack_lo, stack_hi;
	own_stack_range(&stack_lo, &stack_hi);
	if (stack_hi > e.bias + lo && stack_lo < next)
		next = stack_lo;
	if (next <= e.bias + lo)
		return;
	if (next - (e.bias + lo) < size)
		size = (next - (e.bias + lo)) & ~(EARLY_ALIGN - 1);
	if (size < a - lo + e.text + (1ull << 20))
		return;
	void *p = mmap((void *)(uintptr_t)(e.bias + lo), size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED)
		return;
	early = (struct inject_reservation){ e.bias + lo, size, 1 };
}

__attribute__((constructor)) static void reserve_early_ctor(void)
{
	reserve_early();
}
#endif

void inject_reserve_early_range(uint64_t *addr, uint64_t *size)
{
	*addr = early.addr;
	*size = early.size;
}

int inject_reserve_early_take(const struct elf_binary *b, uint64_t bias,
			      struct inject_reservation *r, struct core_err *err)
{
	memset(r, 0, sizeof(*r));
	if (!early.size)
		return core_errf(err, OCOLOS_ERESERVE,
				 "no load-time reservation: libocolos could not reserve the range "
				 "after the program where BOLT 19 places new code (the heap or another "
				 "mapping was there first, libocolos was loaded late, or "
				 "OCOLOS_NO_EARLY_RESERVE is set)");
	if (early.addr != bias + align_up(b->img_hi, EARLY_ALIGN))
		return core_errf(err, OCOLOS_ERESERVE,
				 "the early reservation at 0x%llx was made for another image than '%s' "
				 "(which ends at 0x%llx): optimize the process's own executable",
				 (unsigned long long)early.addr, b->path,
				 (unsigned long long)(bias + b->img_hi));
	if (early_taken)
		return core_errf(err, OCOLOS_ERESERVE,
				 "the range where BOLT 19 places new code holds an earlier round's code; "
				 "with a BOLT lacking --custom-allocation-vma only one round per process "
				 "can run");
	early_taken = 1;
	*r = early;
	return 0;
}

/*
 * The fallback when the early range is missing or unusable (the heap took
 * it before the constructor ran: libstdc++'s start-up allocates its
 * emergency exception pool, and qemu-user starts the brk heap right after
 * the image). BOLT 19 cannot be told an address, but it derives one from
 * the input's program headers only (rule above), so the round gives it a
 * copy of the binary whose highest PT_LOAD's p_memsz reaches the range
 * picked here (layout_bolt_placed_copy); nothing BOLT reads for code or
 * the profile moves. The range must therefore
 *  - start 64 KiB-aligned at link time, at or above both terms of the rule
 *    (the image end and the file-offset term), so that the rule's result
 *    is exactly its start;
 *  - lie within branch reach of the text (BL: 128 MiB), or beyond it only
 *    when nothing within reach is free (C1 is then reached by veneers);
 *  - leave the brk heap some room and keep clear of the stack we run on.
 * qemu-user with 64 KiB pages leaves the stack and parts of the libraries
 * out of /proc/self/maps, and maps a MAP_FIXED_NOREPLACE request over them
 * elsewhere (reserve_at says "taken"): so a refused address is skipped and
 * the search goes on above it.
 */
#define PLACED_HEAP_ROOM (16ull << 20)
#define PLACED_FAR (1ull << 30)
#define PLACED_TRIES 64

int inject_reserve_placed(struct proc_target *t, const struct elf_binary *b, uint64_t bias,
			  struct inject_reservation *r, struct core_err *err)
{
	memset(r, 0, sizeof(*r));
	struct stat st;
	if (fstat(b->fd, &st) != 0)
		return core_errf(err, OCOLOS_EIO, "cannot stat '%s': %s", b->path, strerror(errno));
	if (bias & (EARLY_ALIGN - 1))
		return core_errf(err, OCOLOS_ERESERVE,
				 "'%s' is loaded at 0x%llx, not 64 KiB-aligned: BOLT 19 aligns new code to "
				 "64 KiB at link time, so it cannot be placed; relink with "
				 "-z max-page-size=65536", b->path, (unsigned long long)bias);
	uint64_t file_hi = (uint64_t)st.st_size, tlo = UINT64_MAX, thi = 0;
	for (size_t i = 0; i < b->nsegs; i++) {
		const struct elf_segment *s = &b->segs[i];
		file_hi = s->offset + s->filesz > file_hi ? s->offset + s->filesz : file_hi;
		if (s->flags & PF_X) {
			tlo = s->vaddr < tlo ? s->vaddr : tlo;
			thi = s->vaddr + s->memsz > thi ? s->vaddr + s->memsz : thi;
		}
	}
	if (thi <= tlo)
		return core_errf(err, OCOLOS_EINVAL, "'%s' has no executable segment", b->path);
	uint64_t floor = layout_bolt_new_code_at(b->img_lo, b->img_hi, file_hi);
	uint64_t page = arch_page_size();
	uint64_t reach = b->machine == EM_AARCH64 ? ARCH_A64_BRANCH_REACH - page
						  : (uint64_t)INT32_MAX;
	uint64_t lo = bias + floor, hi = bias + tlo + reach;
	/* The stack: [sp - its limit - 1 MiB, sp + 1 MiB) stays out. */
	uint64_t stk_lo = 0, stk_hi = 0;
	if (t->pid == getpid())
		own_stack_range(&stk_lo, &stk_hi);
	/* Generous first (as the early range), then what C1 needs at least:
	 * the hot code is a fraction of the text. */
	uint64_t sizes[3] = { align_up(2 * b->text_bytes + (64ull << 20), 2ull << 20),
		align_up(2 * b->text_bytes + (16ull << 20), EARLY_ALIGN),
		align_up(b->text_bytes + (1ull << 20), EARLY_ALIGN) };
	for (int far = 0; far < 2; far++) {
		uint64_t whi = far ? lo + PLACED_FAR : hi;
		uint64_t wlo = far ? (hi > lo ? hi : lo) : lo;
		/* the window without the stack: below it, then above it */
		uint64_t win[2][2] = { { wlo, whi }, { 0, 0 } };
		if (stk_hi > wlo && stk_lo < whi) {
			win[0][1] = stk_lo > wlo ? stk_lo : wlo;
			win[1][0] = stk_hi;
			win[1][1] = whi;
		}
		for (int k = 0; k < 3; k++)
			for (int w = 0; w < 2; w++) {
				uint64_t a = win[w][0], z = win[w][1], size = sizes[k];
				if (z <= a || z - a < size)
					continue;
				uint64_t slack = z - a - size;
				uint64_t near = a + (slack / 2 < PLACED_HEAP_ROOM ? slack / 2
										 : PLACED_HEAP_ROOM);
				int rc = reserve_in(t, size, EARLY_ALIGN, a, z, near, PLACED_TRIES, r, err);
				if (rc <= 0)
					return rc;
			}
	}
	return core_errf(err, OCOLOS_ERESERVE,
			 "no free %llu MiB range above '%s' (from 0x%llx) for new code, within BL "
			 "reach of its code (up to 0x%llx) or 1 GiB beyond; the address space after "
			 "the program is full: start libocolos early (link it into the program) so "
			 "that its load-time reservation succeeds",
			 (unsigned long long)(sizes[2] >> 20), b->path, (unsigned long long)lo,
			 (unsigned long long)hi);
}

int inject_reserve_anywhere(struct proc_target *t, uint64_t size, uint64_t near,
			    struct inject_reservation *r, struct core_err *err)
{
	uint64_t page = arch_page_size();
	memset(r, 0, sizeof(*r));
	size = (size + page - 1) & ~(page - 1);
	int rc = reserve_in(t, size, page, 1ull << 32, (1ull << 47) - (1ull << 32), near, 4, r, err);
	if (rc <= 0)
		return rc;
	return core_errf(err, OCOLOS_ERESERVE, "no free %llu KiB in process %d's address space",
			 (unsigned long long)(size >> 10), (int)t->pid);
}

void inject_reservation_trim(struct proc_target *t, struct inject_reservation *r, uint64_t from)
{
	uint64_t page = arch_page_size();
	from = (from + page - 1) & ~(page - 1);
	if (!r->size || from >= r->addr + r->size || r->early)
		return; /* the early range stays whole: see inject_reservation_release */
	if (from <= r->addr) {
		inject_reservation_release(t, r);
		return;
	}
	t->ops->unmap(t, from, r->addr + r->size - from);
	r->size = from - r->addr;
}

void inject_reservation_release(struct proc_target *t, struct inject_reservation *r)
{
	if (r->size && r->early) {
		/* Back to PROT_NONE, not unmapped: the heap must not grow into
		 * the range a next round's BOLT will use again. */
		if (mmap((void *)(uintptr_t)r->addr, r->size, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != MAP_FAILED)
			early_taken = 0;
	} else if (r->size) {
		t->ops->unmap(t, r->addr, r->size);
	}
	r->addr = r->size = 0;
}

/*
 * Whether a thread of another process, stopped wherever it was, may run a
 * library call injected into it (__register_frame_info and
 * __deregister_frame_info, target_ptrace.c).
 *
 * Why: the injected call runs on top of whatever the thread was doing. If
 * the thread was inside code that holds a lock the call needs, the call
 * waits for the thread itself: libgcc's registration takes the unwinder's
 * object mutex, deregistration also free()s (malloc's arena locks), and a
 * thread stopped inside fork() holds every arena lock (glibc takes them
 * around the clone, for the child). Found by the soak (bench/
 * continuous_soak.sh, round 491): a deregistration injected into the main
 * thread while it was forking took the object mutex, then waited forever
 * for an arena lock its own fork held; the call was abandoned after its
 * time limit with the object mutex still held, and every thread that threw
 * an exception from then on waited for it — 2,800 threads, all asleep.
 *
 * So before running a call in a thread, its PC and the words at the top of
 * its stack (return addresses of the frames it is in, conservatively) are
 * compared with the code of the functions that hold those locks: fork,
 * malloc's entry points, libgcc's unwinder and frame registry,
 * dl_iterate_phdr and dlopen's family. A thread found inside one is let
 * go and tried again a moment later (target_ptrace.c). The functions are
 * found by name in the libraries' .dynsym, with their sizes; a lock held
 * by code outside them (a program's own allocator around malloc, say) is
 * not seen: the call's time limit then still applies. Nor is a return
 * address more than 4 KiB above the stack pointer (a signal handler with
 * deep frames that interrupted malloc), nor, on AArch64, one still in the
 * link register of a leaf.
 *
 * The functions of the target's libraries are read here too, for every
 * caller (proc_lib_symbols: target_ptrace.c finds libgcc's entry points
 * with it).
 */
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "core/util.h"
#include "elf/table.h"
#include "proc/proc.h"

static const char *const lock_holders[] = {
	/* glibc: fork takes every arena lock around the clone */
	"fork", "_Fork", "__libc_fork", "vfork",
	/* malloc's entry points (their internals run below them) */
	"malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
	"aligned_alloc", "valloc", "pvalloc", "malloc_trim", "malloc_stats", "malloc_info",
	"mallinfo", "mallinfo2", "__libc_malloc", "__libc_free", "__libc_calloc",
	"__libc_realloc", "__libc_memalign", "__libc_valloc", "__libc_pvalloc",
	/* the dynamic linker's lists */
	"dl_iterate_phdr", "dlopen", "dlclose", "dlsym", "dlvsym", "dladdr", "dladdr1",
	"dlinfo", "dlmopen",
	/* libgcc's unwinder and frame registry (its object mutex) */
	"_Unwind_Find_FDE", "__register_frame_info", "__register_frame_info_bases",
	"__register_frame", "__register_frame_table", "__register_frame_info_table",
	"__register_frame_info_table_bases", "__deregister_frame_info",
	"__deregister_frame_info_bases", "__deregister_frame", "_Unwind_RaiseException",
	"_Unwind_Resume", "_Unwind_Resume_or_Rethrow", "_Unwind_ForcedUnwind",
	"_Unwind_Backtrace",
};

static int is_lock_holder(const char *name)
{
	for (size_t i = 0; i < sizeof(lock_holders) / sizeof(lock_holders[0]); i++)
		if (!strcmp(name, lock_holders[i]))
			return 1;
	return 0;
}

/* The libraries whose functions are listed: glibc, libgcc_s. */
static int watched_library(const char *base, void *user)
{
	(void)user;
	return !strncmp(base, "libc.so", 7) || !strncmp(base, "libc-", 5) ||
	       !strncmp(base, "libgcc_s.so", 11);
}

struct holders {
	uint64_t (*v)[2];
	size_t n, cap;
};

static int add_holder(void *user, const char *name, uint64_t start, uint64_t size, int type)
{
	struct holders *h = user;
	if (type != STT_FUNC || !size || !is_lock_holder(name))
		return 0;
	if (core_grow((void **)&h->v, &h->cap, h->n, sizeof(*h->v)))
		return OCOLOS_ENOMEM;
	h->v[h->n][0] = start;
	h->v[h->n][1] = start + size;
	h->n++;
	return 0;
}

int proc_lock_holder_ranges(pid_t pid, uint64_t (**out)[2], size_t *nout)
{
	struct holders h = { 0 };
	int rc = proc_lib_symbols(pid, watched_library, add_holder, &h);
	if (rc < 0) {
		free(h.v);
		h = (struct holders){ 0 };
		if (rc == OCOLOS_ENOMEM)
			return rc;
	}
	*out = h.v; /* none readable: nothing known, the time limit remains */
	*nout = h.n;
	return 0;
}

/* Is w in one of the ranges: [lo, hi) for a PC; (lo, hi] for a return
 * address (never a function's first byte, possibly one past its last: a
 * call that ends it), so that a stored pointer to free() is not one. */
static int in_ranges(const uint64_t (*r)[2], size_t n, uint64_t w, int ret)
{
	for (size_t i = 0; i < n; i++)
		if (ret ? w > r[i][0] && w <= r[i][1] : w >= r[i][0] && w < r[i][1])
			return 1;
	return 0;
}

/* How much of the stack is looked at: the frames of malloc, fork and the
 * unwinder below the point of the stop are far smaller (a conservative
 * look, so a stale word may also say no: the caller tries again). */
#define SAFE_POINT_STACK 4096

int proc_at_lock_holder(int memfd, uint64_t pc, uint64_t sp, const uint64_t (*r)[2], size_t n)
{
	if (!n)
		return 0;
	if (in_ranges(r, n, pc, 0))
		return 1;
	uint64_t words[SAFE_POINT_STACK / 8];
	size_t len = sizeof(words);
	/* The stack may end before 4 KiB (a thread's first frames): less. */
	while (len >= 64 && proc_mem_read(memfd, sp, words, len))
		len /= 2;
	for (size_t i = 0; len >= 64 && i < len / 8; i++)
		if (in_ranges(r, n, words[i], 1))
			return 1;
	return 0;
}

/* ---- the malloc lock a deregistration takes ---- */

/*
 * libgcc's __deregister_frame_info frees the sorted FDE array it hung on
 * the object, with its own mutex held; free() takes the lock of the malloc
 * arena the array came from (the thread that first threw through the
 * version allocated it). If that lock is held — by the thread the call is
 * injected into (stopped inside free() or fork(), which takes every arena
 * lock), or by anyone for good — the call waits for it with libgcc's mutex
 * held, and every throw in the program waits behind it: the soak's third
 * deadlock (docs/benchmarks.md) had exactly that picture, the lock of a
 * worker's arena held by no running code. So the lock is looked up and
 * read with the thread stopped, before the call (target_ptrace.c).
 *
 * Layouts (x86-64 and AArch64, LP64): libgcc's struct object (GCC 12,
 * unwind-dw2-fde.h) is pc_begin, tbase, dbase, u (u.sort at 24), s (bit
 * 0 of s.i: sorted, at 32); a malloc chunk's size word is 8 bytes before
 * the memory, its bit 2 (NON_MAIN_ARENA) set for a chunk of a thread's
 * arena, whose heap starts at the chunk's address rounded down to
 * HEAP_MAX_SIZE (64 MiB) and begins with the arena's address; an arena
 * begins with its lock (glibc 2.26 to 2.40 at least). The main arena's
 * address is not exported: it is found on the ring of arenas (each
 * arena's `next`), from a thread's arena found at the start of a 64
 * MiB-aligned mapping — the one arena on the ring that is not at the start
 * of its own heap. An arena is recognized by its bins before anything is
 * read through it: 127 pairs of words after `top` and `last_remainder`,
 * each an empty bin pointing at itself or two chunk pointers, several
 * empty; `next` follows them and a 16-byte bitmap (glibc 2.26 to 2.40).
 * Anything that does not fit — not sorted, no thread arena (no other
 * thread ever allocated: then the only one that can hold the main lock is
 * the one the call runs in, which the safe point sees), a ring that does
 * not close, a lock word other than 0, 1 or 2 — gives 0: no check, as
 * before.
 */
#define OBJ_SORT 3	/* words */
#define OBJ_FLAGS 4
#define HEAP_MAX (64ull << 20)
#define NON_MAIN_ARENA 4ull

#define ARENA_BINS 0x70	/* bytes: mutex, flags, have_fastchunks, 10 fastbins, top, last_remainder */
#define ARENA_NPAIRS 127
#define ARENA_NEXT (ARENA_BINS + 2 * 8 * ARENA_NPAIRS + 16)

/* Is there a malloc_state at `a`? Its bins say so (above). */
static int looks_like_arena(int memfd, uint64_t a)
{
	uint64_t bins[2 * ARENA_NPAIRS];
	if (!a || (a & 7) || proc_mem_read(memfd, a + ARENA_BINS, bins, sizeof(bins)))
		return 0;
	int empty = 0;
	for (int j = 0; j < ARENA_NPAIRS; j++) {
		uint64_t self = a + ARENA_BINS + 16 * (uint64_t)j - 16;
		if (bins[2 * j] == self && bins[2 * j + 1] == self)
			empty++;
		else if (!bins[2 * j] || !bins[2 * j + 1] || (bins[2 * j] & 15) ||
			 (bins[2 * j + 1] & 15))
			return 0;
	}
	return empty >= 8;
}

/* Is the arena at `a` a thread's, at the start of its first heap? */
static int thread_arena(int memfd, uint64_t a)
{
	uint64_t first;
	return !proc_mem_read(memfd, a & ~(HEAP_MAX - 1), &first, sizeof(first)) && first == a &&
	       a - (a & ~(HEAP_MAX - 1)) <= 0x40;
}

/* The main arena of process `pid`, from the ring of arenas; 0 if not found. */
static uint64_t main_arena(pid_t pid, int memfd)
{
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	if (core_procmaps_read(pid, &m, &ignore))
		return 0;
	uint64_t start = 0, found = 0;
	for (size_t i = 0; i < m.n && !start; i++) {
		const struct procmaps_entry *e = &m.v[i];
		uint64_t a;
		if (!e->path[0] && !strcmp(e->perms, "rw-p") && !(e->start & (HEAP_MAX - 1)) &&
		    !proc_mem_read(memfd, e->start, &a, sizeof(a)) && a > e->start &&
		    a - e->start <= 0x40 && looks_like_arena(memfd, a))
			start = a;
	}
	core_procmaps_free(&m);
	/* The ring closes within glibc's limit of arenas (8 per CPU). */
	uint64_t a = start;
	for (int steps = 0; a && steps < 4096; steps++) {
		if (proc_mem_read(memfd, a + ARENA_NEXT, &a, sizeof(a)) || !looks_like_arena(memfd, a))
			return 0;
		if (a == start)
			return found;
		if (!thread_arena(memfd, a)) {
			if (found && found != a)
				return 0; /* two main arenas: not glibc's ring */
			found = a;
		}
	}
	return 0;
}

uint64_t proc_free_lock(pid_t pid, int memfd, uint64_t obj)
{
	uint64_t w[5], size, arena;
	uint32_t lock;
	if (!obj || proc_mem_read(memfd, obj, w, sizeof(w)))
		return 0;
	uint64_t sort = w[OBJ_SORT];
	if (!(w[OBJ_FLAGS] & 1) || !sort || (sort & 15) || !w[0])
		return 0;
	uint64_t chunk = sort - 16;
	/* An mmap'ed chunk (bit 1) goes back to the kernel without a lock. */
	if (proc_mem_read(memfd, chunk + 8, &size, sizeof(size)) || (size & 2))
		return 0;
	if (!(size & NON_MAIN_ARENA))
		arena = main_arena(pid, memfd);
	else if (proc_mem_read(memfd, chunk & ~(HEAP_MAX - 1), &arena, sizeof(arena)))
		return 0;
	if (!arena || (arena & 7) || proc_mem_read(memfd, arena, &lock, sizeof(lock)) || lock > 2)
		return 0;
	return arena;
}

/* ---- the functions of the target's shared libraries ---- */

int proc_lib_symbols(pid_t pid, int (*want_lib)(const char *base, void *user),
		     int (*fn)(void *user, const char *name, uint64_t start, uint64_t size, int type),
		     void *user)
{
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	if (core_procmaps_read(pid, &m, &ignore))
		return OCOLOS_ENOPROC;
	int rc = 0;
	elf_version(EV_CURRENT);
	for (size_t i = 0; i < m.n && !rc; i++) {
		const struct procmaps_entry *e = &m.v[i];
		const char *base = strrchr(e->path, '/');
		if (!base || e->offset != 0 || !want_lib(base + 1, user))
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, e->path);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		Elf *elf = fd >= 0 ? elf_begin(fd, ELF_C_READ_MMAP, NULL) : NULL;
		Elf_Scn *scn = NULL;
		GElf_Shdr sh;
		GElf_Ehdr eh;
		/* A DSO (or PIE): its first PT_LOAD at 0, so at the mapping's
		 * start; a non-PIE executable's symbols are absolute. */
		uint64_t bias = elf && gelf_getehdr(elf, &eh) && eh.e_type == ET_EXEC ? 0 : e->start;
		while (elf && !rc && (scn = elf_nextscn(elf, scn))) {
			if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
				continue;
			Elf_Data *d = elf_getdata(scn, NULL);
			for (size_t k = 0, n = elf_table_len(&sh, d); !rc && k < n; k++) {
				GElf_Sym sym;
				const char *name;
				if (gelf_getsym(d, (int)k, &sym) && sym.st_value &&
				    (name = elf_strptr(elf, sh.sh_link, sym.st_name)))
					rc = fn(user, name, bias + sym.st_value, sym.st_size,
						GELF_ST_TYPE(sym.st_info));
			}
		}
		if (elf)
			elf_end(elf);
		if (fd >= 0)
			close(fd);
	}
	core_procmaps_free(&m);
	return rc;
}

struct symbols_at {
	const uint64_t *addrs;
	char (*names)[PROC_SYMBOL_LEN];
	size_t n, found;
};

static int any_library(const char *base, void *user)
{
	(void)base, (void)user;
	return 1;
}

static int containing(void *user, const char *name, uint64_t start, uint64_t size, int type)
{
	struct symbols_at *q = user;
	if (type != STT_FUNC)
		return 0;
	for (size_t i = 0; i < q->n; i++)
		if (!q->names[i][0] && q->addrs[i] >= start && q->addrs[i] - start < size) {
			snprintf(q->names[i], PROC_SYMBOL_LEN, "%s+0x%llx", name,
				 (unsigned long long)(q->addrs[i] - start));
			q->found++;
		}
	return q->found == q->n; /* all named: stop */
}

size_t proc_symbols_at(pid_t pid, const uint64_t *addrs, size_t n, char (*names)[PROC_SYMBOL_LEN])
{
	struct symbols_at q = { addrs, names, n, 0 };
	for (size_t i = 0; i < n; i++)
		names[i][0] = 0;
	proc_lib_symbols(pid, any_library, containing, &q);
	return q.found;
}

int proc_symbol_at(pid_t pid, uint64_t addr, char *name, size_t len)
{
	char one[1][PROC_SYMBOL_LEN];
	int rc = proc_symbols_at(pid, &addr, 1, one) ? 0 : -1;
	if (len)
		snprintf(name, len, "%s", one[0]);
	return rc;
}

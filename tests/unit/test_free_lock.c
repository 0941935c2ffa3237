/*
 * The malloc lock libgcc's __deregister_frame_info will take
 * (proc_free_lock, lib/proc/safe_point.c): for an object whose sorted FDE
 * array came from a thread's arena, the lock word of that arena — found
 * from glibc's own layout, on this process (a thread's arena lives at the
 * start of its first heap, the same 64 MiB-aligned block as the memory it
 * hands out); for memory of the main arena, the main arena's, in libc's
 * data, found on the ring of arenas; none for an object libgcc has not
 * sorted.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/proc.h"

#include "check.h"

static void *volatile from_thread;

static void *allocate(void *arg)
{
	(void)arg;
	from_thread = malloc(4096); /* past the tcache: the arena's own */
	return NULL;
}

int main(void)
{
	/* AddressSanitizer's allocator replaces glibc's here: no arenas. */
	if (dlsym(RTLD_DEFAULT, "__asan_init")) {
		fprintf(stderr, "not checked under AddressSanitizer (its own malloc)\n");
		test_done();
	}
	int memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	check(memfd >= 0, "open /proc/self/mem");
	pthread_t h;
	check(pthread_create(&h, NULL, allocate, NULL) == 0 && pthread_join(h, NULL) == 0,
	      "pthread_create");
	void *from_main = malloc(4096);
	check(from_thread && from_main, "malloc");
	/* libgcc's struct object: pc_begin, tbase, dbase, u.sort, s.i. */
	uint64_t obj[6] = { 0x401000, 0, 0, (uint64_t)(uintptr_t)from_thread, 1, 0 };
	uint64_t lock = proc_free_lock(getpid(), memfd, (uint64_t)(uintptr_t)obj);
	uint64_t block = (uint64_t)(uintptr_t)from_thread & ~((64ull << 20) - 1);
	expect(lock && (lock & ~((64ull << 20) - 1)) == block,
	       "the lock of the thread's arena not found (0x%llx; the memory at %p)",
	       (unsigned long long)lock, from_thread);
	expect(!lock || *(volatile uint32_t *)(uintptr_t)lock == 0,
	       "the arena's lock word reads %u with nobody in malloc",
	       lock ? *(volatile uint32_t *)(uintptr_t)lock : 0);
	obj[4] = 0; /* not sorted: libgcc frees nothing */
	expect(proc_free_lock(getpid(), memfd, (uint64_t)(uintptr_t)obj) == 0, "a lock for an unsorted object");
	obj[4] = 1;
	/* The main arena: in libc's data, found on the ring of arenas from
	 * the thread's; its `top` chunk (the word at 0x60) in the brk heap. */
	obj[3] = (uint64_t)(uintptr_t)from_main;
	uint64_t main_lock = proc_free_lock(getpid(), memfd, (uint64_t)(uintptr_t)obj);
	uint64_t heap_lo = 0, heap_hi = 0, libc_lo = UINT64_MAX, libc_hi = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		if (strstr(line, "[heap]"))
			heap_lo = lo, heap_hi = hi;
		if (strstr(line, "/libc.so")) {
			libc_lo = lo < libc_lo ? lo : libc_lo;
			libc_hi = hi + (64 << 10); /* its .bss may follow, anonymous */
		}
	}
	if (f)
		fclose(f);
	expect(main_lock >= libc_lo && main_lock < libc_hi,
	       "the main arena's lock not found in libc's data (0x%llx; libc 0x%llx-0x%llx)",
	       (unsigned long long)main_lock, (unsigned long long)libc_lo,
	       (unsigned long long)libc_hi);
	if (main_lock >= libc_lo && main_lock < libc_hi) {
		uint64_t top = *(volatile uint64_t *)(uintptr_t)(main_lock + 0x60);
		expect(top >= heap_lo && top < heap_hi, "the main arena's top 0x%llx is not in "
		       "the brk heap", (unsigned long long)top);
		expect(*(volatile uint32_t *)(uintptr_t)main_lock == 0,
		       "the main arena's lock word reads %u with nobody in malloc",
		       *(volatile uint32_t *)(uintptr_t)main_lock);
	}
	free(from_main);
	free(from_thread);
	close(memfd);
	test_done();
}

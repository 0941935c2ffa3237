/*
 * The malloc lock libgcc's __deregister_frame_info will take
 * (proc_free_lock, lib/proc/safe_point.c): for an object whose sorted FDE
 * array came from a thread's arena, the lock word of that arena — found
 * from glibc's own layout, on this process (a thread's arena lives at the
 * start of its first heap, the same 64 MiB-aligned block as the memory it
 * hands out); none for memory of the main arena, nor for an object libgcc
 * has not sorted.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
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
	uint64_t lock = proc_free_lock(memfd, (uint64_t)(uintptr_t)obj);
	uint64_t block = (uint64_t)(uintptr_t)from_thread & ~((64ull << 20) - 1);
	expect(lock && (lock & ~((64ull << 20) - 1)) == block,
	       "the lock of the thread's arena not found (0x%llx; the memory at %p)",
	       (unsigned long long)lock, from_thread);
	expect(!lock || *(volatile uint32_t *)(uintptr_t)lock == 0,
	       "the arena's lock word reads %u with nobody in malloc",
	       lock ? *(volatile uint32_t *)(uintptr_t)lock : 0);
	obj[4] = 0; /* not sorted: libgcc frees nothing */
	expect(proc_free_lock(memfd, (uint64_t)(uintptr_t)obj) == 0, "a lock for an unsorted object");
	obj[4] = 1;
	obj[3] = (uint64_t)(uintptr_t)from_main; /* the main arena: not known */
	expect(proc_free_lock(memfd, (uint64_t)(uintptr_t)obj) == 0,
	       "a lock for memory of the main arena");
	free(from_main);
	free(from_thread);
	close(memfd);
	test_done();
}

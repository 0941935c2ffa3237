/*
 * The stacks of exited threads (proc/thread_stacks.c): glibc keeps them
 * for its next threads with the dead thread's words in them, and the
 * retirement scan must not take those for references. Here a thread
 * leaves a pretend version's return site in its stack and exits; its
 * cached stack is found dead and the scan does not count the word, while
 * a scan that cannot learn glibc's layout (no thread pointers) still
 * does. A thread created on that stack afterwards — after the "stop", so
 * not among the live threads given — makes it live again (its tid is set).
 * x86-64 only (elsewhere no stack is dead, which is checked too).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/procmaps.h"
#include "inject/inject.h"
#include "proc/proc.h"
#include "proc/target.h"

#include "check.h"
#include "pretend_version.h"

#define BASE PRETEND_BASE

struct thread_info {
	uint64_t lo, hi;		/* its stack mapping */
	struct proc_live_thread live;
	volatile int parked, go;
};

static uint64_t site_delta = 16; /* the pretend version's return site */

static void stack_mapping(uint64_t a, uint64_t *lo, uint64_t *hi)
{
	struct procmaps m = { 0 };
	struct core_err err = { 0 };
	check(core_procmaps_read(getpid(), &m, &err) == 0, "maps: %s", err.msg);
	*lo = *hi = 0;
	for (size_t i = 0; i < m.n; i++)
		if (a >= m.v[i].start && a < m.v[i].end) {
			*lo = m.v[i].start;
			*hi = m.v[i].end;
		}
	core_procmaps_free(&m);
}

/* Leaves the return site in a frame of its stack, then exits: 6 KiB down,
 * below what the exit path's frames overwrite, within the 16 KiB glibc
 * keeps when it gives the rest of an exiting thread's stack back. */
static __attribute__((noinline)) void leave_word(struct thread_info *ti)
{
	volatile uint64_t frame[768];
	for (int i = 0; i < 768; i++)
		frame[i] = 0;
	frame[2] = BASE + site_delta;
	stack_mapping((uint64_t)(uintptr_t)frame, &ti->lo, &ti->hi);
}

static void *dying(void *arg)
{
	leave_word(arg);
	return NULL;
}

static void *parked(void *arg)
{
	struct thread_info *ti = arg;
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	ti->live = proc_self_thread(sp);
	stack_mapping(sp, &ti->lo, &ti->hi);
	ti->parked = 1;
	while (!ti->go)
		usleep(1000);
	return NULL;
}

static int is_dead(struct proc_target *t, const struct proc_live_thread *live, size_t n,
		   uint64_t lo, uint64_t hi)
{
	struct procmaps m = { 0 };
	struct core_err err = { 0 };
	check(core_procmaps_read(getpid(), &m, &err) == 0, "maps: %s", err.msg);
	uint64_t (*dead)[2] = NULL;
	size_t nd = 0;
	check(proc_dead_thread_stacks(t, &m, live, n, &dead, &nd) == 0, "out of memory");
	int found = 0;
	for (size_t i = 0; i < nd; i++) {
		found |= dead[i][0] == lo && dead[i][1] == hi;
		for (size_t k = 0; k < n; k++)
			expect(!(live[k].sp >= dead[i][0] && live[k].sp < dead[i][1]),
			       "a live thread's stack 0x%llx-0x%llx counted as dead",
			       (unsigned long long)dead[i][0], (unsigned long long)dead[i][1]);
	}
	free(dead);
	core_procmaps_free(&m);
	return found;
}

int main(void)
{
	struct proc_target t;
	struct pretend *b = pretend_open(&t);

	struct thread_info l = { 0 }, d = { 0 }, n = { 0 };
	pthread_t hl, hd, hn;
	check(pthread_create(&hl, NULL, parked, &l) == 0, "pthread_create");
	while (!l.parked)
		usleep(1000);
	check(pthread_create(&hd, NULL, dying, &d) == 0, "pthread_create");
	check(pthread_join(hd, NULL) == 0, "pthread_join");
	check(d.lo && l.lo && d.lo != l.lo, "the threads' stack mappings were not found");

	/* The "stop": this thread (below its frame) and the parked one. */
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0) - 512;
	struct proc_live_thread live[2] = { proc_self_thread(sp), l.live };
	int dead = is_dead(&t, live, 2, d.lo, d.hi);
#if defined(__x86_64__)
	expect(dead, "the exited thread's cached stack 0x%llx-0x%llx was not found dead",
	       (unsigned long long)d.lo, (unsigned long long)d.hi);
	expect(!is_dead(&t, live, 2, l.lo, l.hi), "the parked thread's stack counted as dead");
	struct proc_live_thread no_tp[2] = { { live[0].sp, 0, live[0].tid },
					     { live[1].sp, 0, live[1].tid } };
	expect(pretend_scan(&t, b, 1, 0, live, 2, NULL) == 0, "the return site in the exited thread's stack was "
	       "counted");
	expect(pretend_scan(&t, b, 1, 0, no_tp, 2, NULL) == 1, "without thread pointers the exited thread's stack "
	       "was not scanned (or the word is not there)");

	/* A thread started after the stop, on the cached stack. */
	check(pthread_create(&hn, NULL, parked, &n) == 0, "pthread_create");
	while (!n.parked)
		usleep(1000);
	expect(n.lo == d.lo, "glibc did not reuse the cached stack (0x%llx, new thread on 0x%llx)",
	       (unsigned long long)d.lo, (unsigned long long)n.lo);
	expect(!is_dead(&t, live, 2, d.lo, d.hi), "the stack of a thread started after the "
	       "stop counted as dead");
	n.go = 1;
	pthread_join(hn, NULL);
#else
	expect(!dead, "a stack counted as dead on this architecture");
#endif
	l.go = 1;
	pthread_join(hl, NULL);
	munmap(b, 4096);
	proc_target_close(&t);
	test_done();
}

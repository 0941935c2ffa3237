/*
 * The stacks of exited threads (proc/thread_stacks.c): glibc keeps them
 * for its next threads with the dead thread's words in them, and the
 * retirement scan must not take those for references — but nothing else.
 *  1. A thread leaves a pretend version's return site in its stack and
 *     exits: its cached stack is dead and the scan does not count the word;
 *     a scan that cannot learn glibc's layout (no thread pointers) does. A
 *     thread created on that stack afterwards — after the "stop", so not
 *     among the live threads given — makes it live again (its tid is set).
 *  2. A dead stack (guard size 0) sharing its mapping with the program's
 *     memory right below it (a coroutine stack holding the return site):
 *     only the stack block is dead, the word is found.
 *  3. A thread ran on the program's own memory (pthread_attr_setstack) and
 *     was joined: the memory is the program's again — never dead.
 *  4. The same before the join (the thread has exited, its descriptor is
 *     still in glibc's list): the program may reuse it already — not dead.
 * Stack sizes are explicit (256 KiB), so that glibc's reuse of its cache
 * does not depend on `ulimit -s`.
 * The layout is learned from two parked threads. x86-64 only (elsewhere
 * no stack is dead, which is checked too).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
	volatile uint32_t tid;
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

/* The dead range holding address `a`, in *lo, *hi (0, 0 if none). */
static void dead_at(struct proc_target *t, const struct proc_live_thread *live, size_t n,
		    uint64_t a, uint64_t *lo, uint64_t *hi)
{
	struct procmaps m = { 0 };
	struct core_err err = { 0 };
	check(core_procmaps_read(getpid(), &m, &err) == 0, "maps: %s", err.msg);
	uint64_t (*dead)[2] = NULL;
	size_t nd = 0;
	check(proc_dead_thread_stacks(t, &m, live, n, &dead, &nd) == 0, "out of memory");
	*lo = *hi = 0;
	for (size_t i = 0; i < nd; i++) {
		if (a >= dead[i][0] && a < dead[i][1]) {
			*lo = dead[i][0];
			*hi = dead[i][1];
		}
		for (size_t k = 0; k < n; k++)
			expect(!(live[k].sp >= dead[i][0] && live[k].sp < dead[i][1]),
			       "a live thread's stack 0x%llx-0x%llx counted as dead",
			       (unsigned long long)dead[i][0], (unsigned long long)dead[i][1]);
	}
	free(dead);
	core_procmaps_free(&m);
}

static int is_dead(struct proc_target *t, const struct proc_live_thread *live, size_t n,
		   uint64_t a)
{
	uint64_t lo, hi;
	dead_at(t, live, n, a, &lo, &hi);
	return hi != 0;
}

static void *exiting(void *arg)
{
	struct thread_info *ti = arg;
	stack_mapping((uint64_t)(uintptr_t)__builtin_frame_address(0), &ti->lo, &ti->hi);
	ti->tid = (uint32_t)proc_self_thread(0).tid;
	return NULL;
}

/* Start `fn` on a 256 KiB glibc stack. */
static void start(pthread_t *h, void *(*fn)(void *), struct thread_info *ti)
{
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 256 << 10);
	check(pthread_create(h, &a, fn, ti) == 0, "pthread_create");
	pthread_attr_destroy(&a);
}

int main(void)
{
	struct proc_target t;
	struct pretend *b = pretend_open(&t);

	struct thread_info l1 = { 0 }, l2 = { 0 }, d = { 0 }, n = { 0 };
	pthread_t h1, h2, hd, hn;
	start(&h1, parked, &l1);
	start(&h2, parked, &l2);
	while (!l1.parked || !l2.parked)
		usleep(1000);
	start(&hd, dying, &d);
	check(pthread_join(hd, NULL) == 0, "pthread_join");
	check(d.lo && l1.lo && d.lo != l1.lo, "the threads' stack mappings were not found");

	/* The "stop": this thread (below its frame) and the parked ones. */
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0) - 512;
	struct proc_live_thread live[3] = { proc_self_thread(sp), l1.live, l2.live };
	int dead = is_dead(&t, live, 3, d.hi - 1);
#if defined(__x86_64__)
	/* 1 */
	expect(dead, "the exited thread's cached stack 0x%llx-0x%llx was not found dead",
	       (unsigned long long)d.lo, (unsigned long long)d.hi);
	expect(!is_dead(&t, live, 3, l1.hi - 1), "a parked thread's stack counted as dead");
	expect(!is_dead(&t, live, 2, l2.hi - 1), "a parked thread's stack counted as dead "
	       "without being among the live threads given (its tid is set)");
	struct proc_live_thread no_tp[3];
	for (int i = 0; i < 3; i++)
		no_tp[i] = (struct proc_live_thread){ live[i].sp, 0, live[i].tid };
	expect(pretend_scan(&t, b, 1, 0, live, 3, NULL) == 0,
	       "the return site in the exited thread's stack was counted");
	expect(pretend_scan(&t, b, 1, 0, no_tp, 3, NULL) == 1, "without thread pointers the exited "
	       "thread's stack was not scanned (or the word is not there)");
	start(&hn, parked, &n);
	while (!n.parked)
		usleep(1000);
	expect(n.lo == d.lo, "glibc did not reuse the cached stack (0x%llx, new thread on 0x%llx)",
	       (unsigned long long)d.lo, (unsigned long long)n.lo);
	expect(!is_dead(&t, live, 3, d.hi - 1), "the stack of a thread started after the "
	       "stop counted as dead");
	n.go = 1;
	pthread_join(hn, NULL);

	/* 2: 1 MiB, so that no stack of the cache (256 KiB) serves it. */
	struct thread_info m = { 0 };
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setguardsize(&a, 0);
	pthread_attr_setstacksize(&a, 1 << 20);
	check(pthread_create(&hd, &a, exiting, &m) == 0, "pthread_create");
	check(pthread_join(hd, NULL) == 0, "pthread_join");
	pthread_attr_destroy(&a);
	size_t xs = 1 << 16;
	uint64_t *x = mmap((void *)(uintptr_t)(m.lo - xs), xs, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_FIXED_NOREPLACE, -1, 0);
	if (x == MAP_FAILED || (uint64_t)(uintptr_t)x != m.lo - xs) {
		/* Something is mapped there already (AddressSanitizer's
		 * runtime puts memory below new stacks). */
		fprintf(stderr, "2: not checked: 0x%llx-0x%llx is taken\n",
			(unsigned long long)(m.lo - xs), (unsigned long long)m.lo);
		if (x != MAP_FAILED)
			munmap(x, xs);
		goto user_stack;
	}
	x[100] = BASE + site_delta;
	uint64_t lo, hi, xlo, xhi;
	stack_mapping((uint64_t)(uintptr_t)x, &xlo, &xhi);
	dead_at(&t, live, 3, m.hi - 1, &lo, &hi);
	fprintf(stderr, "2: stack 0x%llx-0x%llx, the memory below in 0x%llx-0x%llx, dead "
		"0x%llx-0x%llx\n", (unsigned long long)m.lo, (unsigned long long)m.hi,
		(unsigned long long)xlo, (unsigned long long)xhi, (unsigned long long)lo,
		(unsigned long long)hi);
	expect(hi == m.hi && lo >= (uint64_t)(uintptr_t)x + xs, "the dead range 0x%llx-0x%llx is "
	       "not the stack block above 0x%llx", (unsigned long long)lo, (unsigned long long)hi,
	       (unsigned long long)(uintptr_t)x + xs);
	expect(pretend_scan(&t, b, 1, 0, live, 3, NULL) == 1, "the return site in memory sharing a "
	       "mapping with a dead stack was missed");
	munmap(x, xs);

user_stack:;
	/* 3 */
	size_t us = 1 << 20;
	uint64_t *u = mmap(NULL, us, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(u != MAP_FAILED, "mmap");
	pthread_attr_init(&a);
	pthread_attr_setstack(&a, u, us);
	check(pthread_create(&hd, &a, exiting, &m) == 0, "pthread_create");
	check(pthread_join(hd, NULL) == 0, "pthread_join");
	pthread_attr_destroy(&a);
	u[1000] = BASE + site_delta; /* the program's memory again */
	expect(!is_dead(&t, live, 3, (uint64_t)(uintptr_t)&u[1000]), "memory a joined thread "
	       "ran on (pthread_attr_setstack) counted as a dead stack");
	expect(pretend_scan(&t, b, 1, 0, live, 3, NULL) == 1, "the return site in memory a joined "
	       "thread ran on was missed");

	/* 4: exited (gone from /proc/self/task), not joined. */
	memset(u, 0, us);
	memset(&m, 0, sizeof(m));
	pthread_attr_init(&a);
	pthread_attr_setstack(&a, u, us);
	check(pthread_create(&hd, &a, exiting, &m) == 0, "pthread_create");
	pthread_attr_destroy(&a);
	char task[64];
	for (int i = 0; i < 5000; i++) {
		snprintf(task, sizeof(task), "/proc/self/task/%u", m.tid);
		if (m.tid && access(task, F_OK) != 0)
			break;
		usleep(1000);
	}
	u[1000] = BASE + site_delta;
	expect(!is_dead(&t, live, 3, (uint64_t)(uintptr_t)&u[1000]), "memory an exited thread "
	       "not yet joined ran on (pthread_attr_setstack) counted as a dead stack");
	check(pthread_join(hd, NULL) == 0, "pthread_join");
	munmap(u, us);
#else
	expect(!dead, "a stack counted as dead on this architecture");
#endif
	l1.go = l2.go = 1;
	pthread_join(h1, NULL);
	pthread_join(h2, NULL);
	munmap(b, 4096);
	proc_target_close(&t);
	test_done();
}

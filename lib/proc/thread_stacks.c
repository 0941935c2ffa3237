/*
 * The stacks of threads that have exited. glibc keeps them (its stack
 * cache, up to 40 MiB by default) to hand to the next threads it creates,
 * with whatever the dead thread left in them: return addresses into the
 * code it ran. To the conservative memory scan of retirement
 * (inject/scan.c) such a word looks like a suspended frame, and it kept an
 * old version mapped for as long as the stack sat in the cache — in the
 * soak (bench/continuous_soak.sh, threads coming and going) most of the
 * rounds that ended with three versions mapped.
 *
 * A stack is dead when the thread descriptor glibc keeps at its top says
 * so: glibc itself takes a cached stack as free when the descriptor's tid
 * is 0 or less (FREE_P in nptl/allocatestack.c, nptl-stack.c: the kernel clears it when the
 * thread exits, CLONE_CHILD_CLEARTID; glibc sets -1 once the stack is
 * back in its cache). Nothing of glibc's private layout
 * is assumed; it is learned from the live threads, whose thread pointer
 * (x86-64: fs base) is their descriptor:
 *  - where the descriptor sits below the end of its stack mapping: the
 *    same for every stack glibc allocates in a process (it depends on the
 *    static TLS size only), learned from threads running on their own
 *    stack (the main thread's descriptor is not in its stack);
 *  - which 32-bit field holds the tid: the one offset at which every such
 *    live thread's descriptor holds its own tid;
 *  - that it is a descriptor at all: x86-64's tcbhead_t starts with
 *    pointers to itself at offsets 0 (tcb) and 16 (self).
 * A mapping counts as a dead stack only if all three hold at that place
 * with a tid of 0 or less, and no stopped thread's stack or thread pointer is in
 * it. A thread created on a cached stack after the stop has its tid set
 * (the kernel does it at clone) and is scanned; retirement's second stop
 * sees its frames. Elsewhere than x86-64, and when nothing can be learned
 * (no thread but the main one), no stack is dead: everything is scanned,
 * as before.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "core/util.h"
#include "proc/proc.h"

/* Where a descriptor may be below its stack's end, at most (x86-64 puts
 * it at the very top, the static TLS below it), and how much of it is
 * read: the tid is in its first kilobyte (0x2d0 in glibc 2.36). */
#define TOP_MAX (1u << 20)
#define DESC_READ 1024
#define MAX_TOPS 8

static const struct procmaps_entry *mapping_of(const struct procmaps *m, uint64_t a)
{
	for (size_t i = 0; i < m->n; i++)
		if (a >= m->v[i].start && a < m->v[i].end)
			return &m->v[i];
	return NULL;
}

static int anonymous_rw(const struct procmaps_entry *e)
{
	return e && !e->path[0] && e->perms[0] == 'r' && e->perms[1] == 'w';
}

/* The descriptor at `tp` as read from the target: its first DESC_READ
 * bytes, if it looks like one (x86-64: tcb and self point to it). */
static int read_descriptor(struct proc_target *t, uint64_t tp, uint8_t *buf)
{
	uint64_t w[3];
	if (proc_mem_read(t->memfd, tp, buf, DESC_READ))
		return -1;
	memcpy(w, buf, sizeof(w));
	return w[0] == tp && w[2] == tp ? 0 : -1;
}

int proc_dead_thread_stacks(struct proc_target *t, const struct procmaps *m,
			    const struct proc_live_thread *live, size_t nlive,
			    uint64_t (**out)[2], size_t *nout)
{
	*out = NULL;
	*nout = 0;
#if defined(__x86_64__)
	uint64_t tops[MAX_TOPS];
	size_t ntops = 0;
	uint8_t *buf = malloc(DESC_READ);
	/* Per 4-byte offset: still a candidate for the tid field. */
	uint8_t *tid_ok = malloc(DESC_READ / 4);
	if (!buf || !tid_ok) {
		free(buf);
		free(tid_ok);
		return OCOLOS_ENOMEM;
	}
	memset(tid_ok, 1, DESC_READ / 4);
	size_t learned = 0;
	for (size_t i = 0; i < nlive; i++) {
		const struct procmaps_entry *e = mapping_of(m, live[i].tp);
		if (!live[i].tp || !live[i].tid || !anonymous_rw(e) || mapping_of(m, live[i].sp) != e ||
		    e->end - live[i].tp > TOP_MAX || e->end - live[i].tp < DESC_READ)
			continue; /* not on its own stack, or no descriptor there */
		if (read_descriptor(t, live[i].tp, buf))
			continue;
		uint64_t top = e->end - live[i].tp;
		size_t k = 0;
		while (k < ntops && tops[k] != top)
			k++;
		if (k == ntops && ntops < MAX_TOPS)
			tops[ntops++] = top;
		for (size_t o = 0; o < DESC_READ / 4; o++) {
			uint32_t v;
			memcpy(&v, buf + 4 * o, 4);
			tid_ok[o] &= v == live[i].tid;
		}
		learned++;
	}
	size_t tid_off = 0, ntid = 0;
	for (size_t o = 0; learned && o < DESC_READ / 4; o++)
		if (tid_ok[o]) {
			tid_off = 4 * o;
			ntid++;
		}
	free(tid_ok);
	int rc = 0;
	size_t cap = 0;
	for (size_t k = 0; ntid == 1 && k < m->n; k++) {
		const struct procmaps_entry *e = &m->v[k];
		if (!anonymous_rw(e))
			continue;
		int used = 0;
		for (size_t i = 0; i < nlive && !used; i++)
			used = (live[i].sp >= e->start && live[i].sp < e->end) ||
			       (live[i].tp >= e->start && live[i].tp < e->end);
		for (size_t j = 0; j < ntops && !used; j++) {
			if (e->end - e->start < tops[j] || tops[j] < DESC_READ)
				continue;
			uint64_t tp = e->end - tops[j];
			int32_t tid;
			if (read_descriptor(t, tp, buf))
				continue;
			memcpy(&tid, buf + tid_off, 4);
			if (tid > 0)
				continue;
			if (core_grow((void **)out, &cap, *nout, sizeof(**out))) {
				rc = OCOLOS_ENOMEM;
				break;
			}
			(*out)[*nout][0] = e->start;
			(*out)[(*nout)++][1] = e->end;
			break;
		}
	}
	free(buf);
	if (rc) {
		free(*out);
		*out = NULL;
		*nout = 0;
	}
	return rc;
#else
	(void)t; (void)m; (void)live; (void)nlive;
	return 0;
#endif
}

struct proc_live_thread proc_self_thread(uint64_t sp)
{
	uint64_t tp = 0;
#if defined(__x86_64__)
	__asm__("mov %%fs:0, %0" : "=r"(tp));
#endif
	return (struct proc_live_thread){ sp, tp, (uint32_t)syscall(SYS_gettid) };
}

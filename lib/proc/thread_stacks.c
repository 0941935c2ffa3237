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
 * so, by what glibc itself relies on. Its tid is 0 (the kernel clears it
 * when the thread exits, CLONE_CHILD_CLEARTID) or -1 (glibc's mark of a
 * stack back in its cache); glibc takes a stack as free by that test
 * (FREE_P, nptl/allocatestack.c, nptl-stack.c). And the descriptor is
 * still linked into one of glibc's lists (its `list` node's neighbours
 * point back at it): the cache, or the list of threads not yet joined.
 * Memory of the program's a thread ran on (pthread_attr_setstack) is the
 * program's once the thread has exited — it may reuse it before the join,
 * and leaves it out of the lists after — so it never counts: a tid of 0
 * counts only on a stack glibc allocated, its guard mapping right below
 * (with guards that are no mapping of their own, glibc 2.42 and later,
 * only stacks back in the cache count).
 * Only the stack block the descriptor names (its stackblock and size) is
 * skipped, not the rest of a mapping it may share with other memory.
 *
 * Nothing of glibc's private layout is assumed; it is learned, each time,
 * from the live threads running on their own stacks (at least two), whose
 * thread pointer (x86-64: fs base) is their descriptor, and must come out
 * the same for all of them, or nothing is dead:
 *  - where the descriptor sits below the end of its stack (one distance,
 *    a few KiB: the static TLS size decides it);
 *  - that it is a descriptor: x86-64's tcbhead_t begins with pointers to
 *    itself at offsets 0 (tcb) and 16 (self);
 *  - which 32-bit field holds the thread's tid (the one offset at which
 *    every such descriptor holds its own; a tracer in another pid
 *    namespace sees other tids, and learns nothing);
 *  - which two words are a list node whose neighbours point back to it;
 *  - which two words are the stack block's start and size (the block
 *    holds the stack pointer and ends where the descriptor's distance
 *    says).
 * No stopped thread's stack or descriptor is in a dead stack. A thread
 * created on a cached stack after the stop has its tid set (the kernel
 * does it at clone) and is scanned; retirement's second stop sees its
 * frames. Elsewhere than x86-64, with another C library, and when the
 * layout cannot be learned, no stack is dead: everything is scanned.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "core/util.h"
#include "proc/proc.h"

#if defined(__x86_64__)
/* How far below its stack's end a descriptor may be, at most (x86-64 puts
 * it at the very top, the static TLS below it), and how much of it is
 * read: the fields used are in its first 2 KiB (glibc 2.36: list at
 * 0x2c0, tid 0x2d0, stackblock 0x690, stackblock_size 0x698). */
#define TOP_MAX (64u << 10)
#define DESC_READ 2048
#define DESC_WORDS (DESC_READ / 8)
/* Live threads learned from, at most. */
#define LEARN_MAX 16

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

/* The descriptor at `pd` as read from the target, if it looks like one
 * (x86-64: tcb and self point to it). */
static int read_descriptor(struct proc_target *t, uint64_t pd, uint64_t *w)
{
	if (proc_mem_read(t->memfd, pd, w, DESC_READ))
		return -1;
	return w[0] == pd && w[2] == pd ? 0 : -1;
}

/* Is the list node at `node` (its next, prev) linked: both neighbours point
 * back at it? */
static int linked(struct proc_target *t, uint64_t node, uint64_t next, uint64_t prev)
{
	uint64_t back_prev, back_next;
	if (!next || !prev || (next & 7) || (prev & 7))
		return 0;
	if (proc_mem_read(t->memfd, next + 8, &back_prev, 8) ||
	    proc_mem_read(t->memfd, prev, &back_next, 8))
		return 0;
	return back_prev == node && back_next == node;
}

/* What the live threads teach: see the comment at the top. */
struct layout {
	uint64_t top;		/* stack end - descriptor */
	size_t tid, list, block; /* byte offsets in the descriptor; the block's
				   size is the word after its address */
};

static int learn(struct proc_target *t, const struct procmaps *m,
		 const struct proc_live_thread *live, size_t nlive, struct layout *lay)
{
	struct { uint64_t pd, sp, tid; } th[LEARN_MAX];
	size_t n = 0;
	uint64_t top = 0;
	for (size_t i = 0; i < nlive && n < LEARN_MAX; i++) {
		const struct procmaps_entry *e = mapping_of(m, live[i].tp);
		if (!live[i].tp || !live[i].tid || !anonymous_rw(e) || mapping_of(m, live[i].sp) != e ||
		    e->end - live[i].tp > TOP_MAX || e->end - live[i].tp < DESC_READ)
			continue; /* not on its own stack, or no descriptor there */
		if (n && e->end - live[i].tp != top)
			return -1; /* two distances: not one layout */
		top = e->end - live[i].tp;
		th[n].pd = live[i].tp;
		th[n].sp = live[i].sp;
		th[n++].tid = live[i].tid;
	}
	if (n < 2)
		return -1;
	uint64_t (*d)[DESC_WORDS] = malloc(n * sizeof(*d));
	if (!d)
		return -1;
	int rc = 0;
	for (size_t k = 0; k < n && !rc; k++)
		rc = read_descriptor(t, th[k].pd, d[k]);
	size_t ntid = 0, nlist = 0, nblock = 0;
	for (size_t o = 0; !rc && o < DESC_READ / 4; o++) { /* the tid: 32 bits */
		int ok = 1;
		for (size_t k = 0; k < n && ok; k++) {
			uint32_t v;
			memcpy(&v, (const char *)d[k] + 4 * o, 4);
			ok = v == th[k].tid;
		}
		if (ok) {
			lay->tid = 4 * o;
			ntid++;
		}
	}
	for (size_t o = 0; !rc && o + 1 < DESC_WORDS; o++) { /* list node, stack block */
		int is_list = 1, is_block = 1;
		for (size_t k = 0; k < n && is_block; k++) {
			uint64_t a = d[k][o], b = d[k][o + 1];
			is_block = !(a & 4095) && !(b & 4095) && a <= th[k].sp && a + b == th[k].pd + top;
		}
		for (size_t k = 0; k < n && is_list; k++)
			is_list = linked(t, th[k].pd + 8 * o, d[k][o], d[k][o + 1]);
		if (is_list) {
			lay->list = 8 * o;
			nlist++;
		}
		if (is_block) {
			lay->block = 8 * o;
			nblock++;
		}
	}
	free(d);
	lay->top = top;
	return !rc && ntid == 1 && nlist == 1 && nblock == 1 ? 0 : -1;
}
#endif

int proc_dead_thread_stacks(struct proc_target *t, const struct procmaps *m,
			    const struct proc_live_thread *live, size_t nlive,
			    uint64_t (**out)[2], size_t *nout)
{
	*out = NULL;
	*nout = 0;
#if defined(__x86_64__)
	uint64_t *w = malloc(DESC_READ);
	if (!w)
		return OCOLOS_ENOMEM;
	struct layout lay = { 0 };
	int rc = 0;
	size_t cap = 0;
	if (learn(t, m, live, nlive, &lay)) {
		free(w);
		return 0;
	}
	for (size_t k = 0; k < m->n; k++) {
		const struct procmaps_entry *e = &m->v[k];
		if (!anonymous_rw(e) || e->end - e->start < lay.top)
			continue;
		int used = 0;
		for (size_t i = 0; i < nlive && !used; i++)
			used = (live[i].sp >= e->start && live[i].sp < e->end) ||
			       (live[i].tp >= e->start && live[i].tp < e->end);
		uint64_t pd = e->end - lay.top;
		if (used || read_descriptor(t, pd, w))
			continue;
		int32_t tid;
		memcpy(&tid, (const char *)w + lay.tid, 4);
		uint64_t block = w[lay.block / 8], size = w[lay.block / 8 + 1];
		if ((tid != 0 && tid != -1) || (block & 4095) || block > pd || block + size != e->end ||
		    !linked(t, pd + lay.list, w[lay.list / 8], w[lay.list / 8 + 1]))
			continue;
		/* tid 0: exited, not joined yet — on a stack of glibc's own
		 * (its guard right below the rest) or one of the program's,
		 * which it may reuse already: only the first is dead. -1: back
		 * in glibc's cache, which holds only its own. */
		if (tid == 0 && !(k && block < e->start && m->v[k - 1].start == block &&
				  m->v[k - 1].end == e->start && !strcmp(m->v[k - 1].perms, "---p") &&
				  !m->v[k - 1].path[0]))
			continue;
		if (core_grow((void **)out, &cap, *nout, sizeof(**out))) {
			rc = OCOLOS_ENOMEM;
			break;
		}
		(*out)[*nout][0] = block > e->start ? block : e->start;
		(*out)[(*nout)++][1] = e->end;
	}
	free(w);
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
#elif defined(__aarch64__)
	__asm__("mrs %0, tpidr_el0" : "=r"(tp));
#endif
	return (struct proc_live_thread){ sp, tp, (uint32_t)syscall(SYS_gettid) };
}

/* Per-thread perf events and their rings, shared by the perf backends. */
#include <errno.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/util.h"
#include "sample/perf_threads.h"

/* Rings are drained (and new threads attached) every POLL_MS at 10 kHz
 * and above; at lower rates less often, up to POLL_MAX_MS, since the
 * rings fill more slowly and the polling is most of the sampler thread's
 * own cost (sample/window.c counts it). */
#define POLL_MS 20
#define POLL_MAX_MS 100

/* Copy `len` bytes starting at byte counter `pos` out of the ring. */
static void ring_copy(const uint8_t *data, uint64_t size, uint64_t pos, void *dst, size_t len)
{
	uint64_t off = pos & (size - 1);
	size_t first = (size_t)(size - off) < len ? (size_t)(size - off) : len;
	memcpy(dst, data + off, first);
	memcpy((uint8_t *)dst + first, data, len - first);
}

/* Handle the record of `h->size` bytes at `pos`. */
static int walk_one(const uint8_t *data, uint64_t size, uint64_t pos,
		    const struct perf_event_header *h, perf_sample_parser parse,
		    struct sample_set *out, uint64_t *bad)
{
	uint64_t off = pos & (size - 1);
	if (h->type == PERF_RECORD_LOST && h->size >= sizeof(*h) + 16) {
		uint64_t lost;
		ring_copy(data, size, pos + sizeof(*h) + 8, &lost, sizeof(lost));
		out->lost += lost;
		return 0;
	}
	if (h->type != PERF_RECORD_SAMPLE)
		return 0;
	int rc;
	if (off + h->size <= size) { /* contiguous: parse in place */
		rc = parse(data + off, h->size, out);
	} else {		     /* wraps around the end: parse a copy */
		uint8_t *tmp = malloc(h->size);
		if (!tmp)
			return OCOLOS_ENOMEM;
		ring_copy(data, size, pos, tmp, h->size);
		rc = parse(tmp, h->size, out);
		core_free_clear(tmp, h->size); /* it holds an IP: core/util.c says why */
	}
	if (rc == OCOLOS_EINVAL) {
		*bad += 1;
		rc = 0;
	}
	return rc;
}

int sample_perf_ring_walk(const uint8_t *data, uint64_t size, uint64_t tail, uint64_t head,
		   perf_sample_parser parse, struct sample_set *out, uint64_t *bad)
{
	uint64_t ignored = 0;
	if (!bad)
		bad = &ignored;
	while (tail < head) {
		struct perf_event_header h;
		ring_copy(data, size, tail, &h, sizeof(h));
		if (h.size < sizeof(h) || h.size > head - tail || h.size > size) {
			*bad += 1; /* cannot find the next record: drop the rest */
			return 0;
		}
		int rc = walk_one(data, size, tail, &h, parse, out, bad);
		if (rc)
			return rc;
		tail += h.size;
	}
	return 0;
}

int sample_perf_event_open_tid(struct perf_event_attr *a, pid_t tid)
{
	return (int)syscall(SYS_perf_event_open, a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static size_t ring_len(const struct perf_threads *pt)
{
	return (1 + pt->data_pages) * pt->page;
}

int sample_perf_threads_keep(struct perf_threads *pt, pid_t tid, int fd)
{
	void *map = mmap(NULL, ring_len(pt), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		pt->last_errno = errno;
		close(fd);
		return -1;
	}
	if (core_grow((void **)&pt->v, &pt->cap, pt->n, sizeof(*pt->v))) {
		munmap(map, ring_len(pt));
		close(fd);
		pt->last_errno = ENOMEM;
		return -1;
	}
	pt->v[pt->n++] = (struct perf_thread_ring){ tid, fd, map };
	return 0;
}

static int known(void *user, pid_t tid)
{
	const struct perf_threads *pt = user;
	for (size_t i = 0; i < pt->n; i++)
		if (pt->v[i].tid == tid)
			return 1;
	return 0;
}

static int attach(void *user, pid_t tid)
{
	struct perf_threads *pt = user;
	int fd = sample_perf_event_open_tid(&pt->attr, tid);
	if (fd < 0) {
		pt->last_errno = errno;
		return errno == ESRCH ? 0 : -1; /* a thread that just exited is fine */
	}
	return sample_perf_threads_keep(pt, tid, fd);
}

void sample_perf_threads_scan(struct perf_threads *pt)
{
	if (sample_each_new_thread(pt->pid, pt->exclude, known, attach, pt) < 0)
		pt->last_errno = errno;
}

/* Hand the kernel's new records to the parser, then give the space back. */
static int drain(struct perf_threads *pt, struct perf_thread_ring *r)
{
	struct perf_event_mmap_page *meta = r->map;
	const uint8_t *data = (const uint8_t *)r->map + pt->page;
	uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
	int rc = sample_perf_ring_walk(data, (uint64_t)pt->data_pages * pt->page, meta->data_tail, head,
				pt->parse, pt->out, &pt->bad);
	__atomic_store_n(&meta->data_tail, head, __ATOMIC_RELEASE);
	return rc;
}

int sample_perf_threads_run(struct perf_threads *pt, const struct sample_config *cfg)
{
	int rc = 0;
	uint64_t end = core_now_ns() + (uint64_t)cfg->window_ms * 1000000ull;
	uint64_t poll_ms = cfg->hz >= 10000 ? POLL_MS : (uint64_t)POLL_MS * 10000 / cfg->hz;
	if (poll_ms > POLL_MAX_MS)
		poll_ms = POLL_MAX_MS;
	while (!rc && !sample_window_over(cfg, end)) {
		uint64_t now = core_now_ns(), left_ms = end > now ? (end - now + 999999) / 1000000 : 0;
		poll(NULL, 0, (int)(left_ms < poll_ms ? left_ms : poll_ms));
		sample_perf_threads_scan(pt);
		for (size_t i = 0; i < pt->n && !rc; i++)
			rc = drain(pt, &pt->v[i]);
	}
	for (size_t i = 0; i < pt->n; i++)
		ioctl(pt->v[i].fd, PERF_EVENT_IOC_DISABLE, 0);
	for (size_t i = 0; i < pt->n && !rc; i++)
		rc = drain(pt, &pt->v[i]);
	pt->out->threads += (uint32_t)pt->n;
	return rc;
}

void sample_perf_threads_close(struct perf_threads *pt)
{
	for (size_t i = 0; i < pt->n; i++) {
		munmap(pt->v[i].map, ring_len(pt));
		close(pt->v[i].fd);
	}
	free(pt->v);
	pt->v = NULL;
	pt->n = pt->cap = 0;
}

int sample_perf_threads_collect(struct perf_threads *pt, int fd, const struct sample_config *cfg,
			 const char *what, struct core_err *err)
{
	if (pt->exclude == pt->pid)
		close(fd); /* the event works; this thread is not to be sampled */
	else
		sample_perf_threads_keep(pt, pt->pid, fd);
	sample_perf_threads_scan(pt);
	int rc = 0;
	if (!pt->n)
		rc = core_errf(err, OCOLOS_EPERF, "%s could not attach to any thread of pid %d: %s",
			       what, (int)pt->pid, strerror(pt->last_errno));
	else if ((rc = sample_perf_threads_run(pt, cfg)))
		rc = core_errf(err, rc, "out of memory storing %s", what);
	sample_perf_threads_close(pt);
	return rc;
}

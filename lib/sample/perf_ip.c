/*
 * perf-ip sampler backend: one perf_event_open() per thread of the target
 * (pid = tid, cpu = -1), sampling the user-mode IP at a fixed frequency,
 * each with its own mmap ring buffer that this thread drains while the
 * window runs. The thread list is re-read every poll, so threads created
 * during the window are sampled too.
 *
 * Event: hardware cycles where a PMU exists; otherwise the cpu-clock
 * software event (VMs without a PMU, like this project's CI machines).
 * Not this file's job: mapping IPs to functions (see infer/).
 */
#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/util.h"
#include "sample/sample.h"

#define RING_PAGES 32 /* data pages per thread: 128 KiB, ~5k samples */
#define POLL_MS 20

struct thread_ring {
	pid_t tid;
	int fd;
	void *map;	/* 1 metadata page + RING_PAGES data pages */
};

struct perf_sampler {
	const struct sample_config *cfg;
	struct thread_ring *rings;
	size_t n, cap;
	size_t page;
	int use_sw;	/* cycles unavailable: use cpu-clock */
	int last_errno;
	struct sample_set *out;
};

static int perf_open(struct perf_sampler *ps, pid_t tid)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = ps->use_sw ? PERF_TYPE_SOFTWARE : PERF_TYPE_HARDWARE;
	a.config = ps->use_sw ? PERF_COUNT_SW_CPU_CLOCK : PERF_COUNT_HW_CPU_CYCLES;
	a.freq = 1;
	a.sample_freq = ps->cfg->hz;
	a.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	a.wakeup_events = 0;
	return (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static int attach_thread(struct perf_sampler *ps, pid_t tid)
{
	int fd = perf_open(ps, tid);
	if (fd < 0 && !ps->use_sw && (errno == ENOENT || errno == EOPNOTSUPP ||
				      errno == ENODEV || errno == EINVAL)) {
		ps->use_sw = 1; /* no PMU here: fall back for this and all later threads */
		fd = perf_open(ps, tid);
	}
	if (fd < 0) {
		ps->last_errno = errno;
		return errno == ESRCH ? 0 : -1; /* a thread that just exited is fine */
	}
	size_t len = (1 + RING_PAGES) * ps->page;
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		ps->last_errno = errno;
		close(fd);
		return -1;
	}
	if (core_grow((void **)&ps->rings, &ps->cap, ps->n, sizeof(*ps->rings))) {
		munmap(map, len);
		close(fd);
		ps->last_errno = ENOMEM;
		return -1;
	}
	ps->rings[ps->n++] = (struct thread_ring){ tid, fd, map };
	return 0;
}

static int known_thread(const struct perf_sampler *ps, pid_t tid)
{
	for (size_t i = 0; i < ps->n; i++)
		if (ps->rings[i].tid == tid)
			return 1;
	return 0;
}

/* Attach to threads not seen yet. Returns the number of failures. */
static int scan_threads(struct perf_sampler *ps)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)ps->cfg->pid);
	DIR *d = opendir(path);
	if (!d) {
		ps->last_errno = errno;
		return 1;
	}
	int failures = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0 || tid == ps->cfg->exclude_tid || known_thread(ps, tid))
			continue;
		if (attach_thread(ps, tid))
			failures++;
	}
	closedir(d);
	return failures;
}

/* Copy records out of one ring buffer. Records may wrap around its end. */
static int drain_ring(struct perf_sampler *ps, struct thread_ring *r)
{
	struct perf_event_mmap_page *meta = r->map;
	uint8_t *data = (uint8_t *)r->map + ps->page;
	uint64_t size = (uint64_t)RING_PAGES * ps->page;
	uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = meta->data_tail;
	int rc = 0;
	while (tail < head && !rc) {
		uint8_t rec[256];
		struct perf_event_header h;
		for (size_t i = 0; i < sizeof(h); i++)
			((uint8_t *)&h)[i] = data[(tail + i) % size];
		if (h.size < sizeof(h) || h.size > sizeof(rec))
			break; /* corrupt or unexpectedly large: drop the rest */
		for (size_t i = 0; i < h.size; i++)
			rec[i] = data[(tail + i) % size];
		if (h.type == PERF_RECORD_SAMPLE && h.size >= sizeof(h) + 8) {
			uint64_t ip;
			memcpy(&ip, rec + sizeof(h), 8);
			rc = sample_set_push(ps->out, ip);
		} else if (h.type == PERF_RECORD_LOST && h.size >= sizeof(h) + 16) {
			uint64_t lost;
			memcpy(&lost, rec + sizeof(h) + 8, 8);
			ps->out->lost += lost;
		}
		tail += h.size;
	}
	__atomic_store_n(&meta->data_tail, head, __ATOMIC_RELEASE);
	return rc;
}

static void close_rings(struct perf_sampler *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		munmap(ps->rings[i].map, (1 + RING_PAGES) * ps->page);
		close(ps->rings[i].fd);
	}
	free(ps->rings);
}

int sample_perf_ip_probe(pid_t pid, struct core_err *err)
{
	struct sample_config cfg = { .backend = SAMPLE_PERF_IP, .pid = pid, .hz = 100, .window_ms = 1 };
	struct perf_sampler ps = { .cfg = &cfg };
	int fd = perf_open(&ps, pid);
	if (fd < 0 && (errno == ENOENT || errno == EOPNOTSUPP || errno == ENODEV || errno == EINVAL)) {
		ps.use_sw = 1;
		fd = perf_open(&ps, pid);
	}
	if (fd < 0)
		return core_errf(err, OCOLOS_EPERF,
				 "perf_event_open refused for pid %d: %s; allow it (sysctl "
				 "kernel.perf_event_paranoid<=2, or CAP_PERFMON)", (int)pid, strerror(errno));
	close(fd);
	return 0;
}

int sample_perf_ip_collect(const struct sample_config *cfg,
			   struct sample_set *out, struct core_err *err)
{
	struct perf_sampler ps = { .cfg = cfg, .page = (size_t)sysconf(_SC_PAGESIZE), .out = out };
	int rc = 0;
	uint64_t end = core_now_ns() + (uint64_t)cfg->window_ms * 1000000ull;
	scan_threads(&ps);
	if (!ps.n) {
		rc = core_errf(err, OCOLOS_EPERF,
			       "perf_event_open failed for every thread of pid %d: %s; "
			       "allow it (sysctl kernel.perf_event_paranoid<=2, or CAP_PERFMON) "
			       "or use a sampler that needs no perf access",
			       (int)cfg->pid, strerror(ps.last_errno));
		goto out;
	}
	while (!rc && core_now_ns() < end) {
		poll(NULL, 0, POLL_MS);
		scan_threads(&ps);
		for (size_t i = 0; i < ps.n && !rc; i++)
			rc = drain_ring(&ps, &ps.rings[i]);
	}
	for (size_t i = 0; i < ps.n; i++)
		ioctl(ps.rings[i].fd, PERF_EVENT_IOC_DISABLE, 0);
	for (size_t i = 0; i < ps.n && !rc; i++)
		rc = drain_ring(&ps, &ps.rings[i]);
	if (rc)
		rc = core_errf(err, rc, "out of memory storing samples");
	out->threads += (uint32_t)ps.n;
	out->event = ps.use_sw ? "cpu-clock" : "cycles";
out:
	close_rings(&ps);
	return rc;
}

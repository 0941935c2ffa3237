/*
 * perf-ip sampler backend: one perf_event_open() per thread of the target
 * (pid = tid, cpu = -1), sampling the user-mode IP at a fixed frequency,
 * each with its own mmap ring buffer that this thread drains while the
 * window runs, threads created during the window included (perf_threads.c).
 *
 * Event: hardware cycles where a PMU exists; otherwise the cpu-clock
 * software event (VMs without a PMU, like this project's CI machines).
 * Not this file's job: mapping IPs to functions (see infer/).
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sample/perf_threads.h"
#include "sample/sample.h"

#define RING_PAGES 32 /* data pages per thread: 128 KiB, ~5k samples */

static void ip_attr(struct perf_event_attr *a, int sw, uint32_t hz)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->type = sw ? PERF_TYPE_SOFTWARE : PERF_TYPE_HARDWARE;
	a->config = sw ? PERF_COUNT_SW_CPU_CLOCK : PERF_COUNT_HW_CPU_CYCLES;
	a->freq = 1;
	a->sample_freq = hz;
	a->sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID;
	a->exclude_kernel = 1;
	a->exclude_hv = 1;
}

/* Open the event on `tid`: cycles, or cpu-clock where there is no PMU.
 * Leaves the attributes that worked in *a. */
static int open_first(struct perf_event_attr *a, pid_t tid, uint32_t hz)
{
	ip_attr(a, 0, hz);
	int fd = sample_perf_event_open_tid(a, tid);
	if (fd < 0 && (errno == ENOENT || errno == EOPNOTSUPP || errno == ENODEV || errno == EINVAL)) {
		ip_attr(a, 1, hz);
		fd = sample_perf_event_open_tid(a, tid);
	}
	return fd;
}

/* header, u64 ip, u32 pid, u32 tid */
int sample_perf_ip_parse(const void *rec, size_t len, struct sample_set *out)
{
	uint64_t ip;
	if (len < sizeof(struct perf_event_header) + 8)
		return OCOLOS_EINVAL;
	memcpy(&ip, (const uint8_t *)rec + sizeof(struct perf_event_header), 8);
	return sample_set_push(out, ip);
}

static int refusal(pid_t pid, int e, struct core_err *err)
{
	if (e == ESRCH)
		return sample_perf_esrch(pid, err);
	return core_errf(err, OCOLOS_EPERF,
			 "perf_event_open refused for pid %d: %s; allow it (sysctl "
			 "kernel.perf_event_paranoid<=2, or CAP_PERFMON) or use the sigprof sampler",
			 (int)pid, strerror(e));
}

int sample_perf_ip_probe(pid_t pid, struct core_err *err)
{
	struct perf_event_attr a;
	int fd = open_first(&a, pid, 100);
	if (fd < 0)
		return refusal(pid, errno, err);
	close(fd);
	return 0;
}

int sample_perf_ip_collect(const struct sample_config *cfg,
			   struct sample_set *out, struct core_err *err)
{
	struct perf_threads pt = { .pid = cfg->pid, .exclude = cfg->exclude_tid,
		.data_pages = RING_PAGES, .page = (size_t)sysconf(_SC_PAGESIZE),
		.parse = sample_perf_ip_parse, .out = out };
	/* The event is chosen on the main thread (tid == pid), whose fd is
	 * kept unless that is the thread not to sample. */
	int fd = open_first(&pt.attr, cfg->pid, cfg->hz);
	if (fd < 0)
		return refusal(cfg->pid, errno, err);
	out->event = pt.attr.type == PERF_TYPE_SOFTWARE ? "cpu-clock" : "cycles";
	return sample_perf_threads_collect(&pt, fd, cfg, "IP sampling", err);
}

/* ---- the cost of a sample (sample_cost_probe) ------------------------------ */

#define PROBE_HZ 20000	   /* high, so the cost stands out of the noise */
#define PROBE_PAGES 16	   /* 64 KiB: ~2,700 records, ~130 ms at PROBE_HZ */

struct self_event {
	int fd;
	uint8_t *map;
	size_t page;
	uint64_t samples;
};

static int count_only(const void *rec, size_t len, struct sample_set *out)
{
	(void)rec;
	(void)len;
	out->n++; /* nothing stored: out->ips stays NULL */
	return 0;
}

static int self_set(void *user, int on)
{
	struct self_event *e = user;
	return ioctl(e->fd, on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
}

/* Samples taken since the last call (the ring is drained). */
static uint64_t self_count(void *user)
{
	struct self_event *e = user;
	struct perf_event_mmap_page *meta = (void *)e->map;
	uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
	struct sample_set s = { 0 };
	sample_perf_ring_walk(e->map + e->page, (uint64_t)PROBE_PAGES * e->page, meta->data_tail,
			      head, count_only, &s, NULL);
	__atomic_store_n(&meta->data_tail, head, __ATOMIC_RELEASE);
	return s.n + s.lost;
}

/* The event perf-ip would use (cycles, or cpu-clock), on the calling
 * thread, sampled and not, the same work each time (sample_cost_abba). */
uint32_t sample_perf_ip_cost_probe(void)
{
	struct self_event e = { .page = (size_t)sysconf(_SC_PAGESIZE) };
	struct perf_event_attr a;
	e.fd = open_first(&a, (pid_t)syscall(SYS_gettid), PROBE_HZ);
	if (e.fd < 0)
		return 0;
	ioctl(e.fd, PERF_EVENT_IOC_DISABLE, 0);
	size_t len = (1 + PROBE_PAGES) * e.page;
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, e.fd, 0);
	uint32_t ns = 0;
	if (map != MAP_FAILED) {
		e.map = map;
		ns = sample_cost_abba(self_set, self_count, &e);
		munmap(map, len);
	}
	close(e.fd);
	return ns;
}

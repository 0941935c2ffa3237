/*
 * perf-lbr sampler backend: taken-branch stacks from the CPU's branch
 * recorder (Intel LBR, AMD BRS / LbrExtV2, AArch64 BRBE) through
 * perf_event_open(PERF_SAMPLE_BRANCH_STACK), one event per thread of the
 * target (pid = tid, cpu = -1, threads created during the window included),
 * each with its own mmap ring buffer drained by the calling thread.
 *
 * The event is named through libpfm4, so the same code picks a sensible
 * event on each vendor: the first candidate that both encodes on this CPU
 * and opens with a branch stack wins (see lbr_candidates), then plain
 * PERF_TYPE_HARDWARE cycles. Only user-mode branches of any kind
 * (PERF_SAMPLE_BRANCH_ANY) are asked for: call-only stacks
 * (PERF_SAMPLE_BRANCH_ANY_CALL) would make the gaps between consecutive
 * entries look like straight-line code, which they are not, so the profile
 * writer would invent fall-throughs.
 *
 * Not this file's job: record layout parsing (pure, below, declared in
 * perf_lbr.h so tests can feed it bytes) is here, but turning stacks into
 * BOLT's branch and fall-through records is infer/lbr_writer.c.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
/* linux/perf_event.h first: libpfm's own copy of the perf ABI then steps
 * aside instead of redefining it. */
#include <linux/perf_event.h>
#include <perfmon/pfmlib_perf_event.h>

#include "core/util.h"
#include "sample/perf_lbr.h"
#include "sample/sample.h"

#define LBR_RING_PAGES 64 /* 256 KiB per thread: ~300 samples of 32 entries */
#define LBR_POLL_MS 20
/* AMD BRS counts taken branches with a fixed period (no frequency mode). */
#define LBR_BRS_PERIOD 500009

/* One way to ask for branch stacks. `pfm` NULL: PERF_TYPE_HARDWARE cycles. */
struct lbr_event {
	const char *pfm;   /* libpfm4 event string */
	uint64_t period;   /* 0: frequency mode at cfg->hz */
};

/* In order of preference; a candidate unknown to this CPU's PMU simply fails
 * to encode. Intel: retired taken branches (one sample per N branches, so
 * stacks cover the code in proportion to how often it branches). AMD Zen 4
 * (LbrExtV2) and AArch64 BRBE take a branch stack on cycles; AMD Zen 3 BRS
 * only on RETIRED_TAKEN_BRANCH_INSTRUCTIONS with a fixed period. */
static const struct lbr_event lbr_candidates[] = {
	{ "BR_INST_RETIRED:NEAR_TAKEN", 0 },
	{ "cycles", 0 },
	{ "RETIRED_TAKEN_BRANCH_INSTRUCTIONS", LBR_BRS_PERIOD },
	{ NULL, 0 },
};

/* ---- record parsing (pure) ---------------------------------------------- */

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Room for one more stack of `nr` branches and one more IP, so that a
 * record is appended whole or not at all. */
static int reserve_stack(struct sample_set *s, uint64_t nr)
{
	if (core_grow((void **)&s->stack_start, &s->cap_stacks, s->nstacks,
		      sizeof(*s->stack_start)))
		return OCOLOS_ENOMEM;
	for (uint64_t i = 0; i < nr; i++)
		if (core_grow((void **)&s->branches, &s->cap_branches, s->nbranches + i,
			      sizeof(*s->branches)))
			return OCOLOS_ENOMEM;
	return 0;
}

int sample_perf_lbr_parse(const void *rec, size_t len, struct sample_set *out)
{
	const uint8_t *p = rec;
	struct perf_event_header h;
	if (len < SAMPLE_LBR_FIXED_BYTES)
		return OCOLOS_EINVAL;
	memcpy(&h, p, sizeof(h));
	uint64_t nr = rd64(p + 24);
	if (h.type != PERF_RECORD_SAMPLE || h.size != len ||
	    nr > (len - SAMPLE_LBR_FIXED_BYTES) / SAMPLE_LBR_ENTRY_BYTES ||
	    SAMPLE_LBR_FIXED_BYTES + nr * SAMPLE_LBR_ENTRY_BYTES != len)
		return OCOLOS_EINVAL;
	if (reserve_stack(out, nr))
		return OCOLOS_ENOMEM;
	if (sample_set_push(out, rd64(p + 8)))
		return OCOLOS_ENOMEM;
	out->stack_start[out->nstacks++] = out->nbranches;
	const uint8_t *e = p + SAMPLE_LBR_FIXED_BYTES;
	for (uint64_t i = 0; i < nr; i++, e += SAMPLE_LBR_ENTRY_BYTES)
		out->branches[out->nbranches++] = (struct sample_branch){ rd64(e), rd64(e + 8) };
	return 0;
}

/* Copy `len` bytes starting at byte counter `pos` out of the ring. */
static void ring_copy(const uint8_t *data, uint64_t size, uint64_t pos, void *dst, size_t len)
{
	uint64_t off = pos & (size - 1);
	size_t first = (size_t)(size - off) < len ? (size_t)(size - off) : len;
	memcpy(dst, data + off, first);
	memcpy((uint8_t *)dst + first, data, len - first);
}

/* Handle one record of `h.size` bytes at `pos`. */
static int drain_one(const uint8_t *data, uint64_t size, uint64_t pos,
		     const struct perf_event_header *h, struct sample_set *out, uint64_t *bad)
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
		rc = sample_perf_lbr_parse(data + off, h->size, out);
	} else {		     /* wraps around the end: parse a copy */
		uint8_t *tmp = malloc(h->size);
		if (!tmp)
			return OCOLOS_ENOMEM;
		ring_copy(data, size, pos, tmp, h->size);
		rc = sample_perf_lbr_parse(tmp, h->size, out);
		free(tmp);
	}
	if (rc == OCOLOS_EINVAL) {
		*bad += 1;
		rc = 0;
	}
	return rc;
}

int sample_perf_lbr_drain(const uint8_t *data, uint64_t size, uint64_t tail,
			  uint64_t head, struct sample_set *out, uint64_t *bad)
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
		int rc = drain_one(data, size, tail, &h, out, bad);
		if (rc)
			return rc;
		tail += h.size;
	}
	return 0;
}

/* ---- event choice --------------------------------------------------------- */

static void lbr_attr_base(struct perf_event_attr *a, const struct lbr_event *ev, uint32_t hz)
{
	a->size = sizeof(*a);
	a->sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_BRANCH_STACK;
	a->branch_sample_type = PERF_SAMPLE_BRANCH_USER | PERF_SAMPLE_BRANCH_ANY;
	a->exclude_kernel = 1;
	a->exclude_hv = 1;
	a->disabled = 0;
	if (ev->period) {
		a->freq = 0;
		a->sample_period = ev->period;
	} else {
		a->freq = 1;
		a->sample_freq = hz;
	}
}

/* Fill `a` for candidate `ev`. Returns 0, or -1 if libpfm does not know the
 * event on this CPU. */
static int lbr_attr(struct perf_event_attr *a, const struct lbr_event *ev, uint32_t hz)
{
	memset(a, 0, sizeof(*a));
	if (ev->pfm) {
		pfm_perf_encode_arg_t arg;
		memset(&arg, 0, sizeof(arg));
		arg.size = sizeof(arg);
		arg.attr = a;
		if (pfm_get_os_event_encoding(ev->pfm, PFM_PLM3, PFM_OS_PERF_EVENT_EXT,
					      &arg) != PFM_SUCCESS)
			return -1;
		if (arg.fstr)
			free(arg.fstr);
	} else {
		a->type = PERF_TYPE_HARDWARE;
		a->config = PERF_COUNT_HW_CPU_CYCLES;
	}
	lbr_attr_base(a, ev, hz); /* libpfm sets type/config (and plm bits) only */
	return 0;
}

static int lbr_open(struct perf_event_attr *a, pid_t tid)
{
	return (int)syscall(SYS_perf_event_open, a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* Choose the event: the first candidate that opens on `pid` with a branch
 * stack. On success *a and *name are set and the open fd is returned (the
 * caller keeps or closes it). On failure returns -1 with *err_no the errno
 * of the plain-cycles attempt (the most basic one, hence the clearest
 * reason), or of a permission refusal if one was seen. */
static int lbr_choose(pid_t pid, uint32_t hz, struct perf_event_attr *a,
		      const char **name, int *err_no)
{
	int pfm_ok = pfm_initialize() == PFM_SUCCESS; /* idempotent */
	int denied = 0;
	size_t n = sizeof(lbr_candidates) / sizeof(lbr_candidates[0]);
	for (size_t i = 0; i < n; i++) {
		const struct lbr_event *ev = &lbr_candidates[i];
		if ((ev->pfm && !pfm_ok) || lbr_attr(a, ev, hz))
			continue;
		int fd = lbr_open(a, pid);
		if (fd >= 0) {
			*name = ev->pfm ? ev->pfm : "cycles";
			return fd;
		}
		*err_no = errno;
		if (errno == EACCES || errno == EPERM)
			denied = errno;
	}
	if (denied)
		*err_no = denied;
	return -1;
}

/* Turn the errno of a failed choice into OCOLOS_ENOTSUP / OCOLOS_EPERF with a
 * message that says why and what to use instead. */
static int lbr_refusal(pid_t pid, int e, struct core_err *err)
{
	switch (e) {
	case ENOENT:
	case ENODEV:
		return core_errf(err, OCOLOS_ENOTSUP,
				 "this CPU or VM exposes no hardware PMU to perf_event_open (%s: no "
				 "hardware cycles or branch events), hence no branch-stack sampling; "
				 "use perf-ip (it falls back to cpu-clock) or sigprof",
				 e == ENOENT ? "ENOENT" : "ENODEV");
	case EOPNOTSUPP:
	case EINVAL:
		return core_errf(err, OCOLOS_ENOTSUP,
				 "this CPU or VM exposes no branch-stack sampling (perf_event_open "
				 "with PERF_SAMPLE_BRANCH_STACK: %s; no LBR, BRS or BRBE, or the "
				 "hypervisor hides it); use perf-ip",
				 e == EOPNOTSUPP ? "EOPNOTSUPP" : "EINVAL");
	case ESRCH:
		return core_errf(err, OCOLOS_EPERF, "no process %d to sample", (int)pid);
	case EACCES:
	case EPERM:
		return core_errf(err, OCOLOS_EPERF,
				 "perf_event_open refused branch-stack sampling of pid %d: %s; "
				 "allow it (sysctl kernel.perf_event_paranoid<=2, or CAP_PERFMON)",
				 (int)pid, strerror(e));
	default:
		return core_errf(err, OCOLOS_EPERF,
				 "perf_event_open failed for branch-stack sampling of pid %d: %s",
				 (int)pid, strerror(e));
	}
}

int sample_perf_lbr_probe(pid_t pid, struct core_err *err)
{
	struct perf_event_attr a;
	const char *name;
	int e = 0;
	int fd = lbr_choose(pid, 100, &a, &name, &e);
	if (fd < 0)
		return lbr_refusal(pid, e, err);
	close(fd);
	return 0;
}

/* ---- collection ------------------------------------------------------------ */

struct lbr_ring {
	pid_t tid;
	int fd;
	void *map; /* 1 metadata page + LBR_RING_PAGES data pages */
};

struct lbr_sampler {
	const struct sample_config *cfg;
	struct perf_event_attr attr; /* the chosen event, for every thread */
	struct lbr_ring *rings;
	size_t n, cap;
	size_t page;
	int last_errno;
	uint64_t bad;		     /* malformed records seen */
	struct sample_set *out;
};

static size_t ring_len(const struct lbr_sampler *ls)
{
	return (1 + LBR_RING_PAGES) * ls->page;
}

/* Map the ring of an open event `fd` and keep it. Closes fd on failure. */
static int keep_ring(struct lbr_sampler *ls, pid_t tid, int fd)
{
	void *map = mmap(NULL, ring_len(ls), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		ls->last_errno = errno;
		close(fd);
		return -1;
	}
	if (core_grow((void **)&ls->rings, &ls->cap, ls->n, sizeof(*ls->rings))) {
		munmap(map, ring_len(ls));
		close(fd);
		ls->last_errno = ENOMEM;
		return -1;
	}
	ls->rings[ls->n++] = (struct lbr_ring){ tid, fd, map };
	return 0;
}

static int attach_thread(struct lbr_sampler *ls, pid_t tid)
{
	int fd = lbr_open(&ls->attr, tid);
	if (fd < 0) {
		ls->last_errno = errno;
		return errno == ESRCH ? 0 : -1; /* a thread that just exited is fine */
	}
	return keep_ring(ls, tid, fd);
}

static int known_thread(const struct lbr_sampler *ls, pid_t tid)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->rings[i].tid == tid)
			return 1;
	return 0;
}

/* Attach to threads not seen yet; a failure on one thread is remembered in
 * last_errno and does not stop the others. */
static void scan_threads(struct lbr_sampler *ls)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)ls->cfg->pid);
	DIR *d = opendir(path);
	if (!d) {
		ls->last_errno = errno;
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid > 0 && tid != ls->cfg->exclude_tid && !known_thread(ls, tid))
			attach_thread(ls, tid);
	}
	closedir(d);
}

/* Hand the kernel's new records to the parser, then give the space back. */
static int drain_ring(struct lbr_sampler *ls, struct lbr_ring *r)
{
	struct perf_event_mmap_page *meta = r->map;
	const uint8_t *data = (const uint8_t *)r->map + ls->page;
	uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
	int rc = sample_perf_lbr_drain(data, (uint64_t)LBR_RING_PAGES * ls->page,
				       meta->data_tail, head, ls->out, &ls->bad);
	__atomic_store_n(&meta->data_tail, head, __ATOMIC_RELEASE);
	return rc;
}

static void close_rings(struct lbr_sampler *ls)
{
	for (size_t i = 0; i < ls->n; i++) {
		munmap(ls->rings[i].map, ring_len(ls));
		close(ls->rings[i].fd);
	}
	free(ls->rings);
}

/* The first thread: choose the event on it (the main thread, tid == pid,
 * unless it is the one excluded), keeping that fd. */
static int start_first(struct lbr_sampler *ls, const char **name, struct core_err *err)
{
	const struct sample_config *cfg = ls->cfg;
	int e = 0;
	int fd = lbr_choose(cfg->pid, cfg->hz, &ls->attr, name, &e);
	if (fd < 0)
		return lbr_refusal(cfg->pid, e, err);
	if (cfg->exclude_tid == cfg->pid) {
		close(fd); /* the event works; this thread is not to be sampled */
		return 0;
	}
	if (keep_ring(ls, cfg->pid, fd))
		return core_errf(err, OCOLOS_EPERF, "cannot map the perf ring buffer of pid %d: %s",
				 (int)cfg->pid, strerror(ls->last_errno));
	return 0;
}

/* Poll until the window closes, then stop every event and drain once more. */
static int run_window(struct lbr_sampler *ls)
{
	int rc = 0;
	uint64_t end = core_now_ns() + (uint64_t)ls->cfg->window_ms * 1000000ull;
	while (!rc && core_now_ns() < end) {
		poll(NULL, 0, LBR_POLL_MS);
		scan_threads(ls);
		for (size_t i = 0; i < ls->n && !rc; i++)
			rc = drain_ring(ls, &ls->rings[i]);
	}
	for (size_t i = 0; i < ls->n; i++)
		ioctl(ls->rings[i].fd, PERF_EVENT_IOC_DISABLE, 0);
	for (size_t i = 0; i < ls->n && !rc; i++)
		rc = drain_ring(ls, &ls->rings[i]);
	return rc;
}

int sample_perf_lbr_collect(const struct sample_config *cfg,
			    struct sample_set *out, struct core_err *err)
{
	struct lbr_sampler ls = { .cfg = cfg, .page = (size_t)sysconf(_SC_PAGESIZE), .out = out };
	const char *name = NULL;
	int rc = start_first(&ls, &name, err);
	if (rc)
		goto out;
	scan_threads(&ls);
	if (!ls.n) {
		rc = core_errf(err, OCOLOS_EPERF,
			       "branch-stack sampling could not attach to any thread of pid %d: %s",
			       (int)cfg->pid, strerror(ls.last_errno));
		goto out;
	}
	rc = run_window(&ls);
	if (rc)
		rc = core_errf(err, rc, "out of memory storing branch stacks");
	out->threads += (uint32_t)ls.n;
	out->event = name;
out:
	close_rings(&ls);
	return rc;
}

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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* linux/perf_event.h first: libpfm's own copy of the perf ABI then steps
 * aside instead of redefining it. */
#include <linux/perf_event.h>
#include <perfmon/pfmlib_perf_event.h>

#include "core/util.h"
#include "sample/perf_lbr.h"
#include "sample/perf_threads.h"
#include "sample/sample.h"

#define LBR_RING_PAGES 64 /* 256 KiB per thread: ~300 samples of 32 entries */
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
	if (sample_set_reserve(out, 1, (size_t)nr))
		return OCOLOS_ENOMEM;
	if (sample_set_push(out, rd64(p + 8)))
		return OCOLOS_ENOMEM;
	out->stack_start[out->nstacks++] = out->nbranches;
	const uint8_t *e = p + SAMPLE_LBR_FIXED_BYTES;
	for (uint64_t i = 0; i < nr; i++, e += SAMPLE_LBR_ENTRY_BYTES)
		out->branches[out->nbranches++] = (struct sample_branch){ rd64(e), rd64(e + 8) };
	return 0;
}

int sample_perf_lbr_drain(const uint8_t *data, uint64_t size, uint64_t tail,
			  uint64_t head, struct sample_set *out, uint64_t *bad)
{
	return sample_perf_ring_walk(data, size, tail, head, sample_perf_lbr_parse, out, bad);
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
		int fd = sample_perf_event_open_tid(a, pid);
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
		return sample_perf_esrch(pid, err);
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

int sample_perf_lbr_collect(const struct sample_config *cfg,
			    struct sample_set *out, struct core_err *err)
{
	struct perf_threads pt = { .pid = cfg->pid, .exclude = cfg->exclude_tid,
		.data_pages = LBR_RING_PAGES, .page = (size_t)sysconf(_SC_PAGESIZE),
		.parse = sample_perf_lbr_parse, .out = out };
	/* The event is chosen on the main thread (tid == pid), whose fd is
	 * kept unless that is the thread not to sample. */
	const char *name = NULL;
	int e = 0;
	int fd = lbr_choose(cfg->pid, cfg->hz, &pt.attr, &name, &e);
	if (fd < 0)
		return lbr_refusal(cfg->pid, e, err);
	out->event = name;
	return sample_perf_threads_collect(&pt, fd, cfg, "branch-stack sampling", err);
}

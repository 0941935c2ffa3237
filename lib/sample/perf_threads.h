/*
 * What the perf_event_open backends (perf_ip.c, perf_lbr.c) share: one
 * event per thread of the target with its own mmap ring, threads created
 * during the window attached as they appear, and the walk over a ring's
 * records (which may wrap around its end). A backend supplies the event
 * attributes and the parser of its PERF_RECORD_SAMPLE layout.
 */
#ifndef OCOLOS_SAMPLE_PERF_THREADS_H
#define OCOLOS_SAMPLE_PERF_THREADS_H

#include <linux/perf_event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "sample/sample.h"

/* Parse one whole PERF_RECORD_SAMPLE (`len` bytes, contiguous) into `out`.
 * 0, OCOLOS_EINVAL (not a record of the expected layout: counted, skipped)
 * or OCOLOS_ENOMEM. */
typedef int (*perf_sample_parser)(const void *rec, size_t len, struct sample_set *out);

/* perf-ip's parser (perf_ip.c): the record's IP (header, u64 ip, u32 pid,
 * u32 tid; only the IP is read). perf-lbr's is sample_perf_lbr_parse(). */
int sample_perf_ip_parse(const void *rec, size_t len, struct sample_set *out);

/* Consume the records of a ring's data area (`size` bytes, a power of two)
 * from byte counter `tail` to `head`: samples through `parse`, lost-record
 * notes into out->lost, others ignored. A header that cannot start a record
 * ends the walk (counted in *bad, like malformed samples). 0 or ENOMEM. */
int sample_perf_ring_walk(const uint8_t *data, uint64_t size, uint64_t tail, uint64_t head,
		   perf_sample_parser parse, struct sample_set *out, uint64_t *bad);

struct perf_thread_ring {
	pid_t tid;
	int fd;
	void *map;	/* 1 metadata page + data pages */
};

struct perf_threads {
	pid_t pid, exclude;	    /* process; thread not to sample (or 0) */
	struct perf_event_attr attr; /* opened on every thread */
	size_t data_pages, page;
	perf_sample_parser parse;
	struct sample_set *out;
	struct perf_thread_ring *v;
	size_t n, cap;
	int last_errno;		    /* of the last failed open or mmap */
	uint64_t bad;		    /* malformed records seen */
};

int sample_perf_event_open_tid(struct perf_event_attr *a, pid_t tid);
/* Map the ring of the open event `fd` of thread `tid` and keep both.
 * 0, or -1 (fd closed, last_errno set). */
int sample_perf_threads_keep(struct perf_threads *pt, pid_t tid, int fd);
/* Open `attr` on every thread not attached yet. */
void sample_perf_threads_scan(struct perf_threads *pt);
/* Drain every ring until cfg's window has passed or it is canceled
 * (sample_window_over; attaching new threads on the way), then stop every
 * event and drain once more. 0 or ENOMEM. */
int sample_perf_threads_run(struct perf_threads *pt, const struct sample_config *cfg);
void sample_perf_threads_close(struct perf_threads *pt);
/* The whole window: keep `fd` (the event opened on the main thread, which
 * chose pt->attr) unless that thread is excluded, attach the others, run,
 * close. `what` names the samples in messages. */
int sample_perf_threads_collect(struct perf_threads *pt, int fd, const struct sample_config *cfg,
			 const char *what, struct core_err *err);

#endif

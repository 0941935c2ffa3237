/* Sampler dispatch: which backend collects or probes, and the thread
 * listing the backends share (the samples themselves: samples.c). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "core/util.h"
#include "arch/cpu.h"
#include "proc/proc.h"
#include "sample/sample.h"

struct each_new {
	pid_t exclude;
	int (*known)(void *, pid_t);
	int (*attach)(void *, pid_t);
	void *user;
	int failures;
};

static int attach_if_new(void *user, pid_t tid)
{
	struct each_new *e = user;
	if (tid != e->exclude && !e->known(e->user, tid) && e->attach(e->user, tid))
		e->failures++;
	return 0;
}

int sample_each_new_thread(pid_t pid, pid_t exclude, int (*known)(void *, pid_t),
			   int (*attach)(void *, pid_t), void *user)
{
	struct each_new e = { exclude, known, attach, user, 0 };
	return proc_threads_each(pid, attach_if_new, &e) ? -1 : e.failures;
}

/* Gone: no such pid, or a zombie that is all that is left of it (State Z
 * and one thread: a process whose main thread exited while others run is
 * State Z too, with more threads). */
int sample_process_gone(pid_t pid)
{
	if (kill(pid, 0) != 0)
		return errno == ESRCH;
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT;
	int zombie = 0;
	long threads = -1;
	while (fgets(line, sizeof(line), f)) {
		char st;
		if (sscanf(line, "State: %c", &st) == 1)
			zombie = st == 'Z' || st == 'X';
		else if (!strncmp(line, "Threads:", 8))
			threads = strtol(line + 8, NULL, 10);
	}
	fclose(f);
	return zombie && threads <= 1;
}

int sample_perf_esrch(pid_t pid, struct core_err *err)
{
	if (sample_process_gone(pid))
		return core_errf(err, OCOLOS_ENOPROC, "process %d is gone (it exited)", (int)pid);
	return core_errf(err, OCOLOS_ENOTSUP,
			 "thread %d, the main thread of process %d, has exited: the perf "
			 "samplers open their events on it; use the sigprof sampler "
			 "(in-process only)", (int)pid, (int)pid);
}

int sample_window_over(const struct sample_config *cfg, uint64_t end_ns)
{
	return core_now_ns() >= end_ns || (cfg->cancel && atomic_load(cfg->cancel));
}

int sample_collect(const struct sample_config *cfg, struct sample_set *out,
		   struct core_err *err)
{
	if (!cfg->pid || !cfg->hz || !cfg->window_ms)
		return core_errf(err, OCOLOS_EINVAL, "sampler needs a pid, a rate and a window");
	uint64_t t0 = core_now_ns();
	int rc;
	switch (cfg->backend) {
	case SAMPLE_PERF_IP:
		rc = sample_perf_ip_collect(cfg, out, err);
		break;
	case SAMPLE_SIGPROF:
		rc = sample_sigprof_collect(cfg, out, err);
		break;
	case SAMPLE_PERF_LBR:
		rc = sample_perf_lbr_collect(cfg, out, err);
		break;
	default:
		return core_errf(err, OCOLOS_EINVAL, "unknown sampler backend %d", (int)cfg->backend);
	}
	/* The backends stop their window early on a cancel and return what
	 * they have; the caller must not mistake it for a whole window. */
	if (!rc && cfg->cancel && atomic_load(cfg->cancel))
		rc = core_errf(err, OCOLOS_ECANCELED,
			       "canceled (ocolos_cancel) %llu ms into the %u ms sampling window of "
			       "process %d: the round was abandoned",
			       (unsigned long long)((core_now_ns() - t0) / 1000000), cfg->window_ms,
			       (int)cfg->pid);
	return rc;
}

int sample_probe(enum sample_backend_kind kind, pid_t pid, struct core_err *err)
{
	if (kind != SAMPLE_SIGPROF && pid == getpid() && arch_on_valgrind())
		return core_errf(err, OCOLOS_ENOTSUP,
				 "running under Valgrind: perf samples would point into Valgrind's "
				 "translated code, not this program; use the sigprof sampler "
				 "(OCOLOS_SAMPLER_SIGPROF; AUTO picks it)");
	switch (kind) {
	case SAMPLE_PERF_IP:
		return sample_perf_ip_probe(pid, err);
	case SAMPLE_SIGPROF:
		return sample_sigprof_probe(pid, err);
	case SAMPLE_PERF_LBR:
		return sample_perf_lbr_probe(pid, err);
	}
	return core_errf(err, OCOLOS_EINVAL, "unknown sampler backend %d", (int)kind);
}

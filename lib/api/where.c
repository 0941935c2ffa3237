/*
 * Where a process runs: samples of every thread but the caller, sorted
 * into the binary's original code (any executable mapping of the file the
 * process runs), the last round's optimized code, and everything else.
 */
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "api/api.h"
#include "sample/sample.h"

static int in_exe(const struct procmaps *m, dev_t dev, ino_t ino, uint64_t ip)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct procmaps_entry *e = &m->v[i];
		if (ip >= e->start && ip < e->end)
			return e->ino == (uint64_t)ino && e->dev_major == major(dev) &&
			       e->dev_minor == minor(dev) && e->perms[2] == 'x';
	}
	return 0;
}

int api_where(struct ocolos_ctx *ctx, uint32_t window_ms, uint32_t hz,
	       struct ocolos_where_result *out)
{
	struct stat st;
	char exe[64];
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)ctx->pid);
	if (stat(exe, &st) != 0)
		return core_errf(&ctx->err, OCOLOS_ENOPROC, "cannot stat %s: is process %d alive?",
				 exe, (int)ctx->pid);
	int self = ctx->pid == getpid();
	/* perf-ip, or in the process itself CPU-time timers where perf_event
	 * is unavailable (qemu-user: ENOSYS; containers). */
	struct core_err why = { 0 };
	enum sample_backend_kind kind = SAMPLE_PERF_IP;
	if (self && sample_probe(SAMPLE_PERF_IP, ctx->pid, &why) != 0)
		kind = SAMPLE_SIGPROF;
	struct sample_config cfg = { .backend = kind, .pid = ctx->pid, .hz = hz,
		.window_ms = window_ms, .exclude_tid = self ? (pid_t)syscall(SYS_gettid) : 0,
		.cancel = &ctx->cancel };
	struct sample_set s = { 0 };
	int rc = sample_collect(&cfg, &s, &ctx->err);
	struct procmaps m = { 0 };
	if (!rc)
		rc = core_procmaps_read(ctx->pid, &m, &ctx->err);
	uint64_t lo = ctx->state->live ? ctx->state->applied.c1.addr : 0;
	uint64_t hi = ctx->state->live ? ctx->state->applied.c1.addr + ctx->state->applied.c1.size : 0;
	for (size_t i = 0; !rc && i < s.n; i++) {
		uint64_t ip = s.ips[i];
		if (ip >= lo && ip < hi)
			out->in_optimized++;
		else if (in_exe(&m, st.st_dev, st.st_ino, ip))
			out->in_original++;
		else
			out->elsewhere++;
	}
	out->samples = rc ? 0 : s.n;
	core_procmaps_free(&m);
	sample_set_free(&s);
	return rc;
}

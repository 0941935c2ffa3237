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

/* In optimized code: any version still mapped (its code, or the stubs). */
static int in_versions(const struct api_state *st, uint64_t ip)
{
	for (size_t i = 0; i < st->nv; i++) {
		const struct api_version *v = &st->v[i];
		if ((ip >= v->res.addr && ip < v->res.addr + v->res.size) ||
		    (ip >= v->island.addr && ip < v->island.addr + v->island.size))
			return 1;
	}
	return 0;
}

/* In the slot stubs: a jump to the newest version while it is in use, to C0
 * after a revert; counted with where it leads. */
static int in_stubs(const struct api_state *st, uint64_t ip)
{
	return ip >= st->stubs.res.addr && ip < st->stubs.res.addr + st->stubs.res.size;
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
	/* Which versions exist: what the state record says, if this context did
	 * not make them (nothing is finished or undone by looking). A program
	 * that cannot be modelled has none. */
	uint64_t bias;
	struct core_err keep = ctx->err;
	if (!api_open_model(ctx) && !api_find_bias(ctx, &bias)) {
		if (!ctx->state->bias)
			ctx->state->bias = bias;
		int rc = api_state_sync(ctx, 0);
		if (rc)
			return rc;
	} else {
		ctx->err = keep;
	}
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
	const struct api_state *state = ctx->state;
	for (size_t i = 0; !rc && i < s.n; i++) {
		uint64_t ip = s.ips[i];
		if (in_versions(state, ip) || (state->redirected && in_stubs(state, ip)))
			out->in_optimized++;
		else if (in_stubs(state, ip))
			out->in_original++;
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

/*
 * The 0.1 ABI, for programs built against libocolos 0.1's header: its
 * calls keep their OCOLOS_0.1 symbol versions in the shared library and
 * are translated here into 0.2 calls. 0.1's structs had no size in the
 * results, so the layouts below are 0.1's exactly (its last header: the
 * one with entries_patched/entries_blocked at the end of ocolos_stats), and
 * nothing is ever written past them. Shared library only: the static
 * archive has no symbol versions, and a static program is built against
 * the header it ships with.
 *
 * One change of behaviour is deliberate: 0.1's default redirected every
 * read-only function-pointer slot, which could change the result of
 * `table[i] == &func`; a 0.1 program now gets the pointer rule
 * (OCOLOS_SLOTS_SAFE), and its redirect_writable_slots = 1 means what it
 * meant, every slot (OCOLOS_SLOTS_ALL).
 */
#include <string.h>

#include "api/api.h"
#include "api/export.h"

#ifdef OCOLOS_SHARED_BUILD

OCOLOS_DECLARE_0_2(ocolos_optimize_self)
OCOLOS_DECLARE_0_2(ocolos_revert_self)
OCOLOS_DECLARE_0_2(ocolos_reapply_self)
OCOLOS_DECLARE_0_2(ocolos_where_self)
OCOLOS_DECLARE_0_2(ocolos_open_pid)
OCOLOS_DECLARE_0_2(ocolos_round)
OCOLOS_DECLARE_0_2(ocolos_revert)
OCOLOS_DECLARE_0_2(ocolos_reapply)
OCOLOS_DECLARE_0_2(ocolos_where)

struct compat01_self_opts {
	size_t sz;
	uint32_t profile_ms, sample_hz;
	const char *bolt_path;
	uint32_t bolt_timeout_ms, stop_timeout_ms;
	int stop_signal;
	const char *binary_path, *tmp_dir;
	int keep_work_dir;
	ocolos_log_fn log_fn;
	void *log_user;
	const char *const *bolt_extra_args;
	int sampler, edges, redirect_writable_slots;
};

struct compat01_pid_opts {
	size_t sz;
	uint32_t profile_ms, sample_hz;
	const char *bolt_path;
	uint32_t bolt_timeout_ms, stop_timeout_ms, call_timeout_ms;
	const char *binary_path, *tmp_dir;
	int keep_work_dir;
	ocolos_log_fn log_fn;
	void *log_user;
	const char *const *bolt_extra_args;
	int sampler, edges, redirect_writable_slots;
};

struct compat01_stats {
	uint64_t samples, samples_in_binary;
	uint32_t threads_sampled, functions_moved;
	uint64_t c1_bytes, c1_addr;
	uint32_t call_sites_patched, pointer_slots_patched, threads_stopped;
	uint64_t profile_ns, bolt_ns, pause_ns, round_ns;
	char sampler[16];
	uint32_t entries_patched, entries_blocked;
};

struct compat01_switch_stats {
	uint32_t call_sites, pointer_slots, mismatched, threads_stopped;
	uint64_t pause_ns;
	uint32_t entries;
};

struct compat01_where_result {
	uint64_t samples, in_original, in_optimized, elsewhere;
};

/* 0.1 options -> 0.2 options, read with 0.1's rule: up to sizeof, tail
 * padding included, and only bytes past sizeof must be zero. Not up to
 * offsetofend of the last field: both 0.1 option structs end in an int at
 * 96, so bytes 100..103 are padding, which 0.1 never looked at and which
 * OCOLOS_OPTS() does not zero: GCC 12 at -O2 drops its memset as a dead
 * store before the compound-literal assignment, which stores the fields
 * only, and stack garbage stays in the padding (tests/abi/abi_old.c).
 * Refusing those bytes failed rounds of 0.1 programs that 0.1 ran. */
static int opts_from_01(const void *in, size_t known, const char *what, struct ocolos_opts *o,
			void *u, size_t usz)
{
	struct core_err err = { 0 };
	int rc = api_read_opts(in, u, usz, known, what, &err);
	if (rc)
		return api_refuse(rc, "%s", err.msg);
	memset(o, 0, sizeof(*o));
	o->sz = sizeof(*o);
	return 0;
}

static void slots_from_01(struct ocolos_opts *o, int redirect_writable_slots)
{
	o->pointer_slots = redirect_writable_slots ? OCOLOS_SLOTS_ALL : OCOLOS_SLOTS_SAFE;
}

static int self_opts_01(const struct compat01_self_opts *in, struct ocolos_opts *o)
{
	struct compat01_self_opts u;
	int rc = opts_from_01(in, sizeof(struct compat01_self_opts),
			      "ocolos_self_opts", o, &u, sizeof(u));
	if (rc)
		return rc;
	o->profile_ms = u.profile_ms ? u.profile_ms : 4000; /* 0.1's fixed default */
	o->sample_hz = u.sample_hz;
	o->bolt_path = u.bolt_path;
	o->bolt_timeout_ms = u.bolt_timeout_ms;
	o->stop_timeout_ms = u.stop_timeout_ms;
	o->stop_signal = u.stop_signal;
	o->binary_path = u.binary_path;
	o->tmp_dir = u.tmp_dir;
	o->keep_work_dir = u.keep_work_dir;
	o->log_fn = u.log_fn;
	o->log_user = u.log_user;
	o->bolt_extra_args = u.bolt_extra_args;
	o->sampler = u.sampler;
	o->edges = u.edges;
	slots_from_01(o, u.redirect_writable_slots);
	return 0;
}

static int pid_opts_01(const struct compat01_pid_opts *in, struct ocolos_opts *o)
{
	struct compat01_pid_opts u;
	int rc = opts_from_01(in, sizeof(struct compat01_pid_opts),
			      "ocolos_pid_opts", o, &u, sizeof(u));
	if (rc)
		return rc;
	o->profile_ms = u.profile_ms ? u.profile_ms : 4000; /* 0.1's fixed default */
	o->sample_hz = u.sample_hz;
	o->bolt_path = u.bolt_path;
	o->bolt_timeout_ms = u.bolt_timeout_ms;
	o->stop_timeout_ms = u.stop_timeout_ms;
	o->call_timeout_ms = u.call_timeout_ms;
	o->binary_path = u.binary_path;
	o->tmp_dir = u.tmp_dir;
	o->keep_work_dir = u.keep_work_dir;
	o->log_fn = u.log_fn;
	o->log_user = u.log_user;
	o->bolt_extra_args = u.bolt_extra_args;
	o->sampler = u.sampler;
	o->edges = u.edges;
	slots_from_01(o, u.redirect_writable_slots);
	return 0;
}

static void stats_to_01(const struct ocolos_stats *s, struct compat01_stats *o)
{
	if (!o)
		return;
	*o = (struct compat01_stats){ s->samples, s->samples_in_binary, s->threads_sampled,
		s->functions_moved, s->c1_bytes, s->c1_addr, s->call_sites_patched,
		s->pointer_slots_patched, s->threads_stopped, s->profile_ns, s->bolt_ns,
		s->pause_ns, s->round_ns, { 0 }, s->entries_patched, s->entries_blocked };
	memcpy(o->sampler, s->sampler, sizeof(o->sampler));
}

static void switch_to_01(const struct ocolos_switch_stats *s, struct compat01_switch_stats *o)
{
	if (o)
		*o = (struct compat01_switch_stats){ s->call_sites, s->pointer_slots, s->mismatched,
			s->threads_stopped, s->pause_ns, s->entries };
}

static void where_to_01(const struct ocolos_where_result *s, struct compat01_where_result *o)
{
	if (o)
		*o = (struct compat01_where_result){ s->samples, s->in_original, s->in_optimized,
			s->elsewhere };
}

#define COMPAT(name) OCOLOS_COMPAT_0_1(name, compat01_##name)

COMPAT(ocolos_optimize_self)
int compat01_ocolos_optimize_self(const struct compat01_self_opts *in, struct compat01_stats *out);
int compat01_ocolos_optimize_self(const struct compat01_self_opts *in, struct compat01_stats *out)
{
	OCOLOS_OPTS(ocolos_opts, o);
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = self_opts_01(in, &o);
	if (!rc)
		rc = ocolos_optimize_self_v0_2(&o, &st);
	stats_to_01(&st, out);
	return rc;
}

COMPAT(ocolos_revert_self)
int compat01_ocolos_revert_self(struct compat01_switch_stats *out);
int compat01_ocolos_revert_self(struct compat01_switch_stats *out)
{
	OCOLOS_OPTS(ocolos_switch_stats, st);
	int rc = ocolos_revert_self_v0_2(&st);
	switch_to_01(&st, out);
	return rc;
}

COMPAT(ocolos_reapply_self)
int compat01_ocolos_reapply_self(struct compat01_switch_stats *out);
int compat01_ocolos_reapply_self(struct compat01_switch_stats *out)
{
	OCOLOS_OPTS(ocolos_switch_stats, st);
	int rc = ocolos_reapply_self_v0_2(&st);
	switch_to_01(&st, out);
	return rc;
}

COMPAT(ocolos_where_self)
int compat01_ocolos_where_self(const struct ocolos_where_opts *opts, struct compat01_where_result *out);
int compat01_ocolos_where_self(const struct ocolos_where_opts *opts, struct compat01_where_result *out)
{
	OCOLOS_OPTS(ocolos_where_result, r);
	int rc = ocolos_where_self_v0_2(opts, &r);
	where_to_01(&r, out);
	return rc;
}

COMPAT(ocolos_open_pid)
int compat01_ocolos_open_pid(pid_t pid, const struct compat01_pid_opts *in, struct ocolos_ctx **ctx);
int compat01_ocolos_open_pid(pid_t pid, const struct compat01_pid_opts *in, struct ocolos_ctx **ctx)
{
	OCOLOS_OPTS(ocolos_opts, o);
	if (ctx)
		*ctx = NULL;
	int rc = pid_opts_01(in, &o);
	return rc ? rc : ocolos_open_pid_v0_2(pid, &o, ctx);
}

typedef int (*stage02_fn)(struct ocolos_ctx *, struct ocolos_stats *);

static int stage_01(struct ocolos_ctx *ctx, stage02_fn fn, struct compat01_stats *out)
{
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = fn(ctx, &st);
	stats_to_01(&st, out);
	return rc;
}

#define COMPAT_STAGE(name, impl)                                               \
	COMPAT(name)                                                           \
	int compat01_##name(struct ocolos_ctx *ctx, struct compat01_stats *out); \
	int compat01_##name(struct ocolos_ctx *ctx, struct compat01_stats *out) \
	{                                                                      \
		return stage_01(ctx, impl, out);                               \
	}
COMPAT_STAGE(ocolos_profile, ocolos_stage_profile)
COMPAT_STAGE(ocolos_optimize, ocolos_stage_optimize)
COMPAT_STAGE(ocolos_replace, ocolos_stage_replace)
COMPAT_STAGE(ocolos_round, ocolos_round_v0_2)

COMPAT(ocolos_revert)
int compat01_ocolos_revert(struct ocolos_ctx *ctx, struct compat01_switch_stats *out);
int compat01_ocolos_revert(struct ocolos_ctx *ctx, struct compat01_switch_stats *out)
{
	OCOLOS_OPTS(ocolos_switch_stats, st);
	int rc = ocolos_revert_v0_2(ctx, &st);
	switch_to_01(&st, out);
	return rc;
}

COMPAT(ocolos_reapply)
int compat01_ocolos_reapply(struct ocolos_ctx *ctx, struct compat01_switch_stats *out);
int compat01_ocolos_reapply(struct ocolos_ctx *ctx, struct compat01_switch_stats *out)
{
	OCOLOS_OPTS(ocolos_switch_stats, st);
	int rc = ocolos_reapply_v0_2(ctx, &st);
	switch_to_01(&st, out);
	return rc;
}

COMPAT(ocolos_where)
int compat01_ocolos_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
			  struct compat01_where_result *out);
int compat01_ocolos_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
			  struct compat01_where_result *out)
{
	OCOLOS_OPTS(ocolos_where_result, r);
	int rc = ocolos_where_v0_2(ctx, opts, out ? &r : NULL);
	where_to_01(&r, out);
	return rc;
}

#endif /* OCOLOS_SHARED_BUILD */

/*
 * A link-time stand-in for libocolos 0.1's libocolos.so.0: the calls of the
 * 0.1 header, versioned OCOLOS_0.1 (ocolos-0.1.map), with SONAME
 * libocolos.so.0. abi_old links against it, as a program built against 0.1
 * was linked against the real 0.1: that is what gives its references the
 * OCOLOS_0.1 versions (linked against today's library, the linker would
 * bind them to the default versions, OCOLOS_0.2). At run time the loader
 * finds today's libocolos.so.0 instead (this file is named otherwise), so
 * none of these bodies ever runs.
 */
#include <stdlib.h>

#include "ocolos-0.1.h"

/* Never called: today's library answers at run time. */
#define NEVER abort()

const char *ocolos_strerror(int err) { NEVER; }
const char *ocolos_version(void) { NEVER; }
const char *ocolos_last_error(const struct ocolos_ctx *ctx) { NEVER; }
void ocolos_close(struct ocolos_ctx *ctx) { NEVER; }
int ocolos_optimize_self(const struct ocolos_self_opts *opts, struct ocolos_stats *stats)
{
	NEVER;
}
int ocolos_revert_self(struct ocolos_switch_stats *stats) { NEVER; }
int ocolos_reapply_self(struct ocolos_switch_stats *stats) { NEVER; }
int ocolos_where_self(const struct ocolos_where_opts *opts, struct ocolos_where_result *out)
{
	NEVER;
}
int ocolos_open_pid(pid_t pid, const struct ocolos_pid_opts *opts, struct ocolos_ctx **ctx)
{
	NEVER;
}
int ocolos_profile(struct ocolos_ctx *ctx, struct ocolos_stats *stats) { NEVER; }
int ocolos_optimize(struct ocolos_ctx *ctx, struct ocolos_stats *stats) { NEVER; }
int ocolos_replace(struct ocolos_ctx *ctx, struct ocolos_stats *stats) { NEVER; }
int ocolos_round(struct ocolos_ctx *ctx, struct ocolos_stats *stats) { NEVER; }
int ocolos_revert(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats) { NEVER; }
int ocolos_reapply(struct ocolos_ctx *ctx, struct ocolos_switch_stats *stats) { NEVER; }
int ocolos_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
		 struct ocolos_where_result *out)
{
	NEVER;
}

/* What the public entry points (self.c, pid.c) share. */
#ifndef OCOLOS_CORE_API_H
#define OCOLOS_CORE_API_H

#include "api/ctx.h"

/* Copy the caller's options (of whatever size they were compiled with,
 * given by their leading `size_t sz`) into a struct of `known` bytes;
 * non-zero bytes beyond what we know are refused, since they are settings
 * this library version would silently ignore. `in` may be NULL. */
int api_read_opts(const void *in, void *out, size_t known, struct core_err *err);
/* Fill zero fields of `o` with the documented defaults. */
void api_defaults(struct round_opts *o);
/* Take the context's busy flag (OCOLOS_EBUSY if taken) and clear its error. */
int api_enter(struct ocolos_ctx *ctx);
/* Record a generic message for `rc` if none was set, log it, drop the flag. */
int api_leave(struct ocolos_ctx *ctx, int rc);
/* Open ctx->target for ctx->pid if not open yet. */
int api_open_target(struct ocolos_ctx *ctx);
int api_where(struct ocolos_ctx *ctx, const struct ocolos_where_opts *opts,
	      struct ocolos_where_result *out);

#endif

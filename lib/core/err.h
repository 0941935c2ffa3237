/*
 * Internal error reporting. Every internal function that can fail takes a
 * `struct core_err *` and returns 0 or a negative OCOLOS_E* code; the
 * message says what happened and what the user can do about it. The public
 * context copies it out through ocolos_last_error().
 */
#ifndef OCOLOS_CORE_ERR_H
#define OCOLOS_CORE_ERR_H

#include <ocolos/ocolos.h>

#define CORE_ERR_MSG_MAX 1024

struct core_err {
	int code;		      /* 0 or the OCOLOS_E* code last set */
	char msg[CORE_ERR_MSG_MAX];   /* "" or the message last set */
};

/* Record `code` with a printf-style message (no trailing newline) and return
 * `code`, so callers can write `return core_errf(err, OCOLOS_EIO, ...)`.
 * `err` may be NULL. The first error set wins: later calls with an error
 * already recorded keep the original, more specific message. */
int core_errf(struct core_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Forget any recorded error. */
void core_err_clear(struct core_err *err);

#endif

/* Logging through the caller's callback; the library never prints itself. */
#ifndef OCOLOS_CORE_LOG_H
#define OCOLOS_CORE_LOG_H

#include <ocolos/ocolos.h>

struct core_log {
	ocolos_log_fn fn; /* NULL: drop messages */
	void *user;
};

void core_logf(const struct core_log *log, enum ocolos_log_level level,
	       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/* Formats a message and hands it to the caller's log callback, if any. */
#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"

void core_logf(const struct core_log *log, enum ocolos_log_level level,
	       const char *fmt, ...)
{
	if (!log || !log->fn)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log->fn(level, buf, log->user);
}

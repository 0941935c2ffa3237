/*
 * The assertions and the skip probe declared in check.h. Plain C and
 * Linux: no libocolos, so that programs built against any version of the
 * public header can link it.
 */
#include "check.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int test_failures;

static void vreport(const char *file, int line, const char *cond, const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
}

void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(file, line, cond, fmt, ap);
	va_end(ap);
	_exit(1);
}

void test_failed(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(file, line, cond, fmt, ap);
	va_end(ap);
	test_failures++;
}

int test_report(const char *file)
{
	fprintf(stderr, "%s: %d failure(s)\n", file, test_failures);
	return test_failures ? 1 : 0;
}

void test_require_perf(void)
{
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_period = 1000000;
	attr.sample_type = PERF_SAMPLE_IP;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	attr.disabled = 1;
	int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	if (fd < 0) {
		fprintf(stderr,
			"SKIP: perf_event_open(cpu-clock, self) failed: %s "
			"(kernel.perf_event_paranoid or seccomp)\n",
			strerror(errno));
		exit(TEST_SKIP);
	}
	close(fd);
}

/*
 * The assertions of every test program (integration, unit, pid, AArch64,
 * ABI): one family, one message format ("FAIL file:line: cond: message" on
 * stderr), two behaviours.
 *
 *   check(cond, fmt, ...)   the test cannot go on without `cond` (a NULL it
 *                           would dereference, a round that did not
 *                           happen): print and _exit(1)
 *   expect(cond, fmt, ...)  count the failure and go on, so that one run
 *                           reports every wrong value; main() ends with
 *                           test_done(), which fails the run if any did
 *
 * The message is a printf format and its arguments (at least a format).
 * And the skip convention of ctest (SKIP_RETURN_CODE): a test that this
 * machine cannot run exits TEST_SKIP.
 *
 * Nothing here uses libocolos, so a program built against another header
 * (tests/abi: the 0.1 header, a "future" one) shares it; tests/check.c is
 * the implementation (the ocolos_test_check library).
 */
#ifndef OCOLOS_TESTS_CHECK_H
#define OCOLOS_TESTS_CHECK_H

/* Not needed here, but by every test that includes this (it prints and
 * exits); the assertion headers it replaces included them. */
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TEST_SKIP 77

#define check(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			test_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);     \
	} while (0)

#define expect(cond, ...)                                                      \
	do {                                                                   \
		if (!(cond))                                                   \
			test_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);   \
	} while (0)

/* End main(): print "FILE: N failure(s)" on stderr, return 1 if N > 0. */
#define test_done() return test_report(__FILE__)

/* expect() failures so far in this process. */
extern int test_failures;

/* Print "FAIL file:line: cond: msg" on stderr and _exit(1) (other threads
 * may be mid-work: no exit handlers run under them). */
void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));
/* Print the same and count it in test_failures. */
void test_failed(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The exit status of a test that counted test_failures (see test_done). */
int test_report(const char *file);

/* Exit with TEST_SKIP unless this process may perf_event_open() its own
 * threads (user-mode cpu-clock), which every sampling round needs. */
void test_require_perf(void);

#ifdef __cplusplus
}
#endif
#endif

/*
 * Shared harness of the integration and bad-input tests: clocks, a thread
 * blocked in a syscall, /proc/self/maps queries, and the verification of a
 * successful round (stats, C1 placement, W^X, and where the process's own
 * samples land afterwards). The assertions are check.h's.
 *
 * Not here: the deterministic workload itself (work.h for C, it_cxx.cpp for
 * C++), which must be compiled into each test binary with its own flags.
 *
 * Conventions of every test program: only deterministic output on stdout
 * (the driver compares it across modes), diagnostics on stderr, exit 0 on
 * success, 1 on a failed check, TEST_SKIP (77) when the machine cannot run
 * the test (no perf_event access).
 */
#ifndef OCOLOS_TESTS_COMMON_H
#define OCOLOS_TESTS_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <ocolos/ocolos.h>

#include "check.h" /* check(), expect(), TEST_SKIP, test_require_perf() */

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic clock, ns / ms. */
uint64_t test_now_ns(void);
uint64_t test_now_ms(void);
void test_sleep_ms(unsigned ms);
pid_t test_gettid(void);

/* After `seconds`, print "FAIL: watchdog" and _exit(1) (SIGALRM), so a
 * hung library call fails the test with a message before ctest's timeout. */
void test_watchdog(unsigned seconds);

/* ocolos_log_fn that prints to stderr; `user` is an optional prefix. */
void test_log(enum ocolos_log_level level, const char *msg, void *user);

/* Print the round's return code and stats on stderr. */
void test_print_stats(int rc, const struct ocolos_stats *st);

/* True if `s` contains `needle` (NULL-safe). */
int test_contains(const char *s, const char *needle);

/* ---- /proc/self/maps ---------------------------------------------------- */

#define TEST_MAX_RANGES 64

/* The mappings of the program's own binary (/proc/self/exe). */
struct test_exe_map {
	size_t n;
	struct {
		uint64_t lo, hi;
		int exec;
	} r[TEST_MAX_RANGES];
};

void test_exe_map_load(struct test_exe_map *m);
int test_exe_map_contains(const struct test_exe_map *m, uint64_t addr);

/* FNV-1a over every executable mapping of the binary (C0's code): equal
 * before and after a failed round means nothing was patched. */
uint64_t test_exe_text_hash(void);

/* Executable mappings backed by no live file (anonymous, memfd, deleted):
 * where C1 would live. A failed round must not leave one behind. */
unsigned test_anon_exec_mappings(void);

/* Bytes of PROT_NONE mappings backed by no file within 4 GiB of the
 * binary's image: where a round's reservation for C1 lies from the profile
 * stage until C1 is mapped into it (thread stacks' guard pages and malloc
 * arenas lie far away, in the mmap area). Equal before and after an
 * abandoned round. */
uint64_t test_reserved_near_exe(void);

/* Fail if any mapping of the process is writable and executable at once. */
void test_check_no_wx(void);

/* Fail if the process has a child (zombie or running): the library must
 * kill and reap the llvm-bolt it spawned, on every path. */
void test_check_no_children(void);

/* ---- a thread blocked in read(2) on a pipe ------------------------------- */

/* Start one thread blocked in read() on a pipe. It must stay blocked
 * through a round (the stop signal must not make read() fail with EINTR). */
void test_blocker_start(void);
/* Write a byte to the pipe, join the thread, check that read() returned that
 * byte, and return it. */
int test_blocker_release(void);

/* ---- after a successful round -------------------------------------------- */

/* Where the slot stub at `addr` jumps (lib/inject/stubs.c: a redirected
 * function pointer points at its function's stub), or `addr` itself when
 * it is not a stub. */
uint64_t test_stub_target(uint64_t addr);
/* Where code version C<gen> is mapped executable (/proc/self/maps):
 * 1 with [*lo, *hi), or 0 if it is not (never mapped, or retired). */
int test_version_range(unsigned gen, uint64_t *lo, uint64_t *hi);
/* Round k of a retirement test: ocolos_optimize_self with a window of
 * profile_ms, the library's info lines and one summary line on stderr;
 * fails the test unless it succeeded. */
void test_retire_round(unsigned k, unsigned profile_ms, struct ocolos_stats *st);
/* Round 1 of such a test (600 ms window): the generation of the version it
 * mapped, whose range goes to *lo, *hi; fails the test if none is mapped. */
unsigned test_retire_first(struct ocolos_stats *st, uint64_t *lo, uint64_t *hi);
/* True if `addr`, or the stub at `addr`, leads into [st->c1_addr,
 * st->c1_addr + st->c1_bytes): calls through it run C1. */
int test_in_c1(const struct ocolos_stats *st, uint64_t addr);

/* Check that a round succeeded and did real work: rc == 0, functions moved,
 * call sites and pointer slots patched, C1 mapped within direct-branch reach
 * of C0 and not overlapping it, every other thread (`workers` busy ones,
 * plus `blocked` ones) stopped, no W+X mapping left. Prints the stats. */
void test_check_round(int rc, const struct ocolos_stats *st, unsigned workers,
		      unsigned blocked);

/* Sample the process (all threads but the caller) with ocolos_where_self()
 * for `window_ms` at `hz` — again, up to four windows in all, while fewer
 * than `min_samples` have landed in the binary's code (C0 or C1) — and
 * return the share of those that land in C1. Fails the test if fewer
 * than `min_samples` land in the binary in the four windows. */
double test_c1_share(const struct ocolos_stats *st, uint32_t hz,
		     uint32_t window_ms, size_t min_samples);

#ifdef __cplusplus
}
#endif
#endif

/* Running under Valgrind: what changes for a library that rewrites code.
 *
 * Valgrind runs the program from translations of its code, cached by
 * address. Two things follow. Code written behind Valgrind's back (through
 * /proc/self/mem, or by a store it does not watch) keeps running from the
 * old translation until it is discarded, so every code write in this
 * process is reported here. And a perf_event_open sample's IP is an address
 * in Valgrind's translation cache, not in the program, so the perf samplers
 * refuse and AUTO falls back to sigprof (whose signal context holds the
 * program's own PC, which Valgrind synthesizes). Both cost nothing outside
 * Valgrind: the client request is a few no-op instructions.
 *
 * Supported so that callgrind's cache simulator can measure a live round
 * (bench/callgrind_online.sh): instruction-cache misses of C0 vs C1 in one
 * process, deterministic enough for a regression guard. */
#ifndef OCOLOS_CORE_VALGRIND_H
#define OCOLOS_CORE_VALGRIND_H

#include <stdint.h>

/* Non-zero when this process runs under Valgrind. */
int core_on_valgrind(void);

/* [addr, addr + len) of this process's code changed: drop Valgrind's
 * translations of it. Allocates nothing (it is called in the pause). */
void core_code_changed(uint64_t addr, uint64_t len);

#endif

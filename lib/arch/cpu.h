/*
 * What the CPU (and a CPU emulator) needs after this process writes code:
 * the page size, instruction-cache maintenance, the cross-modifying-code
 * barrier, and Valgrind's translation cache. One place, so no code writer
 * forgets one of them.
 *
 * Valgrind runs the program from translations of its code, cached by
 * address. Code written behind Valgrind's back (through /proc/self/mem, or
 * by a store it does not watch) keeps running from the old translation
 * until it is discarded, so every code write in this process is reported
 * to it. And a perf_event_open sample's IP is an address in Valgrind's
 * translation cache, not in the program, so the perf samplers refuse under
 * it and AUTO falls back to sigprof (whose signal context holds the
 * program's own PC). Both cost nothing outside Valgrind: a client request
 * is a few no-op instructions. Supported so that callgrind's cache
 * simulator can measure a live round (bench/callgrind_online.sh).
 */
#ifndef OCOLOS_ARCH_CPU_H
#define OCOLOS_ARCH_CPU_H

#include <stdint.h>

/* The run-time page size (sysconf): 4 KiB, or 16/64 KiB on AArch64. */
uint64_t arch_page_size(void);

/* Code at [lo, hi) of this process was just written: make it visible to
 * instruction fetch on every core (AArch64: clean the D-cache to the
 * point of unification, invalidate the I-cache; x86-64: coherent, nothing)
 * and drop Valgrind's translations of it. Allocates nothing: it runs in
 * the pause. The number of calls is kept for tests, which check that each
 * code write is followed by one. */
void arch_code_changed(uint64_t lo, uint64_t hi);
uint64_t arch_code_changed_count(void);

/* Register this process for membarrier(SYNC_CORE), once, before a stop
 * (registration may be slow; the barrier itself is not). Best effort:
 * older kernels lack it, and sigreturn still serializes on x86-64. */
void arch_sync_core_register(void);
/* Every core running this process executes a core-serializing instruction
 * before it runs user code again: what the x86 cross-modifying-code rule
 * asks for after code is written while other threads are stopped. */
void arch_sync_core(void);

/* Non-zero when this process runs under Valgrind. */
int arch_on_valgrind(void);

#endif

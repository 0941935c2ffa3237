/*
 * The counts of an instrumented run, taken out of the run (ocolos-bam's
 * side; the preload writes and replays them: preload.c).
 *
 * Why: BOLT's runtime turns an instrumented process's counters into a
 * profile at its exit, and for a compiler that is the dearest part of the
 * run (GCC's cc1: ~1.3 s, mostly 4 million rt_sigprocmask calls: its
 * allocator blocks signals around every allocation of the graphs it builds
 * per function). The run itself only needs to hand the counters over: the
 * preload copies them to fdata/counts.<pid> at exit and zeroes them, so
 * the runtime's own dump finds nothing to infer and writes only the
 * indirect calls it recorded (kept in its own tables, which the copy does
 * not include). Later the background worker replays the copy
 * (bam_counts_replay): the instrumented binary started with the counters
 * loaded instead of running its main, whose runtime then writes the same
 * profile the run would have written, at nice 19, outside the build.
 */
#ifndef OCOLOS_BAM_COUNTS_H
#define OCOLOS_BAM_COUNTS_H

#include <stdint.h>

/* Where an instrumented copy (BOLT's --instrument output) keeps its
 * counters: the link-time addresses of __bolt_instr_locations (the
 * uint64_t counters) and of __bolt_num_counters (their number, uint32_t),
 * read from the runtime's getter functions in the copy's symbol table
 * (x86-64: `lea`/`mov` of a RIP-relative address, then `ret`). 0: found;
 * -1: not an x86-64 copy, or the getters are missing or look different
 * (another BOLT): the runs then keep BOLT's own dump. */
int bam_counters_locate(const char *copy, uint64_t *locations, uint64_t *num);

/* The replay's profile, fixed for being taken apart from the run's:
 * BOLT's runtime writes "[unknown]" callers for the entries of a function
 * that its known callers do not account for (entry count - direct calls -
 * indirect calls). The replay saw none of the run's indirect calls (the
 * run's own dump wrote them, in `run_fdata`), so its [unknown] lines still
 * hold them: each is lowered by the calls to that function in the run's
 * file (its indirect calls, and the few calls and [unknown] entries of the
 * exit path the run went on to count, which the replay's entry counts hold
 * too), and dropped at 0. The replay's own calls out of the binary (its
 * start-up's, e.g. _start into libc) are dropped. Merged with the run's
 * file, this is the profile the run's own dump writes (tests/bam: equal
 * for the test program), but for indirect calls the replay's start-up
 * made inside the binary, and a function entered from unknown callers both
 * before and after the hand-over (lowered once too often). 0 or -1. */
int bam_counts_correct(const char *replay_fdata, const char *run_fdata, const char *out);

#endif

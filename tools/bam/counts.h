/*
 * The counts of an instrumented run, taken out of the run (ocolos-bam's
 * side; the preload writes and replays them: handover.c).
 *
 * Why: BOLT's runtime turns an instrumented process's counters into a
 * profile at its exit, and for a compiler that is the dearest part of the
 * run (GCC's cc1: ~1.3 s, mostly 4 million rt_sigprocmask calls: its
 * allocator blocks signals around every allocation of the graphs it builds
 * per function). The run itself only needs to hand the counters over: the
 * preload copies them to fdata/counts.<pid> at exit and zeroes them, so
 * the runtime's own dump finds nothing to infer and writes only the
 * indirect calls it recorded (kept in its own tables, which the hand-over
 * does not include). Later the background worker replays the counters with
 * the copy (ocolos_bam.c counts_replay, handover.c's handover_replay): the
 * instrumented binary started, the counters loaded before the program
 * itself starts, and the runtime's dump called, which writes the profile
 * the run would have written, at nice 19, outside the build.
 */
#ifndef OCOLOS_BAM_COUNTS_H
#define OCOLOS_BAM_COUNTS_H

#include <stdint.h>

/* Where an instrumented copy (BOLT's --instrument output) keeps its
 * counters: the link-time addresses of __bolt_instr_locations (the
 * uint64_t counters) and of __bolt_num_counters (their number, uint32_t),
 * from those symbols where the copy's symbol table has them, else decoded
 * from the runtime's getter functions (Debian's BOLT 22; x86-64: `lea`/
 * `mov` of a RIP-relative address, then `ret`). 0: found; -1: not an
 * x86-64 copy, no DT_FINI, or neither form there (another BOLT): the runs
 * then keep BOLT's own dump. */
int bam_counters_locate(const char *copy, uint64_t *locations, uint64_t *num);

/* The replay's profile, fixed for being taken apart from the run's:
 * BOLT's runtime writes "[unknown]" callers for the entries of a function
 * that its known callers do not account for (entry count - direct calls -
 * indirect calls). The replay saw none of the run's indirect calls (the
 * run's own dump wrote them, in `run_fdata`), so its [unknown] lines still
 * hold them: each is lowered by the calls into that function the run's
 * file holds (from another function: its indirect calls, and the few of
 * the exit path the run went on to count after the hand-over), and
 * dropped at 0. The replay's own call out of the binary (_start into libc)
 * is dropped. Merged with the run's file, this is the profile the run's
 * own dump writes (tests/bam: branch for branch for the test program),
 * but for a function with [unknown] entries before the hand-over that is
 * entered again after it (on the run's exit path): its [unknown] count is
 * short by those later entries; and for a function calling itself
 * indirectly (such a call cannot be told from a branch to its own entry,
 * which is skipped), whose [unknown] count stays high. 0 or -1. */
int bam_counts_correct(const char *replay_fdata, const char *run_fdata, const char *out);

#endif

/*
 * Batch Accelerator Mode (BAM): what the launcher (tools/ocolos_bam.c) and
 * the preload library (tools/bam/preload.c) agree on — environment variable
 * names and the layout of the cache. Nothing else; no code.
 *
 * The cache ($XDG_CACHE_HOME/ocolos-bam, 0700, owned by the user):
 *
 *   <root>/bolt.lock            flock: at most one BOLT runs per user
 *   <root>/seen/<dev>_<ino>_<size>_<mtime>
 *                               one byte appended per exec of that file
 *                               (O_APPEND: the size is the count; no lock)
 *   <root>/seen/<same name>.cpu one int64 per process of that file: the CPU
 *                               time (ns, user + system) it used, appended
 *                               at its exit or exec (O_APPEND, 8 bytes in
 *                               one write; an exec that fails appends the
 *                               negated value)
 *   <root>/e/<key>/             one entry per binary version, key =
 *                               <build-id hex>-<fnv64(path,size,mtime,conf)>
 *       meta                    "path\nsize\nmtime_ns\nbuild-id\n" (rename'd in)
 *       claims                  one byte per profiled invocation (flock'ed)
 *       spool/<pid>.<ns>.s      link-time PCs (uint64 each) of one process
 *       bolt.lock               flock: the entry's BOLT worker
 *       optimized               the BOLT output, 0500, rename'd in when done
 *       mode                    "relocs" or "no-relocs"
 *       samples                 the spool's size when its BOLT started
 *                               (the spool is removed once BOLT is done)
 *       failed                  BOLT failed: never retried for this key
 *       quarantine              the optimized binary failed to run
 *       bolt.log                BOLT's output
 *       instrumented            with --instrument N: the original, instrumented
 *                               by BOLT (exact block and edge counts), 0500,
 *                               rename'd in; removed once `optimized` exists
 *       instrument-failed       no instrumented binary for this key (why):
 *                               sampled as without --instrument
 *       instrument-deferred     --instrument auto: the memory BOLT needs is
 *                               short now (why; then the time the wait began;
 *                               mtime: the last look); removed once it is not
 *       instrument.log          llvm-bolt --instrument's output
 *       iclaims                 one byte per instrumented invocation (flock'ed)
 *       inputs                  while instrumented runs are pending: the total
 *                               size of the regular files each exec's
 *                               arguments named (int64 each, O_APPEND, at
 *                               most 4096); a run above their median is not
 *                               instrumented (preload.c, input_note)
 *       ideclined               one byte per run declined that way (flock'ed;
 *                               after 32, any run is taken)
 *       fdata/prof.<pid>.fdata  the counts one instrumented process wrote at
 *                               its exit (BOLT's runtime)
 *       fdata/<pid>.run         written by the preload when such a process starts
 *       fdata/<pid>.done        written after that, by the preload's destructor
 *                               in the same process: the counts are complete
 *       instrumented_runs       how many fdata files the BOLT run was given
 *       instrumented.counters   where the copy keeps its counters (BAM_COUNTERS_FILE)
 *       fdata/counts.<pid>      a run's counters, handed over at its exit
 *                               (struct bam_counts_header, then the counters)
 *       fdata/counts.<pid>.fdata  the replay's profile of them (BOLT's runtime)
 *       fdata/replay.<pid>.fdata  ... fixed for the run's indirect calls (counts.h)
 *   <root>/s/<pid>.log          the running session's events, one line each
 *                               ("<event> <key> <path>\n", O_APPEND)
 */
#ifndef OCOLOS_BAM_H
#define OCOLOS_BAM_H

#define BAM_ENV_SWITCH	 "OCOLOS_BAM"	      /* "off": everything passes through */
#define BAM_ENV_ROOT	 "OCOLOS_BAM_DIR"      /* the checked cache root */
#define BAM_ENV_SESSION	 "OCOLOS_BAM_SESSION"  /* the session's event log */
#define BAM_ENV_CONF	 "OCOLOS_BAM_CONF"     /* hex hash of BOLT version + options */
#define BAM_ENV_TARGETS	 "OCOLOS_BAM_TARGETS"  /* ':'-separated paths or names */
#define BAM_ENV_AUTO	 "OCOLOS_BAM_AUTO"     /* execs before a binary is a target; 0 off */
#define BAM_ENV_AUTO_CPU "OCOLOS_BAM_AUTO_CPU_MS" /* ... and CPU ms its processes used; 0 off */
#define BAM_ENV_RUNS	 "OCOLOS_BAM_PROFILE_RUNS" /* invocations profiled per key at most */
#define BAM_ENV_HZ	 "OCOLOS_BAM_HZ"       /* sampling rate of profiled processes */
#define BAM_ENV_INSTRUMENT "OCOLOS_BAM_INSTRUMENT" /* instrumented invocations per key; 0 off */
/* Set by the exec wrapper for one process only (its constructor removes it): */
#define BAM_ENV_PROFILE	 "OCOLOS_BAM_PROFILE"  /* spool directory: sample yourself */
#define BAM_ENV_RUN_ENTRY "OCOLOS_BAM_RUN_ENTRY" /* you are an optimized binary: entry dir */
#define BAM_ENV_RUN_ORIG "OCOLOS_BAM_RUN_ORIG" /* ... and this is the original to fall back to */
#define BAM_ENV_RUN_FDATA "OCOLOS_BAM_RUN_FDATA" /* ... instrumented: mark your counts done here */
/* Set by the worker for the replay of a run's counters (tools/bam/counts.h): */
#define BAM_ENV_REPLAY	 "OCOLOS_BAM_REPLAY"   /* this fdata/counts.<pid>: load it, dump, exit */
#define BAM_REPLAY_PID_TAKEN 4 /* a replay's exit status: fdata/prof.<its pid>.fdata exists */

/* An instrumented copy's counters, for the preload of its runs: one line,
 * "<locations> <num> <size> <mtime>\n" in hex: the link-time addresses of
 * __bolt_instr_locations and __bolt_num_counters, and the copy's size and
 * mtime (a run of another copy does not use them). */
#define BAM_COUNTERS_FILE "instrumented.counters"

/* fdata/counts.<pid>: this header, then `count` uint64_t counters. */
#define BAM_COUNTS_MAGIC 0x31544e4354434f42ull /* "BOCTCNT1" */
struct bam_counts_header {
	uint64_t magic, locations, num, count;
};

/* The automatic rule reads at most this much of a .cpu file per exec: a
 * binary whose first 32768 processes used less CPU time than the threshold
 * (under 61 us each at the default 2000 ms) never becomes a target. */
#define BAM_CPU_READ_MAX (256 * 1024)

#define BAM_SPOOL_MAX_PCS (1u << 20) /* per process: 8 MiB of address space, touched lazily */

#endif

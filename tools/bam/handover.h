/*
 * The counters hand-over inside the preload library (handover.c); the
 * file formats and why: tools/bam/counts.h and bam.h.
 */
#ifndef OCOLOS_BAM_HANDOVER_H
#define OCOLOS_BAM_HANDOVER_H

/* An instrumented run at exit (the pid that was exec'd), before BOLT's
 * runtime writes its profile: the counters of this process's main program
 * go to `fdata`/counts.<pid> and are zeroed, where `entry`'s
 * BAM_COUNTERS_FILE names this very copy; otherwise nothing changes. */
void handover_counts(const char *entry, const char *fdata);

/* The worker's replay: OCOLOS_BAM_REPLAY's value, before libc starts the
 * program. Ends the process (the profile written, or an exit status that
 * says why not); returns only when the value is no replay's path. */
void handover_replay(const char *replay_path);

#endif

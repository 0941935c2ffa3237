/*
 * An artifact applied in-process (ocolos_optimize_self with
 * opts.artifact_in), the self context's side of one BOLT per build; the
 * pid side is pid.artifact.* (tests/pid). Driven by it_artifact.sh:
 *
 *   it_artifact wait          work until SIGTERM (the instance an agent
 *                             writes the artifact from), then print the
 *                             final checksums
 *   it_artifact apply FILE    work, apply FILE in-process (no sampling, no
 *                             BOLT: bolt_path points nowhere), check the
 *                             round's stats, then print the same checksums
 *
 * stdout holds only the timing-free final checksums and the lap mismatch
 * count, so the script requires both modes to print the same text.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "work.h"

int main(int argc, char **argv)
{
	static struct work_pool pool;
	check(argc >= 2 && (!strcmp(argv[1], "wait") || (!strcmp(argv[1], "apply") && argc == 3)),
	      "usage: %s wait | apply FILE", argv[0]);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* workers inherit it */
	work_pool_start(&pool, 2, 3000, 40000, 0);
	if (!strcmp(argv[1], "wait")) {
		fprintf(stderr, "ready\n");
		int sig;
		sigwait(&set, &sig);
	} else {
		usleep(500 * 1000);
		OCOLOS_OPTS(ocolos_stats, st);
		OCOLOS_OPTS(ocolos_opts, o, .artifact_in = argv[2], .bolt_path = "/nonexistent/llvm-bolt",
			    .log_fn = test_log);
		int rc = ocolos_optimize_self(&o, &st);
		check(rc == 0, "the artifact round failed: %d %s: %s", rc, ocolos_strerror(rc),
		      ocolos_last_error(NULL));
		check(!strcmp(st.sampler, "artifact") && st.bolt_ns == 0 && st.samples == 0,
		      "sampler '%s', bolt_ns %llu, %llu samples: not an artifact round", st.sampler,
		      (unsigned long long)st.bolt_ns, (unsigned long long)st.samples);
		check(st.functions_moved > 0 && st.call_sites_patched + st.entries_patched > 0 &&
		      st.generation == 1, "%u functions moved, %u call sites, %u entries, generation %u",
		      st.functions_moved, st.call_sites_patched, st.entries_patched, st.generation);
		/* A second one: only the first round may apply an artifact. */
		OCOLOS_OPTS(ocolos_stats, st2);
		rc = ocolos_optimize_self(&o, &st2);
		check(rc == OCOLOS_ENOTSUP, "a second artifact round: %d %s", rc, ocolos_strerror(rc));
		usleep(500 * 1000); /* laps on the new code */
	}
	uint64_t mismatches = work_pool_stop(&pool);
	for (unsigned i = 0; i < pool.n; i++)
		printf("worker %u final %016llx\n", i, (unsigned long long)pool.w[i].result);
	printf("mismatches %llu\n", (unsigned long long)mismatches);
	return mismatches != 0;
}

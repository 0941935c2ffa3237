/*
 * ocolos-agent — optimize an already running process by pid.
 *
 *   ocolos-agent --pid PID [--profile SEC] [--every SEC] [--rounds N]
 *
 * The target needs nothing from libocolos: it must only be built with
 * -Wl,--emit-relocs, and this agent must be allowed to ptrace it. Prints one
 * JSON line per round (stats, or the error). With --every, after a round it
 * waits SEC seconds, reverts to the original code and optimizes afresh from
 * a new profile, so the layout follows the target's behaviour.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "agent_common.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ocolos-agent --pid PID [--profile SEC] [--every SEC] [--rounds N] [-v]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, 0, 'p' }, { "profile", required_argument, 0, 'P' },
		{ "every", required_argument, 0, 'e' }, { "rounds", required_argument, 0, 'n' },
		{ "verbose", no_argument, 0, 'v' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	pid_t pid = 0;
	struct agent_cfg cfg = { .profile_s = 2, .every_s = 0, .rounds = 1 };
	int c;
	while ((c = getopt_long(argc, argv, "p:P:e:n:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'p': pid = (pid_t)atoi(optarg); break;
		case 'P': cfg.profile_s = atof(optarg); break;
		case 'e': cfg.every_s = atof(optarg); cfg.rounds = 0; break;
		case 'n': cfg.rounds = atoi(optarg); break;
		case 'v': cfg.verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (pid <= 0) {
		usage(stderr);
		return 2;
	}
	return agent_run(pid, &cfg, NULL) ? 1 : 0;
}

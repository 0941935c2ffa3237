/* Shared by ocolos-agent and ocolos-supervise: rounds on a pid, JSON lines. */
#ifndef OCOLOS_EXAMPLES_AGENT_COMMON_H
#define OCOLOS_EXAMPLES_AGENT_COMMON_H

#include <signal.h>
#include <sys/types.h>

struct agent_cfg {
	double profile_s;   /* sampling window per round */
	double every_s;	    /* >0: a new round every this many seconds */
	int rounds;	    /* rounds to run (0: until stopped, with every_s) */
	int verbose;	    /* library log on stderr */
	/* Called about every 100 ms between rounds and after each round;
	 * non-zero ends the rounds. NULL: only *stop and the target's
	 * existence are checked. ocolos-supervise reaps its child here: a
	 * child that exited is a zombie, which kill(pid, 0) still finds. */
	int (*poll)(void *user);
	void *poll_user;
};

/* Run the configured rounds on `pid`, printing one JSON line per round on
 * stdout. Stops early when *stop becomes non-zero (may be NULL) or the
 * target exits. Returns 0 if every round succeeded. */
int agent_run(pid_t pid, const struct agent_cfg *cfg, volatile sig_atomic_t *stop);

#endif

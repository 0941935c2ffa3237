/*
 * ocolos-supervise — start a program, let it warm up, optimize it.
 *
 *   ocolos-supervise [--after SEC] [--profile SEC] [--every SEC] [...] -- CMD ARGS...
 *
 * Starts CMD as its child (CMD needs nothing from libocolos, only
 * -Wl,--emit-relocs), waits --after seconds (default 5), then runs one
 * optimization round, or with --every a new round every SEC seconds (each
 * from a fresh profile of the original code) until the child exits. One
 * report per round on stdout, progress on stderr (rounds.c). Signals
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 are forwarded to the child;
 * the first four also cancel the running round and end the rounds. The
 * supervisor exits with the child's exit code, or 128 + the signal that
 * killed it, like a shell; its own failures are 125, as env(1) and
 * timeout(1) do, so that they cannot pass for a status of the child. The
 * whole contract: --help, ocolos-supervise(1), docs/tools.md.
 *
 * What this file is about is the one subtle part of a supervisor that links
 * the library: this process is both the child's parent and, during a round,
 * its tracer. A tracer's waitpid() reports the tracee's ptrace stops even
 * without WUNTRACED, so
 *  - rounds and our own waits never run at the same time: one thread does
 *    both in turn, and the library detaches every thread before a stage
 *    returns, so no ptrace stop is pending when we wait;
 *  - our waits name the child (never -1, which would also reap the
 *    llvm-bolt the library spawns) and use neither __WALL nor WUNTRACED;
 *    a stop that is reported anyway (a job-control stop seen while
 *    tracing) is skipped, only an exit or a death ends the wait;
 *  - we install no SIGCHLD handler that reaps.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "tool.h"

static const char prog[] = "ocolos-supervise";

/* Exit status of the supervisor's own failures (bad command line, fork,
 * a child status lost). */
#define SUPERVISE_EXIT_OWN 125

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static volatile sig_atomic_t child_pid;

/* What we know of the child's end. */
struct child_state {
	pid_t pid;
	int done;   /* exited or died (or its status was lost) */
	int status; /* wait status when done and !lost */
	int lost;   /* someone else reaped it: status unknown */
};

/*
 * Forward a signal to the child. Signals the kernel generated for the
 * terminal (Ctrl-C, Ctrl-\, hang-up: si_code SI_KERNEL) already went to the
 * whole foreground process group, the child included; sending them again
 * would deliver them twice. A signal that asks the child to end also
 * cancels the running round and ends the rounds: optimizing a program that
 * is shutting down helps nobody.
 */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	(void)uc;
	if (child_pid > 0 && si->si_code != SI_KERNEL)
		kill((pid_t)child_pid, sig);
	if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT || sig == SIGHUP)
		tool_request_stop(sig);
	errno = saved;
}

/* Reap the child if it ended. Returns 1 once it has. Stops (see the top of
 * the file) are not an end. */
static int poll_child(void *user)
{
	struct child_state *c = user;
	if (c->done)
		return 1;
	int st;
	pid_t w = waitpid(c->pid, &st, WNOHANG);
	if (w == c->pid && (WIFEXITED(st) || WIFSIGNALED(st))) {
		c->done = 1;
		c->status = st;
	} else if (w < 0 && errno == ECHILD) {
		c->done = c->lost = 1;
	}
	return c->done;
}

/* Block until the child ends. */
static void wait_child(struct child_state *c)
{
	while (!c->done) {
		int st;
		pid_t w = waitpid(c->pid, &st, 0);
		if (w == c->pid && (WIFEXITED(st) || WIFSIGNALED(st))) {
			c->done = 1;
			c->status = st;
		} else if (w < 0 && errno == ECHILD) {
			c->done = c->lost = 1;
		}
		/* EINTR (a forwarded signal) or a stop report: wait again */
	}
}

/* Sleep `s` seconds in 100 ms steps unless the child ends or we are told
 * to stop. Returns 1 if it was interrupted. */
static int warm_up(double s, struct child_state *c)
{
	for (double t = 0; t < s; t += 0.1) {
		if (poll_child(c) || tool_stop_signal)
			return 1;
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	return poll_child(c) || tool_stop_signal;
}

/* fork + exec with the forwarded signals blocked across the fork, so a
 * signal cannot arrive after the fork but before child_pid is known. */
static pid_t start_child(char **argv)
{
	sigset_t block, old;
	sigemptyset(&block);
	for (size_t i = 0; i < NFORWARDED; i++)
		sigaddset(&block, forwarded[i]);
	sigprocmask(SIG_BLOCK, &block, &old);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		for (size_t i = 0; i < NFORWARDED; i++)
			signal(forwarded[i], SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		/* The child should not outlive a supervisor that was killed. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(128 + SIGTERM);
		execvp(argv[0], argv);
		fprintf(stderr, "%s: cannot run %s: %s\n", prog, argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	if (pid > 0)
		child_pid = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

static void help(void)
{
	printf("Usage: %s [OPTION]... -- CMD [ARG]...\n"
	       "Start CMD, let it warm up, then optimize its code layout with LLVM BOLT while\n"
	       "it runs: sample it, have llvm-bolt lay out its hot code anew, map that code\n"
	       "into it and redirect calls there. CMD needs only -Wl,--emit-relocs.\n"
	       "\n"
	       "  -a, --after SEC       warm-up before the first round (default 5; 0 to 86400)\n",
	       prog);
	tool_help_common(stdout, 1);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "after", required_argument, 0, 'a' },
		TOOL_COMMON_LONGOPTS, { 0, 0, 0, 0 } };
	struct tool_cfg cfg = { .prog = prog, .profile_ms = TOOL_DEFAULT_PROFILE_MS };
	uint32_t after_ms = 5000;
	int c;
	/* "+": options end at CMD, so CMD's own options are left alone. */
	while ((c = getopt_long(argc, argv, "+a:" TOOL_COMMON_SHORTOPTS, lo, NULL)) != -1) {
		if (c == 'h') {
			help();
			return 0;
		}
		if (c == 'V') {
			tool_version(prog);
			return 0;
		}
		int rc = c == 'a' ? tool_parse_seconds(prog, "--after", optarg, 0, 86400000u, &after_ms)
				  : tool_option(&cfg, c, optarg);
		if (rc) /* -1: refused with a message; 1: '?', getopt said why */
			return tool_usage(prog, SUPERVISE_EXIT_OWN);
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no command to run (-- CMD [ARG]...)\n", prog);
		return tool_usage(prog, SUPERVISE_EXIT_OWN);
	}
	if (tool_check_options(&cfg))
		return tool_usage(prog, SUPERVISE_EXIT_OWN);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NFORWARDED; i++)
		sigaction(forwarded[i], &sa, NULL);

	fflush(stdout); /* nothing buffered may be written twice after fork */
	struct child_state child = { 0 };
	child.pid = start_child(argv + optind);
	if (child.pid < 0) {
		fprintf(stderr, "%s: fork: %s\n", prog, strerror(errno));
		return SUPERVISE_EXIT_OWN;
	}

	if (!warm_up(after_ms / 1000.0, &child)) {
		cfg.poll = poll_child;
		cfg.poll_user = &child;
		struct tool_result res;
		tool_run(child.pid, &cfg, &res); /* failures are in its reports */
	}
	wait_child(&child);
	if (child.lost) {
		fprintf(stderr, "%s: the exit status of process %d was lost (reaped elsewhere)\n",
			prog, (int)child.pid);
		return SUPERVISE_EXIT_OWN;
	}
	if (WIFSIGNALED(child.status))
		return 128 + WTERMSIG(child.status);
	return WEXITSTATUS(child.status);
}

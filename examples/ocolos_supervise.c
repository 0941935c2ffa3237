/*
 * ocolos-supervise — start a program, let it warm up, optimize it.
 *
 *   ocolos-supervise [--after SEC] [--profile SEC] [--every SEC] [--rounds N] [-v]
 *                    -- CMD ARGS...
 *
 * Starts CMD as its child (CMD needs nothing from libocolos, only
 * -Wl,--emit-relocs), waits --after seconds (default 5), then runs one
 * optimization round, or with --every a new round every SEC seconds (each
 * from a fresh profile of the original code) until the child exits. One
 * JSON line per round on stdout (agent_common.c). Signals
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 are forwarded to the child;
 * the supervisor exits with the child's exit code, or 128 + the signal that
 * killed it, like a shell.
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

#include "agent_common.h"

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t stop_rounds;

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
 * would deliver them twice. A signal that asks the child to end also ends
 * the rounds: optimizing a program that is shutting down helps nobody.
 */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	(void)uc;
	if (child_pid > 0 && si->si_code != SI_KERNEL)
		kill((pid_t)child_pid, sig);
	if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT || sig == SIGHUP)
		stop_rounds = 1;
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
		if (poll_child(c) || stop_rounds)
			return 1;
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	return poll_child(c) || stop_rounds;
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
		fprintf(stderr, "ocolos-supervise: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	if (pid > 0)
		child_pid = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ocolos-supervise [--after SEC] [--profile SEC] [--every SEC] "
		   "[--rounds N] [-v] -- CMD ARGS...\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "after", required_argument, 0, 'a' }, { "profile", required_argument, 0, 'P' },
		{ "every", required_argument, 0, 'e' }, { "rounds", required_argument, 0, 'n' },
		{ "verbose", no_argument, 0, 'v' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	struct agent_cfg cfg = { .profile_s = 2, .every_s = 0, .rounds = 1 };
	double after = 5;
	int c;
	/* "+": options end at CMD, so CMD's own options are left alone. */
	while ((c = getopt_long(argc, argv, "+a:P:e:n:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'a': after = atof(optarg); break;
		case 'P': cfg.profile_s = atof(optarg); break;
		case 'e': cfg.every_s = atof(optarg); cfg.rounds = 0; break;
		case 'n': cfg.rounds = atoi(optarg); break;
		case 'v': cfg.verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}

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
		fprintf(stderr, "ocolos-supervise: fork: %s\n", strerror(errno));
		return 1;
	}

	if (!warm_up(after, &child)) {
		cfg.poll = poll_child;
		cfg.poll_user = &child;
		agent_run(child.pid, &cfg, &stop_rounds); /* errors are in its JSON lines */
	}
	wait_child(&child);
	if (child.lost) {
		fprintf(stderr, "ocolos-supervise: the exit status of process %d was lost "
			"(reaped elsewhere)\n", (int)child.pid);
		return 1;
	}
	if (WIFSIGNALED(child.status))
		return 128 + WTERMSIG(child.status);
	return WEXITSTATUS(child.status);
}

/*
 * An idle target for tests/tools/bad_inputs.py (the "empty profile" row):
 * a plain program built like the pid targets (-Wl,--emit-relocs, nothing
 * from libocolos) that spends its life blocked in sigwaitinfo(), so a
 * sampling window finds no sample in its code.
 *
 *   idle_target     prints "ready" once; each SIGUSR1 prints "pong N";
 *                   SIGTERM/SIGINT print "bye N" and exit 0
 *
 * Its answers are how the test sees it still works after a failed round.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	unsigned pongs = 0;
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGUSR1)
			printf("pong %u\n", ++pongs);
		else if (sig == SIGTERM || sig == SIGINT)
			break;
	}
	printf("bye %u\n", pongs);
	return 0;
}

/*
 * For the pid-mode targets: when one dies of SIGILL, SIGSEGV or SIGBUS, it
 * says where first (the PC, the faulting address and its own mappings, on
 * stderr), so a test that sees "killed by signal 4" also sees which
 * mapping the thread was running — an agent's mistake in another process
 * leaves nothing else behind. Only async-signal-safe calls; the handler is
 * reset on entry, so the faulting instruction runs again (a signal sent by
 * kill() is raised again) and the process ends by the same signal as
 * without it.
 */
#ifndef OCOLOS_TESTS_PID_CRASH_REPORT_H
#define OCOLOS_TESTS_PID_CRASH_REPORT_H

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static void crash_put(const char *s)
{
	ssize_t r = write(2, s, strlen(s));
	(void)r;
}

static void crash_hex(uint64_t v)
{
	char b[19] = "0x";
	for (int i = 0; i < 16; i++)
		b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	b[18] = '\0';
	crash_put(b);
}

static void crash_report(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = (ucontext_t *)ucv;
	uint64_t pc = 0;
#if defined(__x86_64__)
	pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	pc = (uint64_t)uc->uc_mcontext.pc;
#endif
	crash_put(sig == SIGILL ? "target: SIGILL" : sig == SIGSEGV ? "target: SIGSEGV"
								   : "target: SIGBUS");
	crash_put(" at pc ");
	crash_hex(pc);
	crash_put(", address ");
	crash_hex((uint64_t)(uintptr_t)si->si_addr);
	crash_put("; its mappings:\n");
	int fd = open("/proc/self/maps", O_RDONLY);
	char buf[4096];
	ssize_t n;
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0) {
		ssize_t w = write(2, buf, (size_t)n);
		(void)w;
	}
	if (fd >= 0)
		close(fd);
	/* Sent by kill() rather than raised by an instruction: nothing runs
	 * again to raise it, so raise it (the handler is reset). */
	if (si->si_code <= 0)
		raise(sig);
}

static void crash_report_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_report;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

#endif

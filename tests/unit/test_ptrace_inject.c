/*
 * ptrace injector (inject/ptrace.c): system calls and calls injected into a
 * child through the stub return the right result and leave the thread as it
 * was (general registers, vector registers, signal mask), also when the
 * thread was blocked in a system call (it is restarted); an injected call
 * past its time limit is reported in time and left to finish, never cut
 * short, and the thread then runs on; and a
 * tracer killed in the middle of an injected call leaves the child running
 * correctly — the call completes and the thread resumes by itself; and
 * code written into the child through /proc/PID/mem runs once the stub's
 * instruction-cache routine has run (AArch64; on x86-64 there is none);
 * and a batched read of the child's memory (peek_many) reads what a peek
 * reads, and tells a range it could not read from those around it; and a
 * stop runs the tracer real-time (as root) and gives its policy back.
 *
 * x86-64 and AArch64 (built by tests/aarch64 too, run in the AArch64
 * guest: qemu-user has no ptrace).
 *
 * The children are forks of this test, so a function here has the same
 * address in them.
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "proc/proc.h"
#include "proc/ptrace.h"
#include "proc/target.h"
#include "check.h"

#define PATTERN 0x5a5aa5a5c3c33c3cll

struct shared {
	volatile long counter, bad, calls, reads;
};
static struct shared *sh;

#if defined(__x86_64__)
/* Counts while xmm8 and r12 keep PATTERN; an injection that did not restore
 * them exactly is seen here. */
static void spin(void)
{
	long pattern = PATTERN;
	__asm__ volatile("movq %2, %%xmm8\n\t"
			 "mov %2, %%r12\n"
			 "1:\tmovq %%xmm8, %%rax\n\t"
			 "cmp %2, %%rax\n\t"
			 "jne 2f\n\t"
			 "cmp %2, %%r12\n\t"
			 "jne 2f\n\t"
			 "lock incq (%0)\n\t"
			 "jmp 1b\n"
			 "2:\tmovq $1, (%1)\n"
			 :
			 : "r"(&sh->counter), "r"(&sh->bad), "r"(pattern)
			 : "rax", "r12", "xmm8", "memory", "cc");
	for (;;)
		pause();
}
#define CLOBBER() __asm__ volatile("xorps %%xmm8, %%xmm8\n\txor %%r12d, %%r12d" ::: "xmm8", "r12")
#elif defined(__aarch64__)
/* Counts while v16, x12 and the flags keep their values (v16 and x12 are
 * caller-saved: an injected call may clobber them, the stub must give them
 * back; the flags too), and x30 keeps PATTERN. */
static void spin(void)
{
	long pattern = PATTERN;
	__asm__ volatile("fmov d16, %2\n\t"
			 "mov x12, %2\n\t"
			 "mov x30, %2\n\t"
			 "cmp x12, x12\n"		/* Z set */
			 "1:\tb.ne 2f\n\t"
			 "fmov x9, d16\n\t"
			 "cmp x9, %2\n\t"
			 "b.ne 2f\n\t"
			 "cmp x12, %2\n\t"
			 "b.ne 2f\n\t"
			 "cmp x30, %2\n\t"
			 "b.ne 2f\n\t"
			 "ldaxr x10, [%0]\n\t"
			 "add x10, x10, #1\n\t"
			 "stlxr w11, x10, [%0]\n\t"
			 "cmp x12, x12\n\t"		/* Z set again for the b.ne */
			 "b 1b\n"
			 "2:\tmov x10, #1\n\t"
			 "str x10, [%1]\n"
			 :
			 : "r"(&sh->counter), "r"(&sh->bad), "r"(pattern)
			 : "x9", "x10", "x11", "x12", "x30", "v16", "memory", "cc");
	for (;;)
		pause();
}
#define CLOBBER() __asm__ volatile("movi v16.2d, #0\n\tmov x12, #0\n\tcmn x12, #1" ::: "v16", "x12", "cc")
#endif

/* The code the i-cache test rewrites: returns 1, then 2. */
static __attribute__((noinline, used, aligned(64))) int version(void)
{
	return 1;
}
#if defined(__aarch64__)
static const uint32_t version2[] = { 0x52800040u, 0xd65f03c0u }; /* mov w0, #2; ret */
#else
static const uint8_t version2[] = { 0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3 }; /* mov $2, %eax; ret */
#endif

/* Calls version() through a volatile pointer (no inlining, no caching). */
static void caller(void)
{
	int (*volatile fn)(void) = version;
	for (;;) {
		sh->reads = fn();
		sh->counter++;
	}
}

/* Injected: clobbers what spin() checks, waits `ms`, returns ms + 1. */
static __attribute__((noinline, used)) long clobber(long ms)
{
	CLOBBER();
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	sh->calls++;
	return ms + 1;
}

static int pipefd[2];

/* Blocked in read() most of the time: an injection then interrupts it. */
static void reader(void)
{
	for (;;) {
		char c;
		ssize_t n = read(pipefd[0], &c, 1);
		if (n == 1)
			sh->reads++;
		else
			sh->bad = n < 0 ? errno : -1; /* not restarted: EINTR or worse */
	}
}

/* A thread inside dl_iterate_phdr (a function that holds the dynamic
 * linker's lock), sleeping in its callback for good. */
static int in_callback(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)info, (void)size, (void)data;
	for (;;) {
		sh->counter++;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

static void inside_lock_holder(void)
{
	dl_iterate_phdr(in_callback, NULL);
}

static pid_t start(void (*fn)(void))
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn();
		_exit(0);
	}
	struct timespec ts = { 0, 100000000 };
	nanosleep(&ts, NULL);
	return pid;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* SigBlk of /proc/PID/status, or -1. */
static long long sigblk(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "SigBlk:", 7))
			v = strtoll(line + 7, NULL, 16);
	if (f)
		fclose(f);
	return v;
}

static void expect_runs_clean(pid_t pid, const char *what)
{
	long c0 = sh->counter;
	sleep_ms(100);
	expect(sh->counter > c0, "%s: the child makes no progress", what);
	expect(!sh->bad, "%s: the child's registers were not restored", what);
	expect(sigblk(pid) == 0, "%s: the child's signal mask is %llx", what, sigblk(pid));
	int st;
	expect(waitpid(pid, &st, WNOHANG) == 0, "%s: the child ended", what);
}

static int open_mem(pid_t pid, uint64_t *stub)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct procmaps m = { 0 };
	struct core_err err = { 0 };
	*stub = 0;
	if (fd >= 0 && core_procmaps_read(pid, &m, &err) == 0) {
		*stub = proc_ptrace_place_stub(pid, &m, fd);
		core_procmaps_free(&m);
	}
	return fd;
}

/* What the last call() left running (tid 0: nothing). */
static struct proc_call_left last_left;

static char last_msg[1024]; /* the last call's error */

static int call(pid_t pid, int memfd, uint64_t stub, uint64_t fn, uint64_t arg,
		uint32_t timeout_ms, uint64_t *ret)
{
	struct proc_ptrace *pt;
	struct core_err err = { 0 };
	int rc = proc_ptrace_stop(pid, 0, 2000, &pt, &err);
	if (rc)
		return rc;
	const uint64_t args[6] = { arg, 0, 0, 0, 0, 0 };
	rc = proc_ptrace_call(pt, memfd, stub, fn, args, timeout_ms, ret, &err);
	last_left = pt->left;
	snprintf(last_msg, sizeof(last_msg), "%s", err.msg);
	proc_ptrace_resume(pt, NULL);
	return rc;
}

int main(void)
{
	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	expect(sh != MAP_FAILED, "mmap");
	if (sh == MAP_FAILED || pipe(pipefd))
		return 1;

	/* Calls and system calls in a busy thread. */
	pid_t pid = start(spin);
	uint64_t stub;
	int memfd = open_mem(pid, &stub);
	expect(memfd >= 0 && stub, "no stub placed in the child");
	uint64_t again;
	int fd2 = open_mem(pid, &again);
	expect(again == stub, "a second placement does not find the first stub");
	close(fd2);
	struct proc_ptrace *pt;
	struct core_err err = { 0 };
	int64_t sret = 0;
	const uint64_t none[6] = { 0 };
	expect(proc_ptrace_stop(pid, 0, 2000, &pt, &err) == 0, "stop: %s", err.msg);
	expect(proc_ptrace_syscall(pt, memfd, stub, SYS_getpid, none, &sret, &err) == 0,
	       "syscall: %s", err.msg);
	proc_ptrace_resume(pt, NULL);
	expect(sret == pid, "getpid injected: %lld, not %d", (long long)sret, (int)pid);
	uint64_t ret = 0;
	expect(call(pid, memfd, stub, (uint64_t)(uintptr_t)clobber, 5, 2000, &ret) == 0, "call");
	expect(ret == 6 && sh->calls == 1, "call returned %llu (calls %ld)", (unsigned long long)ret,
	       sh->calls);
	expect_runs_clean(pid, "after a call");

	/* A call slower than its time limit: reported, and left to finish
	 * (a library function cut short would keep the locks it holds); the
	 * thread then runs on as it was. */
	long before = sh->calls;
	/* 2 s against a 300 ms limit: after the limit the tracer still reads
	 * the libraries' symbols for its message (slow in a TCG guest). */
	expect(call(pid, memfd, stub, (uint64_t)(uintptr_t)clobber, 2000, 300, &ret) ==
		       OCOLOS_ETIMEDOUT, "a call slower than its limit is not reported");
	/* Saying where the thread was when the call went in. */
	expect(strstr(last_msg, "left to finish") && strstr(last_msg, "had been stopped at 0x"),
	       "the message of a call left to finish does not say where the thread was: %s",
	       last_msg);
	/* Reported as left running, and seen so by the library until it
	 * returns (the word in its frame and the thread's stack pointer). */
	struct proc_target lt;
	struct core_err terr = { 0 };
	expect(proc_target_open(&lt, pid, NULL, &terr) == 0, "target: %s", terr.msg);
	lt.call_left = last_left;
	expect(last_left.tid == pid && proc_target_call_still_running(&lt) == 1,
	       "a call left running is not seen as running (tid %d)", (int)last_left.tid);
	sleep_ms(2100); /* the rest of the call, then the stub's bounded wait */
	expect(sh->calls == before + 1, "a call past its time limit was cut short");
	expect(proc_target_call_still_running(&lt) == 0 && lt.call_left.tid == 0,
	       "a call left running is still seen as running after it returned");
	proc_target_close(&lt);
	expect_runs_clean(pid, "after a call past its time limit");

	/* The tracer dies during a call (and, later, during the wait for
	 * its acknowledgement): the call completes, the thread resumes. */
	for (int k = 0; k < 2; k++) {
		long calls = sh->calls;
		pid_t tracer = fork();
		if (tracer == 0) {
			uint64_t r;
			call(pid, memfd, stub, (uint64_t)(uintptr_t)clobber, 200, 5000, &r);
			_exit(0);
		}
		sleep_ms(k ? 210 : 50);
		kill(tracer, SIGKILL);
		waitpid(tracer, NULL, 0);
		sleep_ms(500); /* the call, then the stub's bounded wait */
		expect(sh->calls == calls + 1, "the abandoned call did not complete");
		expect_runs_clean(pid, k ? "tracer killed around the acknowledgement"
					 : "tracer killed during a call");
	}
	close(memfd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	/* A thread blocked in read(): the read is restarted and still gets
	 * its byte. */
	pid = start(reader);
	memfd = open_mem(pid, &stub);
	expect(call(pid, memfd, stub, (uint64_t)(uintptr_t)clobber, 0, 2000, &ret) == 0 && ret == 1,
	       "call into a blocked thread");
	expect(write(pipefd[1], "x", 1) == 1, "write");
	sleep_ms(100);
	expect(sh->reads == 1 && !sh->bad, "the interrupted read() was not restarted (reads %ld, "
	       "error %ld)", sh->reads, sh->bad);
	close(memfd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	/* New code written through /proc/PID/mem, then the i-cache routine
	 * run by the child (range, then list form), runs. */
	sh->reads = 0;
	pid = start(caller);
	memfd = open_mem(pid, &stub);
	sleep_ms(50);
	expect(sh->reads == 1, "caller: %ld", sh->reads);
	uint64_t at = (uint64_t)(uintptr_t)version;
	expect(proc_mem_write(memfd, at, version2, sizeof(version2)) == 0, "write the new code");
	uint64_t routine = proc_ptrace_icache_routine(stub);
#if defined(__aarch64__)
	expect(routine != 0, "no i-cache routine in the AArch64 stub");
#else
	expect(routine == 0, "an i-cache routine on x86-64");
#endif
	if (routine) {
		struct proc_ptrace *p2;
		uint64_t r2 = 1;
		const uint64_t range[6] = { at, at + sizeof(version2) };
		expect(proc_ptrace_stop(pid, 0, 2000, &p2, &err) == 0, "stop: %s", err.msg);
		expect(proc_ptrace_call(p2, memfd, stub, routine, range, 2000, &r2, &err) == 0 && !r2,
		       "i-cache routine (range): %s", err.msg);
		proc_ptrace_resume(p2, NULL);
		/* The list form reads the addresses from the child's memory:
		 * `sh` is shared with it. */
		volatile uint64_t *list = (volatile uint64_t *)((char *)sh + 2048);
		list[0] = at;
		list[1] = at + 4;
		const uint64_t lst[6] = { (uint64_t)(uintptr_t)list, (uint64_t)-2 };
		expect(proc_ptrace_stop(pid, 0, 2000, &p2, &err) == 0, "stop: %s", err.msg);
		expect(proc_ptrace_call(p2, memfd, stub, routine, lst, 2000, &r2, &err) == 0 && !r2,
		       "i-cache routine (list): %s", err.msg);
		proc_ptrace_resume(p2, NULL);
	}
	sleep_ms(100);
	long c = sh->counter;
	sleep_ms(50);
	expect(sh->reads == 2 && sh->counter > c, "the child does not run the new code (%ld)",
	       sh->reads);
	close(memfd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);

	/* peek_many: readable, unmapped (a hole between two pages), readable. */
	static uint8_t pattern[4096];
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 13 + 1);
	uint8_t *hole = mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	expect(hole != MAP_FAILED && munmap(hole + 4096, 4096) == 0, "hole");
	pid = start(reader);
	struct proc_target tg;
	struct core_log log = { 0 };
	expect(proc_target_open(&tg, pid, &log, &err) == 0, "target: %s", err.msg);
	expect(tg.ops->peek_many != NULL, "the ptrace target has no batched read");
	uint8_t got[3][64];
	memset(got, 0, sizeof(got));
	struct iovec remote[3] = { { pattern, 64 }, { hole + 4096 + 8, 64 }, { pattern + 1000, 64 } };
	struct iovec local[3] = { { got[0], 64 }, { got[1], 64 }, { got[2], 64 } };
	uint8_t ok[3] = { 9, 9, 9 };
	if (tg.ops->peek_many)
		tg.ops->peek_many(&tg, remote, local, 3, ok);
	expect(ok[0] == 1 && ok[1] == 0 && ok[2] == 1, "peek_many: ok %d %d %d, want 1 0 1", ok[0],
	       ok[1], ok[2]);
	expect(!memcmp(got[0], pattern, 64) && !memcmp(got[2], pattern + 1000, 64),
	       "peek_many read other bytes than the child holds");
	struct proc_stop *ps = NULL;
	uint32_t nth = 0;
	tg.stop_timeout_ms = 2000;
	expect(tg.ops->stop(&tg, &ps, &nth, &err) == 0 && nth == 1, "stop: %s", err.msg);
	int during = sched_getscheduler(0);
	tg.ops->resume(&tg, ps, NULL);
	int after = sched_getscheduler(0);
	expect(after == SCHED_OTHER, "the tracer's policy after a stop: %d", after);
	if (geteuid() == 0)
		expect((during & ~SCHED_RESET_ON_FORK) == SCHED_FIFO,
		       "the tracer was not real-time during the stop (policy %d)", during);
	/* A library call (call_lib) runs in a thread only where it holds none
	 * of the locks such a call may take (safe_point.c): not in one inside
	 * dl_iterate_phdr — nothing is run, and the call says so — but in
	 * one sleeping in plain code. */
	tg.call_timeout_ms = 2000;
	expect(tg.ops->call_lib(&tg, "libc.so", "getpid", 0, 0, &err) == 0,
	       "call_lib in a thread in plain code: %s", err.msg);
	proc_target_close(&tg);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	pid = start(inside_lock_holder);
	expect(proc_target_open(&tg, pid, &log, &err) == 0, "target: %s", err.msg);
	tg.stop_timeout_ms = tg.call_timeout_ms = 2000;
	memset(&err, 0, sizeof(err));
	int rc = tg.ops->call_lib(&tg, "libc.so", "getpid", 0, 0, &err);
	expect(rc == PROC_CALL_NOT_MADE && err.code == OCOLOS_ETIMEDOUT &&
		       strstr(err.msg, "not made"),
	       "call_lib in a thread inside dl_iterate_phdr: %d (%s)", rc, err.msg);
	long c1 = sh->counter;
	sleep_ms(50);
	expect(sh->counter > c1, "the child stopped running after the call was not made");
	proc_target_close(&tg);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	test_done();
}

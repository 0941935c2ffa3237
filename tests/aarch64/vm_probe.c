/*
 * What the AArch64 guest (scripts/a64vm.sh) has and qemu-user has not:
 * ptrace and perf_event_open. Run inside the guest:
 *
 *   scripts/a64vm.sh run build-a64/tests/aarch64/a64_vm_probe
 *
 * ptrace: a forked child spins in spin_child(); we PTRACE_SEIZE and
 * PTRACE_INTERRUPT it, read its registers with PTRACE_GETREGSET
 * (NT_PRSTATUS: the PC must be inside spin_child; NT_FPREGSET), read a
 * variable with PTRACE_PEEKDATA, write its stop flag through /proc/PID/mem,
 * and require it to exit with the code it then reads.
 * perf_event_open: software cpu-clock IP samples of this process while it
 * spins, read from the ring buffer; some must land in spin_self. Whether
 * a hardware cycles event opens too (a PMU) is reported, not required.
 * Exit 0 when both work, 1 otherwise.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__aarch64__)
#include <asm/ptrace.h>
#endif

static volatile int child_stop;	   /* written by the parent through /proc/PID/mem */
static volatile uint64_t child_count;

/* Each spin function alone in a section named like a C identifier, so the
 * linker defines __start_/__stop_ symbols: its exact bounds. */
extern const char __start_probe_spin_child[], __stop_probe_spin_child[];
extern const char __start_probe_spin_self[], __stop_probe_spin_self[];

__attribute__((noinline, section("probe_spin_child"))) static void spin_child(void)
{
	while (!child_stop)
		child_count++;
}

__attribute__((noinline, section("probe_spin_self"))) static uint64_t spin_self(uint64_t n)
{
	uint64_t x = 1;
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005ull + i;
	return x;
}

static int fail(const char *what)
{
	fprintf(stderr, "FAIL: %s: %s\n", what, strerror(errno));
	return 1;
}

static int probe_ptrace(void)
{
	pid_t pid = fork();
	int status;
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		spin_child();
		_exit(child_stop);
	}
	usleep(100 * 1000);
	if (ptrace(PTRACE_SEIZE, pid, 0, 0) != 0)
		return fail("PTRACE_SEIZE");
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0)
		return fail("PTRACE_INTERRUPT");
	if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status))
		return fail("waitpid (stop)");
#if defined(__aarch64__)
	struct user_pt_regs regs;
	struct user_fpsimd_state fp;
	struct iovec iov = { &regs, sizeof(regs) };
	if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov) != 0)
		return fail("PTRACE_GETREGSET NT_PRSTATUS");
	iov = (struct iovec){ &fp, sizeof(fp) };
	if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_FPREGSET, &iov) != 0)
		return fail("PTRACE_GETREGSET NT_FPREGSET");
	uint64_t lo = (uint64_t)(uintptr_t)__start_probe_spin_child;
	uint64_t hi = (uint64_t)(uintptr_t)__stop_probe_spin_child;
	printf("ptrace: child pc 0x%llx (spin_child 0x%llx-0x%llx), sp 0x%llx, fpsr 0x%x\n",
	       (unsigned long long)regs.pc, (unsigned long long)lo, (unsigned long long)hi,
	       (unsigned long long)regs.sp, fp.fpsr);
	if (regs.pc < lo || regs.pc >= hi) {
		fprintf(stderr, "FAIL: the child's pc is not in spin_child\n");
		return 1;
	}
#endif
	errno = 0;
	long count = ptrace(PTRACE_PEEKDATA, pid, (void *)&child_count, 0);
	if (errno)
		return fail("PTRACE_PEEKDATA");
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDWR), stop = 42;
	if (fd < 0 || pwrite(fd, &stop, sizeof(stop), (off_t)(uintptr_t)&child_stop) != sizeof(stop))
		return fail("write through /proc/PID/mem");
	close(fd);
	if (ptrace(PTRACE_DETACH, pid, 0, 0) != 0)
		return fail("PTRACE_DETACH");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 42) {
		fprintf(stderr, "FAIL: the child did not exit with the code written into it (0x%x)\n",
			status);
		return 1;
	}
	printf("ptrace: PEEKDATA read %ld iterations; the child exited with 42 written through "
	       "/proc/%d/mem\n", count, (int)pid);
	return 0;
}

static int perf_open(uint32_t type, uint64_t config, uint64_t period)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = type;
	a.config = config;
	a.sample_period = period;
	a.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	a.disabled = 1;
	return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

static int probe_perf(void)
{
	int hw = perf_open(PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, 100000);
	printf("perf: hardware cycles event: %s\n", hw >= 0 ? "opens" : strerror(errno));
	if (hw >= 0)
		close(hw);
	int fd = perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, 100000); /* 100 us */
	if (fd < 0)
		return fail("perf_event_open(cpu-clock)");
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = page * 9;
	void *ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ring == MAP_FAILED)
		return fail("mmap of the perf ring");
	ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t sink = 0;
	do {
		sink += spin_self(10000000); /* long: clock_gettime is a system call here */
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000ll + (t.tv_nsec - t0.tv_nsec) < 300000000ll);
	ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
	struct perf_event_mmap_page *meta = ring;
	uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE), tail = meta->data_tail;
	const unsigned char *data = (const unsigned char *)ring + page;
	size_t dsz = len - page, samples = 0, in_spin = 0;
	uint64_t lo = (uint64_t)(uintptr_t)__start_probe_spin_self;
	uint64_t hi = (uint64_t)(uintptr_t)__stop_probe_spin_self;
	while (tail < head) {
		struct perf_event_header h;
		uint64_t ip;
		for (size_t i = 0; i < sizeof(h); i++)
			((unsigned char *)&h)[i] = data[(tail + i) % dsz];
		if (h.size == 0)
			break;
		if (h.type == PERF_RECORD_SAMPLE) {
			for (size_t i = 0; i < sizeof(ip); i++)
				((unsigned char *)&ip)[i] = data[(tail + sizeof(h) + i) % dsz];
			samples++;
			in_spin += ip >= lo && ip < hi;
		}
		tail += h.size;
	}
	munmap(ring, len);
	close(fd);
	printf("perf: %zu cpu-clock samples in 300 ms, %zu in spin_self (sink %llu)\n", samples,
	       in_spin, (unsigned long long)(sink & 1));
	if (in_spin == 0) {
		fprintf(stderr, "FAIL: no perf sample landed in spin_self\n");
		return 1;
	}
	return 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int rc = probe_ptrace();
	rc |= probe_perf();
	fprintf(stderr, rc ? "FAIL\n" : "PASS: ptrace and perf_event_open work\n");
	return rc;
}

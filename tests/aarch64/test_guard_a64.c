/*
 * glibc's AArch64 pointer guard (proc/pointer_guard.c) and the memory scan
 * that demangles with it (inject/scan.c): a setjmp buffer holds the
 * address setjmp returns to xor'ed with the guard; found through the
 * guard, it keeps a range holding that address busy, and only through it.
 */
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "inject/inject.h"
#include "proc/proc.h"
#include "proc/target.h"

static jmp_buf jb; /* writable memory the scan reads */

/* What the test itself holds of the return address (not to be found):
 * skipped by the scan. */
static struct {
	uint64_t ranges[1][2], skip[1][2];
	struct inject_pin pin;
	uint64_t ret;
} box;

/* Returns after setjmp; jb keeps the (mangled) address after the call. */
__attribute__((noinline, noipa)) static int set_here(void)
{
	return setjmp(jb);
}

/* The stack below main's frame held set_here's return address into
 * setjmp's frame; zero it so that the only word leading into set_here is
 * the buffer's. */
__attribute__((noinline, noipa)) static void scrub_stack(void)
{
	volatile uint64_t buf[2048];
	for (size_t i = 0; i < sizeof(buf) / sizeof(buf[0]); i++)
		buf[i] = 0;
}

static int scan(struct proc_target *t, uint64_t guard)
{
	box.ranges[0][0] = box.ret;
	box.ranges[0][1] = box.ret + 4;
	box.skip[0][0] = (uint64_t)(uintptr_t)&box;
	box.skip[0][1] = (uint64_t)(uintptr_t)(&box + 1);
	struct proc_live_thread self =
		proc_self_thread((uint64_t)(uintptr_t)__builtin_frame_address(0));
	struct inject_scan_opts so = { .guard = guard, .threads = &self, .nthreads = 1,
				       .pins = &box.pin };
	so.skip = (const uint64_t (*)[2])box.skip;
	so.nskip = 1;
	uint8_t found = 0;
	uint64_t scanned = 0;
	struct core_err err = { 0 };
	check(inject_scan_memory(t, (const uint64_t (*)[2])box.ranges, 1, &so, &found, &scanned,
				 &err) == 0, "scan: %s", err.msg);
	check(scanned > 0, "nothing scanned");
	if (found)
		fprintf(stderr, "found: word %#llx at %#llx\n", (unsigned long long)box.pin.value,
			(unsigned long long)box.pin.where);
	return found;
}

int main(void)
{
	struct proc_target t;
	struct core_err err = { 0 };
	check(proc_target_open(&t, getpid(), NULL, &err) == 0, "target: %s", err.msg);
	uint64_t guard = 0;
	check(proc_a64_pointer_guard(&t, getpid(), &guard) == 0 && guard,
	      "glibc's pointer guard not found");
	check(set_here() == 0, "setjmp");
	/* glibc's layout: x19..x28, x29, then x30 mangled. */
	box.ret = ((const uint64_t *)(const void *)jb)[11] ^ guard;
	uint64_t fn = (uint64_t)(uintptr_t)set_here;
	check(box.ret > fn && box.ret < fn + 256, "demangled return address %#llx is not in "
	      "set_here (%#llx): the guard or the mangling is not glibc's",
	      (unsigned long long)box.ret, (unsigned long long)fn);
	scrub_stack();
	check(scan(&t, guard) == 1, "the scan did not find the setjmp buffer's return address "
	      "through the guard");
	check(scan(&t, 0) == 0, "without the guard the scan found the return address "
	      "elsewhere: the test proves nothing");
	proc_target_close(&t);
	fprintf(stderr, "PASS: guard found, setjmp buffer seen through it\n");
	return 0;
}

/*
 * inject/apply.c on AArch64 (in place, by mprotect): a call site in a
 * read-execute code page and a pointer slot in a read-only page are
 * redirected and reverted with inject_apply() on the in-process target
 * (proc/target_self.c: in place, by mprotect). Checked by design,
 * not by luck (qemu-user would not catch a missing i-cache flush): every
 * code write is followed by exactly one arch_code_changed() call, a
 * data write by none; the pages get their protection back and are never
 * writable and executable at once; and the redirected code really runs
 * the new target.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "a64.h"
#include "arch/cpu.h"
#include "inject/inject.h"
#include "proc/target.h"
#include "arch/arch.h"

__attribute__((noipa)) static int one(void) { return 1; }
__attribute__((noipa)) static int two(void) { return 2; }

/* Protection of the mapping holding `a`, as "r-x" etc. */
static void perms_of(uint64_t a, char out[4])
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	strcpy(out, "???");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;
		char p[8];
		if (sscanf(line, "%llx-%llx %7s", &lo, &hi, p) == 3 && a >= lo && a < hi) {
			memcpy(out, p, 3);
			out[3] = 0;
		}
	}
	if (f)
		fclose(f);
}

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *code = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *slot = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	expect(code != MAP_FAILED && slot != MAP_FAILED, "mmap");
	uint64_t site = (uint64_t)(uintptr_t)code + 4;
	uint32_t bl_one, bl_two;
	/* one() and two() are in this binary, within 128 MiB of an anonymous
	 * page only by chance: use a veneer-free layout by going through B to
	 * an in-page stub when out of reach. Here: skip if out of reach. */
	if (arch_a64_encode_branch(site, 0x94000000, (uint64_t)(uintptr_t)one, &bl_one) ||
	    arch_a64_encode_branch(site, 0x94000000, (uint64_t)(uintptr_t)two, &bl_two)) {
		void *near = mmap((void *)(((uintptr_t)one + (1u << 20)) & ~(uintptr_t)(pg - 1)), (size_t)pg,
				  PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		expect(near != MAP_FAILED, "mmap near");
		munmap(code, (size_t)pg);
		code = near;
		site = (uint64_t)(uintptr_t)code + 4;
		expect(!arch_a64_encode_branch(site, 0x94000000, (uint64_t)(uintptr_t)one, &bl_one) &&
		       !arch_a64_encode_branch(site, 0x94000000, (uint64_t)(uintptr_t)two, &bl_two),
		       "no page within BL reach of the test's code");
	}
	uint32_t body[4] = { 0xa9bf7bfd, bl_one, 0xa8c17bfd, 0xd65f03c0 };
	memcpy(code, body, sizeof(body));
	arch_code_changed((uint64_t)(uintptr_t)code, (uint64_t)(uintptr_t)code + sizeof(body));
	expect(mprotect(code, (size_t)pg, PROT_READ | PROT_EXEC) == 0, "mprotect code");
	slot[0] = (uint64_t)(uintptr_t)one;
	expect(mprotect(slot, (size_t)pg, PROT_READ) == 0, "mprotect slot");

	struct inject_plan plan = { 0 };
	struct inject_patch ps[2] = {
		{ .addr = site, .len = 4, .kind = INJECT_CALL_SITE },
		{ .addr = (uint64_t)(uintptr_t)slot, .len = 8, .kind = INJECT_PTR_SLOT },
	};
	memcpy(ps[0].old, &bl_one, 4);
	memcpy(ps[0].new_, &bl_two, 4);
	uint64_t p1 = (uint64_t)(uintptr_t)one, p2 = (uint64_t)(uintptr_t)two;
	memcpy(ps[1].old, &p1, 8);
	memcpy(ps[1].new_, &p2, 8);
	plan.v = ps;
	plan.n = 2;

	struct core_err err = { 0 };
	struct proc_target t;
	struct proc_span *spans = NULL;
	size_t nspans = 0;
	expect(proc_target_open(&t, getpid(), NULL, &err) == 0, "target: %s", err.msg);
	expect(inject_plan_spans(&plan, &spans, &nspans, &err) == 0 &&
	       t.ops->poke_prepare(&t, spans, nspans, &err) == 0, "collect: %s", err.msg);
	/* What the pages look like before (qemu-user shows read-only pages as
	 * r-x: its own view; what matters is that they get it back). */
	char pc0[4], pd0[4];
	perms_of(site, pc0);
	perms_of((uint64_t)(uintptr_t)slot, pd0);
	expect(!strcmp(pc0, "r-x") && pd0[1] == '-', "before: code %s slot %s", pc0, pd0);
	int (*fn)(void) = (int (*)(void))(uintptr_t)code;
#if defined(__aarch64__)
	expect(fn() == 1, "before: %d", fn());
#endif
	for (int round = 0; round < 2; round++) {
		int forward = round == 0;
		struct inject_apply_result res;
		uint64_t before = arch_code_changed_count();
		expect(inject_apply(&t, &plan, forward, &res, &err) == 0, "apply: %s", err.msg);
		uint64_t flushes = arch_code_changed_count() - before;
		expect(res.call_sites == 1 && res.ptr_slots == 1 && res.mismatched == 0,
		       "result %u %u %u", res.call_sites, res.ptr_slots, res.mismatched);
		expect(flushes == 1, "%llu i-cache flushes for one code write (want exactly 1)",
		       (unsigned long long)flushes);
		char pc[4], pd[4];
		perms_of(site, pc);
		perms_of((uint64_t)(uintptr_t)slot, pd);
		expect(!strcmp(pc, pc0) && !strcmp(pd, pd0), "protections after: code %s slot %s (before: %s %s)",
		       pc, pd, pc0, pd0);
		expect(slot[0] == (forward ? p2 : p1), "slot");
#if defined(__aarch64__)
		expect(fn() == (forward ? 2 : 1), "%s: the code returned %d", forward ? "redirected" : "reverted",
		       fn());
#endif
		/* A second application writes nothing: forward, it finds memory
		 * already changed (mismatched); back, nothing is applied to undo. */
		expect(inject_apply(&t, &plan, forward, &res, &err) == 0 &&
		       res.call_sites + res.ptr_slots == 0 && res.mismatched == (forward ? 2u : 0u),
		       "re-apply must write nothing (mismatched %u)", res.mismatched);
	}
	t.ops->poke_done(&t);
	free(spans);
	proc_target_close(&t);
	fprintf(stderr, "PASS\n");
	return 0;
}

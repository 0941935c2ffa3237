/*
 * reloc/aarch64.c: BL/B imm26 encode/decode and reach, and veneers — the
 * encodings checked against known words, then executed: a generated
 * function calls through a BL into a veneer that lands on a C function.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/cpu.h"
#include "check.h"
#include "inject/inject.h"
#include "arch/arch.h"
#include "arch/cpu.h"

__attribute__((noipa)) static int forty_two(void) { return 42; }

static void encodings(void)
{
	uint32_t w;
	/* bl .+8 is 0x94000002, b .-4 is 0x17ffffff */
	check(arch_a64_branch_kind(0x94000002) == 0x94 && arch_a64_branch_kind(0x17ffffff) == 0x14,
	       "kind");
	check(arch_a64_branch_kind(0xd65f03c0) == 0, "ret is no BL/B");
	/* Calls through a register (the word after one is a return site):
	 * blr x1, blr x30, blraaz x3, blrabz x3, blraa x3, x4, blrab x3, x4;
	 * not: br x16, ret, braaz x3, bl. */
	check(arch_a64_call_reg(0xd63f0020) && arch_a64_call_reg(0xd63f03c0) &&
	       arch_a64_call_reg(0xd63f087f) && arch_a64_call_reg(0xd63f0c7f) &&
	       arch_a64_call_reg(0xd73f0864) && arch_a64_call_reg(0xd73f0c64), "blr and blra*");
	check(!arch_a64_call_reg(0xd61f0200) && !arch_a64_call_reg(0xd65f03c0) &&
	       !arch_a64_call_reg(0xd61f087f) && !arch_a64_call_reg(0x94000002), "not calls");
	check(arch_a64_branch_target(0x1000, 0x94000002) == 0x1008, "bl .+8");
	check(arch_a64_branch_target(0x1000, 0x17ffffff) == 0x0ffc, "b .-4");
	check(arch_a64_encode_branch(0x1000, 0x94000000, 0x1008, &w) == 0 && w == 0x94000002, "enc bl");
	check(arch_a64_encode_branch(0x1000, 0x14000000, 0x0ffc, &w) == 0 && w == 0x17ffffff, "enc b");
	/* the limits: -128 MiB reaches, +128 MiB does not */
	uint64_t site = 0x10000000;
	check(arch_a64_encode_branch(site, 0x94000000, site - (128u << 20), &w) == 0 &&
	       arch_a64_branch_target(site, w) == site - (128u << 20), "-128 MiB");
	check(arch_a64_encode_branch(site, 0x94000000, site + (128u << 20) - 4, &w) == 0 &&
	       arch_a64_branch_target(site, w) == site + (128u << 20) - 4, "+128 MiB - 4");
	check(arch_a64_encode_branch(site, 0x94000000, site + (128u << 20), &w) == -1, "+128 MiB");
	check(arch_a64_encode_branch(site, 0x94000000, site + 2, &w) == -1, "misaligned");
	check(arch_a64_in_reach(0x1000, 0x2000, 0x3000, 0x4000), "near");
	check(!arch_a64_in_reach(0x1000, 0x2000, 0x1000 + (128u << 20), 0x2000 + (128u << 20)), "far");
	/* adrp x16, .+0x1000 ; add x16, x16, #0x234 ; br x16 */
	uint8_t v[ARCH_A64_VENEER_LEN];
	check(arch_a64_encode_veneer(0x400000, 0x401234, v) == 0, "veneer");
	uint32_t words[4];
	memcpy(words, v, sizeof(words));
	check(words[0] == 0xb0000010 && words[1] == 0x9108d210 && words[2] == 0xd61f0200,
	       "veneer words %08x %08x %08x", words[0], words[1], words[2]);
	check(arch_a64_encode_veneer(0x400000, 0x400000 + (5ull << 30), v) == -1, "adrp reach");
}

/* Generate `caller` (stp; bl veneer; ldp; ret) and a veneer to forty_two
 * in fresh pages, written RW then flipped RX, and run it. */
static void run_veneer(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *code = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(code != MAP_FAILED, "mmap");
	uint64_t caller = (uint64_t)(uintptr_t)code, veneer = caller + (uint64_t)pg;
	uint32_t bl;
	check(arch_a64_encode_branch(caller + 4, 0x94000000, veneer, &bl) == 0, "bl to veneer");
	uint32_t body[4] = { 0xa9bf7bfd /* stp x29, x30, [sp, #-16]! */, bl,
			     0xa8c17bfd /* ldp x29, x30, [sp], #16 */, 0xd65f03c0 /* ret */ };
	memcpy(code, body, sizeof(body));
	uint64_t target = (uint64_t)(uintptr_t)forty_two;
	int far = arch_a64_encode_veneer(veneer, target, code + pg);
	if (far) { /* the mapping landed out of ADRP reach: not this test's point */
		fprintf(stderr, "SKIP run_veneer: mapping 0x%llx is > 4 GiB from the code\n",
			(unsigned long long)veneer);
		return;
	}
	arch_code_changed(caller, caller + 2 * (uint64_t)pg);
	check(mprotect(code, 2 * (size_t)pg, PROT_READ | PROT_EXEC) == 0, "mprotect");
#if defined(__aarch64__)
	int (*fn)(void) = (int (*)(void))(uintptr_t)caller;
	int got = fn();
	check(got == 42, "call through the veneer returned %d", got);
#endif
	munmap(code, 2 * (size_t)pg);
}

int main(void)
{
	encodings();
	run_veneer();
	fprintf(stderr, "PASS\n");
	return 0;
}

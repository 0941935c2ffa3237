/* x86-64 rel32 encoding, decoding and reach checks, at the edges. */
#include <stdint.h>
#include <string.h>

#include "arch/arch.h"
#include "check.h"

static void roundtrip(uint64_t site, uint64_t target, int ok)
{
	uint8_t insn[5] = { 0xe8 };
	int rc = arch_x86_encode_rel32(site, target, insn + 1);
	expect((rc == 0) == ok, "site 0x%llx target 0x%llx: rc %d, want %s",
	       (unsigned long long)site, (unsigned long long)target, rc, ok ? "ok" : "out of range");
	if (ok)
		expect(arch_x86_branch_target(site, insn) == target, "decode(encode) != target for 0x%llx",
		       (unsigned long long)target);
}

int main(void)
{
	uint64_t s = 0x400000000ull;
	roundtrip(s, s + 5, 1);			 /* rel32 = 0 */
	roundtrip(s, s, 1);			 /* backwards, -5 */
	roundtrip(s, s + 5 + INT32_MAX, 1);	 /* farthest forward */
	roundtrip(s, s + 5 + INT32_MAX + 1ull, 0);
	roundtrip(s, s + 5 - 0x80000000ull, 1);	 /* farthest backward */
	roundtrip(s, s + 5 - 0x80000001ull, 0);
	uint8_t known[5] = { 0xe8, 0xfb, 0xff, 0xff, 0xff }; /* call self */
	expect(arch_x86_branch_target(0x1000, known) == 0x1000, "call -5 must target itself");
	expect(arch_x86_in_reach(0x1000, 0x2000, 0x3000, 0x4000), "nearby ranges are in reach");
	expect(!arch_x86_in_reach(0x1000, 0x2000, 0x80000000ull, 0x80001000ull),
	       "ranges 2 GiB apart are out of reach");
	expect(arch_x86_in_reach(0, 0x1000, 0x7ffff000ull, 0x7fffffffull), "exactly INT32_MAX apart");
	test_done();
}

/*
 * Functions with known control flow for the CFG tests (test_cfg_x86.c,
 * test_cfg_aarch64.c). The asm functions have an exact expected CFG,
 * written next to them; the C functions only promise a shape (a loop, a
 * compare chain) whatever the compiler does. Built for x86-64 and, with a
 * cross compiler, for AArch64; only read as a file, never run by the tests.
 */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) long cs_leaf(long x) { return x * 7 + 3; }

__attribute__((noinline)) long cs_loop_c(const long *a, long n)
{
	long s = 0;
	for (long i = 0; i < n; i++)
		s += a[i] & 1 ? a[i] : -a[i];
	return s;
}

__attribute__((noinline)) int cs_switchy(int k)
{
	switch (k) {
	case 1: return 10;
	case 4: return 40;
	case 9: return 90;
	case 12: return cs_leaf(k) > 3 ? 120 : 5;
	default: return -1;
	}
}

#if defined(__x86_64__)
/* cs_asm: B0 [test je] -> B2 taken, B1 fall-through; B1 [call add jmp] -> B3
 * jump; B2 [xor] -> B3 fall-through; B3 [ret]. One call (in B1).
 * cs_asm_loop: B0 [xor] -> B1 ft; B1 [add dec jnz] -> B1 taken, B2 ft;
 * B2 [test js] -> B4 taken, B3 ft; B3 [jmp cs_leaf]: tail jump, no edge;
 * B4 [ud2]: no edge. */
__asm__(".text\n"
	".globl cs_asm\n.type cs_asm,@function\ncs_asm:\n"
	"  test %rdi,%rdi\n  je 1f\n  call cs_leaf\n  add $1,%rax\n  jmp 2f\n"
	"1: xor %eax,%eax\n2: ret\n.size cs_asm, .-cs_asm\n"
	".globl cs_asm_loop\n.type cs_asm_loop,@function\ncs_asm_loop:\n"
	"  xor %eax,%eax\n1: add %rdi,%rax\n  dec %rdi\n  jnz 1b\n"
	"  test %rax,%rax\n  js 3f\n  jmp cs_leaf\n3: ud2\n.size cs_asm_loop, .-cs_asm_loop\n");
#elif defined(__aarch64__)
/* Same shapes as the x86-64 ones, plus cs_asm_ind (one block: br, no edge)
 * and cs_asm_cond (b.ne/tbz/cbnz chain). */
__asm__(".text\n"
	".globl cs_asm\n.type cs_asm,%function\ncs_asm:\n"
	"  cbz x0, 1f\n  bl cs_leaf\n  add x0, x0, #1\n  b 2f\n"
	"1: mov x0, #0\n2: ret\n.size cs_asm, .-cs_asm\n"
	".globl cs_asm_loop\n.type cs_asm_loop,%function\ncs_asm_loop:\n"
	"  mov x1, #0\n1: add x1, x1, x0\n  subs x0, x0, #1\n  b.ne 1b\n"
	"  tbnz x1, #63, 3f\n  b cs_leaf\n3: brk #0x3e8\n.size cs_asm_loop, .-cs_asm_loop\n"
	".globl cs_asm_ind\n.type cs_asm_ind,%function\ncs_asm_ind:\n"
	"  blr x1\n  br x0\n.size cs_asm_ind, .-cs_asm_ind\n");
#endif

long cs_asm(long x);
long cs_asm_loop(long x);

int main(int argc, char **argv)
{
	long a[4] = { argc, 2, 3, 4 };
	printf("%ld %d %p %p\n", cs_loop_c(a, argc), cs_switchy(argc),
	       (void *)cs_asm, (void *)cs_asm_loop);
	return argv[1] ? atoi(argv[1]) : 0;
}

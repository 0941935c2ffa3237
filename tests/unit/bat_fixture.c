/*
 * Fixture for the BAT tests (test_bat.c): functions with enough blocks that
 * a profile leaving some of them unsampled makes BOLT split them (cold
 * fragments, whose tables carry a skew), calls and branches for branch
 * rows, and one function with a secondary entry point (bx_multi_second,
 * a global label inside bx_multi: BOLT lists it in bx_multi's table).
 * bx_gen_0 .. bx_gen_31 are the same shape with other constants, for
 * volume (some 2,000 instructions in all). Built for x86-64 and, with a
 * cross compiler, for AArch64; only read as a file by the tests, though it
 * runs.
 */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) long bx_leaf(long x) { return x * 5 + (x >> 3); }

__attribute__((noinline)) long bx_loop(const long *a, long n)
{
	long s = 0;
	for (long i = 0; i < n; i++) {
		if (a[i] < 0) {
			fprintf(stderr, "negative %ld at %ld\n", a[i], i);
			s -= bx_leaf(a[i]);
			continue;
		}
		if (a[i] & 1)
			s += bx_leaf(a[i]);
		else
			s ^= a[i] << 2;
	}
	return s;
}

__attribute__((noinline)) int bx_parse(const char *p)
{
	int v = 0, sign = 1;
	while (*p == ' ')
		p++;
	if (*p == '-') {
		sign = -1;
		p++;
	}
	while (*p >= '0' && *p <= '9') {
		if (v > 100000000) {
			fprintf(stderr, "overflow in '%s'\n", p);
			abort();
		}
		v = v * 10 + (*p++ - '0');
	}
	if (*p && *p != '\n') {
		fprintf(stderr, "junk '%s'\n", p);
		return -1;
	}
	return sign * v;
}

__attribute__((noinline)) long bx_dispatch(int op, long x)
{
	if (op == 0)
		return bx_leaf(x);
	else if (op == 1)
		return x + 1;
	else if (op == 2)
		return bx_loop(&x, 1);
	else if (op == 3)
		return bx_parse("42");
	fprintf(stderr, "bad op %d\n", op);
	exit(2);
}

/* A loop with a compare chain, a call and a rarely taken error path. */
#define BX_GEN(n)                                                              \
	__attribute__((noinline)) long bx_gen_##n(const long *a, long len)    \
	{                                                                      \
		long s = n;                                                    \
		for (long i = 0; i < len; i++) {                               \
			if (a[i] % (n + 3) == 0)                               \
				s += bx_leaf(a[i] + n);                        \
			else if (a[i] > n * 7)                                 \
				s -= a[i] >> 1;                                \
			else if (a[i] < -n)                                    \
				s ^= bx_parse("7") + i;                        \
			else                                                   \
				s += i * n;                                    \
		}                                                              \
		if (s == 12345 + n)                                            \
			fprintf(stderr, "bx_gen_%d: %ld\n", n, s);            \
		return s;                                                      \
	}
#define BX_GEN4(n) BX_GEN(n##0) BX_GEN(n##1) BX_GEN(n##2) BX_GEN(n##3)
BX_GEN4(1) BX_GEN4(2) BX_GEN4(3) BX_GEN4(4) BX_GEN4(5) BX_GEN4(6) BX_GEN4(7) BX_GEN4(8)
typedef long (*bx_gen_fn)(const long *, long);
#define BX_REF4(n) bx_gen_##n##0, bx_gen_##n##1, bx_gen_##n##2, bx_gen_##n##3,
static bx_gen_fn const bx_gens[] = { BX_REF4(1) BX_REF4(2) BX_REF4(3) BX_REF4(4) BX_REF4(5)
				      BX_REF4(6) BX_REF4(7) BX_REF4(8) };

/* bx_multi: x + 3 (entered at the top) or x + 2 (at bx_multi_second),
 * negated when negative. */
#if defined(__x86_64__)
__asm__(".text\n.globl bx_multi\n.type bx_multi,@function\nbx_multi:\n"
	"  mov %rdi,%rax\n  add $1,%rax\n  jmp 2f\n"
	".globl bx_multi_second\n.type bx_multi_second,@function\nbx_multi_second:\n"
	"  mov %rdi,%rax\n"
	"2: add $2,%rax\n  test %rax,%rax\n  js 1f\n  ret\n1: neg %rax\n  ret\n"
	".size bx_multi, .-bx_multi\n");
#elif defined(__aarch64__)
__asm__(".text\n.globl bx_multi\n.type bx_multi,%function\nbx_multi:\n"
	"  add x0, x0, #1\n"
	".globl bx_multi_second\n.type bx_multi_second,%function\nbx_multi_second:\n"
	"  add x0, x0, #2\n  tbnz x0, #63, 1f\n  ret\n1: neg x0, x0\n  ret\n"
	".size bx_multi, .-bx_multi\n");
#endif
long bx_multi(long), bx_multi_second(long);

int main(int argc, char **argv)
{
	long a[64];
	for (int i = 0; i < 64; i++)
		a[i] = argc > 1 ? bx_parse(argv[1]) + i : i;
	long s = bx_loop(a, 64);
	for (int i = 0; i < 1000; i++)
		s += bx_dispatch(i & 3, i) + bx_multi(i) + bx_multi_second(i);
	for (size_t k = 0; k < sizeof(bx_gens) / sizeof(*bx_gens); k++)
		s += bx_gens[k](a, 64);
	printf("%ld\n", s);
	return 0;
}

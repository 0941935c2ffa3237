/*
 * Fixture binary for the unit tests: never optimized at run time, only read
 * as a file (ELF model, profile writer, BOLT oracle). It has what the model
 * must find: direct calls and a tail jump to functions, a const function
 * table (read-only slots), a writable function pointer (a slot we leave
 * alone), and address-taking references.
 */
#include <stdio.h>
#include <stdlib.h>

typedef long (*op_fn)(long);

__attribute__((noinline)) long fx_leaf(long x) { return x * 3 + (x >> 2); }
/* static, called from the same section: no relocation for its call sites */
__attribute__((noinline)) static long fx_local(long x) { return x ^ 0x55; }
__attribute__((noinline)) long fx_uses_local(long x) { return fx_local(x) + fx_local(x >> 1); }
__attribute__((noinline)) long fx_mid(long x) { return fx_leaf(x) ^ fx_leaf(x + 1); }
long fx_far(long x); /* in fixture_far.c: reached by a tail jump (e9) */
__attribute__((noinline)) long fx_tail(long x) { if (x & 1) return fx_leaf(x) + 1; return fx_far(x - 1); }
__attribute__((noinline)) long fx_cold(long x) { printf("cold %ld\n", x); return x; }

const op_fn fx_table[] = { fx_leaf, fx_mid, fx_tail };
op_fn fx_hook = fx_mid;

/* The pointer rule's cases (elf_func.addr_taken): a static function whose
 * address code takes in its own section, which the assembler resolves
 * without a relocation (only the decoder sweep sees it); a function
 * exported in .dynsym (-Wl,--export-dynamic-symbol); both also in a table. */
__attribute__((noinline)) static long fx_static_taken(long x) { return x - 7; }
__attribute__((noinline)) long fx_exported(long x) { return x + 11; }
const op_fn fx_table2[] = { fx_static_taken, fx_exported };
op_fn volatile fx_sink;
__attribute__((noinline)) void fx_take(void) { fx_sink = fx_static_taken; }

__attribute__((noinline)) long fx_hot(long n)
{
	long s = 0;
	for (long i = 0; i < n; i++)
		s += fx_table[i % 3](i) + fx_hook(i) + fx_local(i);
	return s;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	long s = fx_hot(n);
	if (s == 42)
		fx_cold(s + fx_uses_local(n));
	fx_take();
	printf("%ld %p %p %ld\n", s, (void *)fx_cold, (void *)fx_leaf, /* &fx_leaf: address-taking */
	       fx_table2[n & 1](n));
	return 0;
}

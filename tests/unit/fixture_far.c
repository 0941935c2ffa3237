/* Second translation unit of the fixture: cross-unit calls keep relocations. */
long fx_leaf(long x);
__attribute__((noinline)) long fx_far(long x) { return fx_leaf(x) - 1; }

/*
 * Entries for the entry-patch rules (elf_func.entry_ok), in assembly so the
 * layout is exact: a loop back to +1, a call in the first bytes, an
 * indirect jump, and one that may be patched.
 */
__asm__(".text\n"
	".globl fx_entry_loop\n.type fx_entry_loop,@function\n"
	"fx_entry_loop:\n push %rbx\n1: dec %rdi\n jnz 1b\n pop %rbx\n ret\n"
	".size fx_entry_loop, .-fx_entry_loop\n"
	".globl fx_entry_call\n.type fx_entry_call,@function\n"
	"fx_entry_call:\n call *%rsi\n add $1, %rax\n add $2, %rax\n ret\n"
	".size fx_entry_call, .-fx_entry_call\n"
	".globl fx_entry_ind\n.type fx_entry_ind,@function\n"
	"fx_entry_ind:\n mov %rdi, %rax\n add $1, %rax\n jmp *%rsi\n"
	".size fx_entry_ind, .-fx_entry_ind\n"
	".globl fx_entry_ok\n.type fx_entry_ok,@function\n"
	"fx_entry_ok:\n mov %rdi, %rax\n add $1, %rax\n add $2, %rax\n ret\n"
	".size fx_entry_ok, .-fx_entry_ok\n");

/*
 * glibc's pointer guard on AArch64. glibc stores some code addresses
 * mangled (PTR_MANGLE): the PC and SP of a setjmp buffer, atexit and
 * on_exit handlers, and more. On AArch64 the mangling is a plain xor with
 * `__pointer_chk_guard`, a word the dynamic linker exports (GLIBC_PRIVATE)
 * and sets once at start-up from AT_RANDOM; on x86-64 it is a rotation and
 * an xor with a word of the thread control block, read at the stop
 * (inject/switch.c). Retirement demangles the words it scans with it
 * (inject/scan.c), so a setjmp buffer that leads into an old version keeps
 * that version mapped.
 */
#include <string.h>

#include "core/util.h"
#include "proc/proc.h"
#include "proc/target.h"

struct guard_find {
	uint64_t addr;
};

static int dynamic_linker(const char *base, void *user)
{
	(void)user;
	return !strncmp(base, "ld-linux", 8) || !strncmp(base, "ld-", 3);
}

static int guard_symbol(void *user, const char *name, uint64_t start, uint64_t size, int type)
{
	struct guard_find *g = user;
	(void)type;
	if (strcmp(name, "__pointer_chk_guard") || size != 8)
		return 0;
	g->addr = start;
	return 1;
}

int proc_a64_pointer_guard(struct proc_target *t, pid_t pid, uint64_t *guard)
{
	struct guard_find g = { 0 };
	*guard = 0;
	if (proc_lib_symbols(pid, dynamic_linker, guard_symbol, &g) != 1 || !g.addr)
		return -1;
	return t->ops->peek(t, g.addr, guard, sizeof(*guard)) ? -1 : 0;
}

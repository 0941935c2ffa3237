/*
 * Stacks of a stopped target, walked with libunwind-ptrace: how many threads
 * and frames are inside the C0 code of moved functions at the switch. C0
 * stays intact, so nothing has to be refused because of them: they finish
 * in C0 and their next calls go to C1. The count says how much of the
 * process was mid-way through hot code when it was redirected.
 *
 * libunwind is loaded with dlopen on first use, not linked: linking it
 * would put its own _Unwind_* (from libunwind.so.8) into every program that
 * uses libocolos, beside libgcc's, which C++ exceptions rely on. Loaded
 * late, it comes after libgcc_s in the global lookup order.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "proc/ptrace.h"

#if defined(__x86_64__) || defined(__aarch64__)
/* The few libunwind entry points used, by their real (prefixed) names:
 * libunwind-<arch>.so.8 prefixes them _U<arch>_. */
#if defined(__x86_64__)
#define UNW_LIB "libunwind-x86_64.so.8"
#define UNW_SYM(name) "_Ux86_64_" name
#define UNW_REG_IP 16 /* UNW_X86_64_RIP */
#else
#define UNW_LIB "libunwind-aarch64.so.8"
#define UNW_SYM(name) "_Uaarch64_" name
#define UNW_REG_IP 30 /* UNW_TDEP_IP = UNW_AARCH64_X30: the frame's PC */
#endif
struct unw {
	void *(*create_addr_space)(void *accessors, int byte_order);
	void (*destroy_addr_space)(void *as);
	int (*init_remote)(void *cursor, void *as, void *arg);
	int (*step)(void *cursor);
	int (*get_reg)(void *cursor, int reg, uint64_t *val);
	void *(*upt_create)(pid_t tid);
	void (*upt_destroy)(void *arg);
	void *accessors;
};

#define UNW_CURSOR_BYTES 8192 /* >= sizeof(unw_cursor_t) (127 words on x86-64,
				  512 on AArch64) */
#define MAX_FRAMES 256

static int load(struct unw *u)
{
	void *x = dlopen(UNW_LIB, RTLD_NOW | RTLD_GLOBAL);
	void *p = x ? dlopen("libunwind-ptrace.so.0", RTLD_NOW | RTLD_LOCAL) : NULL;
	if (!p)
		return -1;
	u->create_addr_space = (void *(*)(void *, int))dlsym(x, UNW_SYM("create_addr_space"));
	u->destroy_addr_space = (void (*)(void *))dlsym(x, UNW_SYM("destroy_addr_space"));
	u->init_remote = (int (*)(void *, void *, void *))dlsym(x, UNW_SYM("init_remote"));
	u->step = (int (*)(void *))dlsym(x, UNW_SYM("step"));
	u->get_reg = (int (*)(void *, int, uint64_t *))dlsym(x, UNW_SYM("get_reg"));
	u->upt_create = (void *(*)(pid_t))dlsym(p, "_UPT_create");
	u->upt_destroy = (void (*)(void *))dlsym(p, "_UPT_destroy");
	u->accessors = dlsym(p, "_UPT_accessors");
	return u->create_addr_space && u->destroy_addr_space && u->init_remote && u->step &&
	       u->get_reg && u->upt_create && u->upt_destroy && u->accessors ? 0 : -1;
}

static int in_ranges(uint64_t ip, const uint64_t (*r)[2], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ip >= r[i][0] && ip < r[i][1])
			return 1;
	return 0;
}

static struct unw u;
static int loaded; /* 0 not tried, 1 ok, -1 unavailable */

int proc_stacks_load(void)
{
	if (!loaded)
		loaded = load(&u) ? -1 : 1;
	return loaded > 0 ? 0 : -1;
}

int proc_stacks_count(const struct proc_ptrace *pt, const uint64_t (*ranges)[2],
			size_t nranges, uint32_t *threads_in, uint32_t *frames_in)
{
	*threads_in = *frames_in = 0;
	if (proc_stacks_load())
		return -1;
	void *as = u.create_addr_space(u.accessors, 0);
	if (!as)
		return -1;
	for (size_t i = 0; i < pt->n; i++) {
		const struct proc_ptrace_thread *t = &pt->t[i];
		if (!t->stopped || t->gone)
			continue;
		void *arg = u.upt_create(t->tid);
		_Alignas(16) uint8_t cursor[UNW_CURSOR_BYTES];
		uint32_t hits = 0;
		if (arg && u.init_remote(cursor, as, arg) == 0) {
			for (int f = 0; f < MAX_FRAMES; f++) {
				uint64_t ip;
				if (u.get_reg(cursor, UNW_REG_IP, &ip) == 0 && in_ranges(ip, ranges, nranges))
					hits++;
				if (u.step(cursor) <= 0)
					break;
			}
		}
		if (arg)
			u.upt_destroy(arg);
		*frames_in += hits;
		*threads_in += hits > 0;
	}
	u.destroy_addr_space(as);
	return 0;
}
#else
int proc_stacks_load(void)
{
	return -1;
}

int proc_stacks_count(const struct proc_ptrace *pt, const uint64_t (*ranges)[2],
			size_t nranges, uint32_t *threads_in, uint32_t *frames_in)
{
	*threads_in = *frames_in = 0;
	return -1;
}
#endif

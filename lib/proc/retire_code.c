/*
 * What retirement needs to know of a target's code besides the versions
 * (inject/switch.c): where its unwinder runs, so that a throw site counts
 * only in the stack of a thread inside it, and where its signal handlers
 * return to, so that a signal frame on a stack is recognized and the PC a
 * handler returns to counts. Read before a stop (reading /proc allocates).
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "core/procmaps.h"
#include "core/util.h"
#include "proc/proc.h"

struct code_ranges {
	uint64_t (*v)[2];
	size_t n, cap;
};

/* ---- the unwinder's code (for retirement: inject/switch.c) ---- */

/* Functions that run a throw or a forced unwind besides those the caller
 * names (the functions a version's throw sites call): the personality
 * routine and glibc's cancellation unwinding. */
static const char *const unwinder_helpers[] = {
	"__gxx_personality_v0", "__cxa_call_unexpected", "__cxa_call_terminate",
	"__pthread_unwind", "__pthread_unwind_next",
};

/* Libraries whose whole code counts: the unwinders (libgcc_s, LLVM's
 * libunwind), and the dynamic linker, whose lazy binding runs between a
 * first call to __cxa_throw@plt and __cxa_throw. */
static int unwinder_library(const char *base)
{
	return !strncmp(base, "libgcc_s.so", 11) || !strncmp(base, "libunwind.so", 12) ||
	       !strncmp(base, "ld-linux", 8) || !strncmp(base, "ld.so", 5) ||
	       !strncmp(base, "ld64.so", 7);
}

/* Libraries whose throwing functions count (by name). */
static int throwing_library(const char *base, void *user)
{
	(void)user;
	return !strncmp(base, "libstdc++.so", 12) || !strncmp(base, "libc++abi.so", 12) ||
	       !strncmp(base, "libc++.so", 9) || !strncmp(base, "libc.so", 7) ||
	       !strncmp(base, "libc-", 5) || !strncmp(base, "libpthread", 10);
}

struct unwinder_q {
	struct code_ranges h;
	int (*is_entry)(const char *name);
};

static int add_unwinder_entry(void *user, const char *name, uint64_t start, uint64_t size,
			      int type)
{
	struct unwinder_q *q = user;
	size_t i = 0, n = sizeof(unwinder_helpers) / sizeof(unwinder_helpers[0]);
	while (i < n && strcmp(name, unwinder_helpers[i]))
		i++;
	if (type != STT_FUNC || !size || (i == n && !q->is_entry(name)))
		return 0;
	if (core_grow((void **)&q->h.v, &q->h.cap, q->h.n, sizeof(*q->h.v)))
		return OCOLOS_ENOMEM;
	/* One byte past the end: a return address after a last call. */
	q->h.v[q->h.n][0] = start;
	q->h.v[q->h.n][1] = start + size + 1;
	q->h.n++;
	return 0;
}

int proc_unwinder_ranges(pid_t pid, int (*is_entry)(const char *name), uint64_t (**out)[2],
			 size_t *nout)
{
	struct unwinder_q q = { { 0 }, is_entry };
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	*out = NULL;
	*nout = 0;
	if (core_procmaps_read(pid, &m, &ignore))
		return 0;
	int rc = 0, unwinder = 0;
	for (size_t i = 0; i < m.n && !rc; i++) {
		const struct procmaps_entry *e = &m.v[i];
		const char *base = strrchr(e->path, '/');
		if (!base || e->perms[2] != 'x' || !unwinder_library(base + 1))
			continue;
		unwinder |= strncmp(base + 1, "ld", 2) != 0;
		if (core_grow((void **)&q.h.v, &q.h.cap, q.h.n, sizeof(*q.h.v)))
			rc = OCOLOS_ENOMEM;
		else {
			q.h.v[q.h.n][0] = e->start;
			q.h.v[q.h.n][1] = e->end;
			q.h.n++;
		}
	}
	core_procmaps_free(&m);
	/* No unwinder library: none the process can use is known (one
	 * linked into the program, say), so nothing is returned and every
	 * thread counts as unwinding. */
	if (!rc && unwinder)
		rc = proc_lib_symbols(pid, throwing_library, add_unwinder_entry, &q);
	if (rc == OCOLOS_ENOMEM || !unwinder) {
		free(q.h.v);
		return rc == OCOLOS_ENOMEM ? rc : 0;
	}
	*out = q.h.v;
	*nout = q.h.n;
	return 0;
}

/* ---- signal frames (for retirement: inject/switch.c) ---- */

int proc_sigreturn_trampolines(pid_t pid, int memfd, uint64_t **out, size_t *nout)
{
	*out = NULL;
	*nout = 0;
#if defined(__x86_64__)
	/* glibc's __restore_rt: mov $__NR_rt_sigreturn, %rax; syscall. It is
	 * not exported; its bytes are unique in libc's code. */
	static const uint8_t pat[] = { 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05 };
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	if (core_procmaps_read(pid, &m, &ignore))
		return 0;
	size_t cap = 0, chunk = 1u << 20;
	uint8_t *buf = malloc(chunk + sizeof(pat));
	int rc = buf ? 0 : OCOLOS_ENOMEM;
	for (size_t i = 0; i < m.n && !rc; i++) {
		const struct procmaps_entry *e = &m.v[i];
		const char *base = strrchr(e->path, '/');
		if (!base || e->perms[2] != 'x' ||
		    (strncmp(base + 1, "libc.so", 7) && strncmp(base + 1, "libc-", 5)))
			continue;
		for (uint64_t at = e->start; at < e->end && !rc; at += chunk) {
			size_t len = e->end - at < chunk + sizeof(pat) ? (size_t)(e->end - at)
								 : chunk + sizeof(pat);
			if (proc_mem_read(memfd, at, buf, len))
				break;
			for (size_t k = 0; k + sizeof(pat) <= len && k < chunk; k++) {
				if (buf[k] != pat[0] || memcmp(buf + k, pat, sizeof(pat)))
					continue;
				if (core_grow((void **)out, &cap, *nout, sizeof(**out)))
					rc = OCOLOS_ENOMEM;
				else
					(*out)[(*nout)++] = at + k;
			}
		}
	}
	free(buf);
	core_procmaps_free(&m);
	if (rc) {
		free(*out);
		*out = NULL;
		*nout = 0;
	}
	return rc;
#else
	(void)pid, (void)memfd;
	return 0;
#endif
}

/*
 * String helpers of the preload library (preload.c, handover.c): the stack
 * and system calls only, no malloc and no stdio, so that they are safe in a
 * vfork child, in a signal handler and at a process's exit.
 */
#ifndef OCOLOS_BAM_PSTR_H
#define OCOLOS_BAM_PSTR_H

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* Append `s` to dst[*n] (capacity cap); returns -1 once it does not fit. */
static inline int cat(char *dst, size_t cap, size_t *n, const char *s)
{
	size_t l = strlen(s);
	if (*n + l + 1 > cap)
		return -1;
	memcpy(dst + *n, s, l + 1);
	*n += l;
	return 0;
}

static inline int cat_u64(char *dst, size_t cap, size_t *n, uint64_t v, int base)
{
	char tmp[24];
	int i = (int)sizeof(tmp) - 1;
	tmp[i] = 0;
	do {
		tmp[--i] = "0123456789abcdef"[v % (unsigned)base];
		v /= (unsigned)base;
	} while (v);
	return cat(dst, cap, n, tmp + i);
}

static inline void say(const char *a, const char *b, const char *c)
{
	char m[2 * PATH_MAX];
	size_t n = 0;
	cat(m, sizeof(m), &n, "ocolos-bam: ");
	cat(m, sizeof(m), &n, a);
	cat(m, sizeof(m), &n, b ? b : "");
	cat(m, sizeof(m), &n, c ? c : "");
	cat(m, sizeof(m), &n, "\n");
	ssize_t w = write(2, m, n);
	(void)w;
}

#endif

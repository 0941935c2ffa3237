/* Minimal assertion helpers for the unit tests (stdout stays quiet). */
#ifndef OCOLOS_UNIT_H
#define OCOLOS_UNIT_H

#include <stdio.h>
#include <stdlib.h>

static int unit_failures;

#define expect(cond, ...)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			unit_failures++;                                       \
		}                                                              \
	} while (0)

#define unit_done()                                                            \
	do {                                                                   \
		fprintf(stderr, "%s: %d failure(s)\n", __FILE__, unit_failures); \
		return unit_failures ? 1 : 0;                                  \
	} while (0)

#endif

/* Shared bits of the AArch64 tests: the check macro and code-page helpers. */
#ifndef OCOLOS_TESTS_A64_H
#define OCOLOS_TESTS_A64_H

#include <stdio.h>
#include <stdlib.h>

#define expect(cond, ...)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			exit(1);                                               \
		}                                                              \
	} while (0)

#endif

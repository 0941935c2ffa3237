/* Valgrind client requests (see valgrind.h). The header ships with
 * Debian's valgrind package (scripts/install-deps.sh installs it); built
 * without it, both calls are inert and a round under Valgrind would run
 * stale translations of C0, so CMake warns at configure time. */
#include "core/valgrind.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define OCOLOS_HAVE_VALGRIND 1
#endif
#endif

#ifdef OCOLOS_HAVE_VALGRIND
int core_on_valgrind(void)
{
	return RUNNING_ON_VALGRIND != 0;
}

void core_code_changed(uint64_t addr, uint64_t len)
{
	if (RUNNING_ON_VALGRIND)
		VALGRIND_DISCARD_TRANSLATIONS((void *)(uintptr_t)addr, len);
}
#else
int core_on_valgrind(void)
{
	return 0;
}

void core_code_changed(uint64_t addr, uint64_t len)
{
	(void)addr;
	(void)len;
}
#endif

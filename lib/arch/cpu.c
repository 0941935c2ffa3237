/* CPU helpers for code writes (see cpu.h). Valgrind's header ships with
 * Debian's valgrind package (scripts/install-deps.sh installs it); built
 * without it, the Valgrind calls are inert and a round under Valgrind
 * would run stale translations of C0, so CMake warns at configure time. */
#include <linux/membarrier.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "arch/cpu.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define OCOLOS_HAVE_VALGRIND 1
#endif
#endif

uint64_t arch_page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (uint64_t)p : 4096;
}

static _Atomic uint64_t code_changes;

void arch_code_changed(uint64_t lo, uint64_t hi)
{
	/* GCC expands this to the architecture's sequence (AArch64: libgcc's
	 * __aarch64_sync_cache_range, honouring CTR_EL0's line sizes); on
	 * x86-64, whose i-cache is coherent, to nothing. */
	__builtin___clear_cache((char *)(uintptr_t)lo, (char *)(uintptr_t)hi);
#ifdef OCOLOS_HAVE_VALGRIND
	if (RUNNING_ON_VALGRIND)
		VALGRIND_DISCARD_TRANSLATIONS((void *)(uintptr_t)lo, hi - lo);
#endif
	atomic_fetch_add_explicit(&code_changes, 1, memory_order_relaxed);
}

uint64_t arch_code_changed_count(void)
{
	return atomic_load_explicit(&code_changes, memory_order_relaxed);
}

void arch_sync_core_register(void)
{
	syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
}

void arch_sync_core(void)
{
	syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
}

int arch_on_valgrind(void)
{
#ifdef OCOLOS_HAVE_VALGRIND
	return RUNNING_ON_VALGRIND != 0;
#else
	return 0;
#endif
}

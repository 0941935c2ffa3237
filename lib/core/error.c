/*
 * Error codes and messages: the text behind ocolos_strerror() and the
 * first-error-wins recorder every internal function reports through.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"

OCOLOS_API const char *ocolos_strerror(int err)
{
	switch (err) {
	case OCOLOS_OK: return "OCOLOS_OK: success";
	case OCOLOS_EINVAL: return "OCOLOS_EINVAL: invalid argument";
	case OCOLOS_ENOMEM: return "OCOLOS_ENOMEM: out of memory";
	case OCOLOS_EIO: return "OCOLOS_EIO: I/O error";
	case OCOLOS_EELF: return "OCOLOS_EELF: binary is not a supported ELF file";
	case OCOLOS_ENORELOCS: return "OCOLOS_ENORELOCS: binary has no relocations (link with -Wl,--emit-relocs)";
	case OCOLOS_ENOSYMS: return "OCOLOS_ENOSYMS: binary is stripped (no symbol table)";
	case OCOLOS_ENOTSUP: return "OCOLOS_ENOTSUP: not supported";
	case OCOLOS_EPERF: return "OCOLOS_EPERF: sampling with perf_event_open failed";
	case OCOLOS_ENOPROFILE: return "OCOLOS_ENOPROFILE: no samples in the binary's code";
	case OCOLOS_ENOBOLT: return "OCOLOS_ENOBOLT: llvm-bolt not found";
	case OCOLOS_EBOLT: return "OCOLOS_EBOLT: llvm-bolt failed";
	case OCOLOS_ETIMEDOUT: return "OCOLOS_ETIMEDOUT: time limit exceeded";
	case OCOLOS_ERESERVE: return "OCOLOS_ERESERVE: no free address range near the code";
	case OCOLOS_EBUSY: return "OCOLOS_EBUSY: another round is running";
	case OCOLOS_ESTOP: return "OCOLOS_ESTOP: could not stop every thread";
	case OCOLOS_EPATCH: return "OCOLOS_EPATCH: code to patch is not what the binary says";
	case OCOLOS_ENOTHOT: return "OCOLOS_ENOTHOT: BOLT moved no function";
	case OCOLOS_EATTACH: return "OCOLOS_EATTACH: cannot ptrace the target";
	case OCOLOS_ENOPROC: return "OCOLOS_ENOPROC: the target process is gone";
	case OCOLOS_ESTALE: return "OCOLOS_ESTALE: the binary on disk is not the one running";
	case OCOLOS_ECANCELED: return "OCOLOS_ECANCELED: canceled (ocolos_cancel)";
	case OCOLOS_ESTATE: return "OCOLOS_ESTATE: the target's state record cannot be used";
	case OCOLOS_ENOGAIN: return "OCOLOS_ENOGAIN: the optimized code was not faster; the original runs";
	case OCOLOS_EBADPROFILE: return "OCOLOS_EBADPROFILE: an imported profile cannot be used";
	case OCOLOS_EBADARTIFACT: return "OCOLOS_EBADARTIFACT: the artifact cannot be used";
	case OCOLOS_ETAKEN: return "OCOLOS_ETAKEN: the artifact's address range is taken; run a local round";
	case OCOLOS_EUNTRUSTED: return "OCOLOS_EUNTRUSTED: the artifact file is writable or owned by others";
	default: return "OCOLOS_E?: unknown error code";
	}
}

int core_errf(struct core_err *err, int code, const char *fmt, ...)
{
	if (!err || err->code)
		return code;
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void core_err_clear(struct core_err *err)
{
	err->code = 0;
	err->msg[0] = '\0';
}

/*
 * Symbol versions of the shared library (lib/libocolos.map). A public
 * function whose signature or structs changed keeps its old version for
 * programs built against the old header (api/compat01.c) and gets a new
 * default one:
 *
 *   OCOLOS_DEFINE_0_2(ocolos_round) int OCOLOS_IMPL_0_2(ocolos_round)(...)
 *
 * defines it as ocolos_round@@OCOLOS_0.2 in the shared library, and as
 * plain ocolos_round in the static archive (built without
 * OCOLOS_SHARED_BUILD), which has no symbol versions.
 */
#ifndef OCOLOS_API_EXPORT_H
#define OCOLOS_API_EXPORT_H

#include <ocolos/ocolos.h>

#ifdef OCOLOS_SHARED_BUILD
#define OCOLOS_IMPL_0_2(name) name##_v0_2
/* In the file that defines it (a version needs a definition). */
#define OCOLOS_DEFINE_0_2(name)                                                \
	__typeof__(name) name##_v0_2                                           \
		__attribute__((visibility("default"), symver(#name "@@OCOLOS_0.2")));
/* Elsewhere (api/compat01.c calls the 0.2 implementations). */
#define OCOLOS_DECLARE_0_2(name) __typeof__(name) name##_v0_2;
#define OCOLOS_COMPAT_0_1(name, impl)                                          \
	__attribute__((visibility("default"), symver(#name "@OCOLOS_0.1")))
#else
#define OCOLOS_IMPL_0_2(name) name
#define OCOLOS_DEFINE_0_2(name)
#endif

#endif

#!/bin/sh
# The 0.1 program (abi_old.c): first its own dynamic references, then a run.
#
# A program built against libocolos 0.1 was linked against 0.1's
# libocolos.so.0, where every call had the version OCOLOS_0.1; its
# references carry that version, and today's library must serve them with
# the 0.1 calls (lib/api/compat01.c), not with the 0.2 ones of the same
# names. So before running it, check that abi_old is such a program:
#   - it needs libocolos.so.0;
#   - every call of the 0.1 header (ocolos-0.1.h, OCOLOS_API lines) is
#     referenced (abi_old.c calls them all), each @OCOLOS_0.1;
#   - no ocolos_* reference has another version.
#
# Usage: run_old.sh READELF HEADER01 PROGRAM ARGS...
# Environment: OCOLOS_TEST_PRELOAD, preloaded into PROGRAM only (the ASan
# runtime of a sanitizer build).
# Exit: the program's (77: skipped, no perf_event access).
set -u
LC_ALL=C
export LC_ALL
readelf=$1 header=$2 prog=$3
shift 3
fail() { echo "FAIL: $*" >&2; exit 1; }

"$readelf" -d "$prog" | grep -q 'NEEDED.*\[libocolos\.so\.0\]' ||
	fail "$prog does not need libocolos.so.0"
refs=$("$readelf" --dyn-syms -W "$prog" | awk '$7 == "UND" && $8 ~ /^ocolos_/ { print $8 }' | sort)
calls=$(sed -n 's/^OCOLOS_API[^(]*[ *]\(ocolos_[a-z_0-9]*\)(.*/\1/p' "$header" | sort)
[ -n "$calls" ] || fail "no OCOLOS_API calls found in $header"
want=$(for c in $calls; do echo "$c@OCOLOS_0.1"; done)
if [ "$refs" != "$want" ]; then
	echo "$prog references:" >&2
	echo "$refs" >&2
	echo "want (every call of $header, @OCOLOS_0.1):" >&2
	echo "$want" >&2
	fail "the 0.1 program's references are not the 0.1 calls at OCOLOS_0.1"
fi
echo "$(echo "$refs" | wc -l) references, all @OCOLOS_0.1" >&2

if [ -n "${OCOLOS_TEST_PRELOAD:-}" ]; then
	LD_PRELOAD=$OCOLOS_TEST_PRELOAD exec "$prog" "$@"
fi
exec "$prog" "$@"

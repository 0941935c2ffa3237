#!/bin/sh
# Out-of-tree consumers of an installed libocolos (ctest -L consumer).
#
#   run.sh install BUILD PREFIX      cmake --install BUILD into a fresh PREFIX
#   run.sh cmake PREFIX WORK         this directory's CMake project against
#                                    PREFIX: find_package(ocolos),
#                                    ocolos::ocolos and ocolos::ocolos_static
#   run.sh pkgconfig PREFIX WORK     app.c with `pkg-config --cflags --libs
#                                    libocolos`, and with --static against
#                                    libocolos.a
#
# Each program must run and say its libocolos code came from PREFIX's
# libocolos.so.0 (shared) or from the program itself (static, which must
# not need libocolos.so at all).
# Environment: CC, CMAKE (the build's compiler and cmake); OCOLOS_CONSUMER_LDFLAGS, added
# to every link (a sanitizer build's library needs its runtime).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mode=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
ldflags=${OCOLOS_CONSUMER_LDFLAGS:-}

# run_app PROGRAM EXPECTED-SOURCE: run it; its library code must come from
# EXPECTED-SOURCE (a path, compared after resolving links).
run_app() {
	out=$("$1") || fail "$1 exited with $?"
	echo "$1: $out" >&2
	from=$(echo "$out" | sed -n 's/^libocolos .* from //p')
	[ "$(readlink -f "$from")" = "$(readlink -f "$2")" ] ||
		fail "$1 runs libocolos from '$from', not from '$2'"
}

# static_app PROGRAM: needs no libocolos.so, runs its own copy.
static_app() {
	if readelf -d "$1" | grep -q 'NEEDED.*libocolos'; then
		fail "$1, linked statically, needs libocolos.so"
	fi
	run_app "$1" "$1"
}

case $mode in
install)
	build=$2 prefix=$3
	rm -rf "$prefix"
	"${CMAKE:-cmake}" --install "$build" --prefix "$prefix" >/dev/null
	;;
cmake)
	prefix=$2 work=$3
	rm -rf "$work"
	"${CMAKE:-cmake}" -S "$here" -B "$work" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="${CC:-cc}" \
		-DCMAKE_EXE_LINKER_FLAGS="$ldflags" >"$work.log" 2>&1 ||
		{ cat "$work.log" >&2; fail "configuring the CMake consumer failed"; }
	"${CMAKE:-cmake}" --build "$work" >>"$work.log" 2>&1 ||
		{ cat "$work.log" >&2; fail "building the CMake consumer failed"; }
	lib=$(find "$prefix" -name libocolos.so.0 | head -n 1)
	run_app "$work/app_shared" "$lib"
	static_app "$work/app_static"
	;;
pkgconfig)
	prefix=$2 work=$3
	rm -rf "$work"
	mkdir -p "$work"
	pc=$(find "$prefix" -name libocolos.pc | head -n 1)
	[ -n "$pc" ] || fail "no libocolos.pc under $prefix"
	libdir=$(dirname "$(dirname "$pc")")
	export PKG_CONFIG_PATH="$(dirname "$pc")"
	cflags=$(pkg-config --cflags libocolos) || fail "pkg-config --cflags libocolos"
	libs=$(pkg-config --libs libocolos) || fail "pkg-config --libs libocolos"
	echo "pkg-config: $cflags $libs" >&2
	# shellcheck disable=SC2086 # word splitting of the flags is the point
	${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$work/app_pc" "$here/app.c" $cflags $libs \
		$ldflags -ldl || fail "building with pkg-config's flags"
	LD_LIBRARY_PATH=$libdir run_app "$work/app_pc" "$libdir/libocolos.so.0"
	# Static: the archive by name (-l:libocolos.a; -locolos would take the
	# .so beside it), then what --static lists for it.
	slibs=$(pkg-config --static --libs libocolos) || fail "pkg-config --static --libs libocolos"
	slibs=$(echo "$slibs" | sed 's/-locolos\b/-l:libocolos.a/')
	echo "pkg-config --static: $slibs" >&2
	# shellcheck disable=SC2086
	${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$work/app_pc_static" "$here/app.c" $cflags \
		$slibs $ldflags -ldl || fail "building with pkg-config --static's flags"
	static_app "$work/app_pc_static"
	;;
*)
	fail "unknown mode '$mode'"
	;;
esac

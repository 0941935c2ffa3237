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
#   run.sh deb BUILD WORK            the Debian packages of BUILD (cpack -G
#                                    DEB), unpacked with dpkg -x into
#                                    WORK/root: their control fields, the
#                                    files each holds, the tools run, and
#                                    the cmake and pkgconfig modes above
#                                    against WORK/root/usr
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
	readelf -S "$work/app_shared" | grep -q '\.rela\.text' ||
		fail "ocolos_prepare_executable() did not keep app_shared's relocations (--emit-relocs)"
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
	# The link options of an optimizable program, from the .pc file.
	prep=$(pkg-config --variable=optimizable_ldflags libocolos)
	# shellcheck disable=SC2086 # word splitting of the flags is the point
	${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$work/app_pc" "$here/app.c" $cflags $libs \
		$prep $ldflags -ldl || fail "building with pkg-config's flags"
	readelf -S "$work/app_pc" | grep -q '\.rela\.text' ||
		fail "optimizable_ldflags ('$prep') did not keep app_pc's relocations"
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
deb)
	build=$2 work=$3
	rm -rf "$work"
	mkdir -p "$work/root"
	cpack=$(dirname "${CMAKE:-cmake}")/cpack
	[ -x "$cpack" ] || cpack=cpack
	"$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$work/pkgs" >"$work/cpack.log" 2>&1 ||
		{ cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
	# pkg NAME: the .deb of package NAME.
	pkg() {
		d=$(ls "$work/pkgs/${1}_"*.deb 2>/dev/null | head -n 1)
		[ -n "$d" ] || fail "cpack made no $1 package"
		echo "$d"
	}
	deb_libocolos0=$(pkg libocolos0)
	deb_libocolos_dev=$(pkg libocolos-dev)
	deb_ocolos_tools=$(pkg ocolos-tools)
	for deb in "$deb_libocolos0" "$deb_libocolos_dev" "$deb_ocolos_tools"; do
		echo "$(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)" >&2
		dpkg-deb -x "$deb" "$work/root"
	done
	# The runtime package carries the shared library only, and pulls in no
	# development package; -dev and the tools depend on exactly this
	# version of it.
	dpkg-deb -c "$deb_libocolos0" | grep -Ev '/$' | grep -Ev 'libocolos\.so\.0' &&
		fail "libocolos0 holds more than libocolos.so.0*"
	dpkg-deb -f "$deb_libocolos0" Depends | grep -q -- '-dev' &&
		fail "libocolos0 depends on a development package"
	for deb in "$deb_libocolos_dev" "$deb_ocolos_tools"; do
		dpkg-deb -f "$deb" Depends | grep -q 'libocolos0 (= ' ||
			fail "$(basename "$deb") does not depend on its libocolos0"
	done
	# A shared-library consumer needs nothing but these packages: the
	# CMake config finds no other package, names no imported target of
	# libocolos' dependencies and no path of this machine.
	cfg=$(find "$work/root" -path '*/cmake/ocolos')
	[ -n "$cfg" ] || fail "libocolos-dev has no CMake config"
	grep -nE 'find_dependency\((zydis|Zydis|PkgConfig)|pkg_check_modules|Zydis::|PkgConfig::|/usr/lib/[^ ]*\.so' \
		"$cfg"/*.cmake && fail "the installed CMake config needs other packages' files"
	# The installed tools start and find the installed library.
	for t in ocolos-agent ocolos-supervise; do
		v=$(LD_LIBRARY_PATH=$(dirname "$(find "$work/root" -name libocolos.so.0)") \
			"$work/root/usr/bin/$t" --version) || fail "$t --version from the package failed"
		echo "$t: $v" >&2
	done
	[ -f "$work/root/usr/share/man/man1/ocolos-agent.1" ] || fail "ocolos-tools has no man page"
	sh "$0" cmake "$work/root/usr" "$work/consumer-cmake"
	sh "$0" pkgconfig "$work/root/usr" "$work/consumer-pkgconfig"
	# pkg-config hands a program's link options over.
	PKG_CONFIG_PATH=$(dirname "$(find "$work/root" -name libocolos.pc)") \
		pkg-config --variable=optimizable_ldflags libocolos | grep -q -- '--emit-relocs' ||
		fail "pkg-config's optimizable_ldflags lacks --emit-relocs"
	;;
*)
	fail "unknown mode '$mode'"
	;;
esac

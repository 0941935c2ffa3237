#!/usr/bin/env bash
# Fetch SQLite from Debian's sources and build speedtest1 for the benchmark.
#
# usage: bench/build_sqlite.sh [BUILD_DIR]
#   BUILD_DIR   libocolos build directory (default: build); if it holds
#               libocolos.so, bench/autoself.c is built into
#               $SQ_OUT/autoself.so (LD_PRELOAD shim, see that file).
# environment:
#   SQ_OUT      output directory (default: bench/out/sqlite)
#   SQ_PIE      nopie | pie | both (default both)
#   CC          compiler (default gcc)
#
# Produces $SQ_OUT/speedtest1-nopie and $SQ_OUT/speedtest1-pie, built with
# -O2 -fno-jump-tables -Wl,--emit-relocs from the amalgamation generated
# from the Debian source package (`apt-get source sqlite3`). Needs root only
# when a deb-src entry, tclsh or dpkg-dev is missing (it adds/installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
out=${SQ_OUT:-$root/bench/out/sqlite}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
pie=${SQ_PIE:-both}
cc=${CC:-gcc}
cflags=(-O2 -fno-jump-tables -g0 -DSQLITE_OMIT_LOAD_EXTENSION
	-DSQLITE_THREADSAFE=1)
ldflags=(-Wl,--emit-relocs -lpthread -lm)

log() { echo "build_sqlite: $*" >&2; }

# as_root, have_deb_src, ensure_sources (shared with build_gzip.sh)
# shellcheck source=bench/debsrc.sh
. "$here/debsrc.sh"

ensure_tools() {
	local pkgs=()
	command -v tclsh >/dev/null || pkgs+=(tcl)
	command -v dpkg-source >/dev/null || pkgs+=(dpkg-dev)
	if ((${#pkgs[@]})); then
		log "installing ${pkgs[*]}"
		as_root apt-get install -y -q "${pkgs[@]}"
	fi
}

mkdir -p "$out/src"
src=$(find "$out/src" -maxdepth 1 -type d -name 'sqlite3-*' | sort | tail -1)
if [[ -z $src ]]; then
	ensure_sources
	ensure_tools
	(cd "$out/src" && apt-get source -q sqlite3 2>&1 | tail -2) >&2
	src=$(find "$out/src" -maxdepth 1 -type d -name 'sqlite3-*' | sort | tail -1)
	[[ -n $src ]] || {
		log "apt-get source sqlite3 produced no source tree"
		exit 1
	}
else
	ensure_tools
fi
log "source: $src"

amal="$src/bld/sqlite3.c"
if [[ ! -f $amal ]]; then
	log "generating the amalgamation (configure; make sqlite3.c)"
	mkdir -p "$src/bld"
	(cd "$src/bld" && ../configure --disable-tcl >configure.log 2>&1 &&
		make -j"$(nproc)" sqlite3.c >make.log 2>&1) || {
		log "amalgamation failed; see $src/bld/configure.log and make.log"
		exit 1
	}
fi
cp "$src/test/speedtest1.c" "$out/speedtest1.c"
cp "$src/bld/sqlite3.c" "$src/bld/sqlite3.h" "$out/"
echo "${src##*/}" >"$out/VERSION"

build_one() {
	local mode=$1 mflags linkmode
	if [[ $mode == pie ]]; then
		mflags=-fPIE
		linkmode=-pie
	else
		mflags=-fno-pie
		linkmode=-no-pie
	fi
	local obj="$out/obj-$mode"
	mkdir -p "$obj"
	if [[ ! -f $obj/sqlite3.o || $out/sqlite3.c -nt $obj/sqlite3.o ]]; then
		"$cc" "${cflags[@]}" $mflags -I"$out" -c "$out/sqlite3.c" -o "$obj/sqlite3.o" &
	fi
	"$cc" "${cflags[@]}" $mflags -I"$out" -c "$out/speedtest1.c" -o "$obj/speedtest1.o"
	wait
	"$cc" $linkmode -o "$out/speedtest1-$mode" "$obj/speedtest1.o" \
		"$obj/sqlite3.o" "${ldflags[@]}"
	log "$out/speedtest1-$mode (.text $(size -A "$out/speedtest1-$mode" |
		awk '$1==".text"{print $2}') bytes)"
}

case $pie in
both) modes=(nopie pie) ;;
nopie | pie) modes=("$pie") ;;
*)
	log "SQ_PIE must be nopie, pie or both"
	exit 2
	;;
esac
for m in "${modes[@]}"; do
	build_one "$m"
done

if [[ -f $build/libocolos.so ]]; then
	"$cc" -O2 -fPIC -shared -o "$out/autoself.so" "$here/autoself.c" \
		-I"$root/include" -L"$build" -locolos -Wl,-rpath,"$build" -pthread
	log "$out/autoself.so (LD_PRELOAD=$out/autoself.so OCOLOS_AFTER=SEC)"
else
	log "no $build/libocolos.so: autoself.so not built"
fi

#!/usr/bin/env bash
# Generate and build the front-end-bound benchmark (bench/gen_frontend.py).
#
# usage: bench/build_frontend.sh [BUILD_DIR] [gen_frontend.py options...]
#   BUILD_DIR   libocolos build directory (default: build); if it holds
#               libocolos.so (or libocolos.a) the *-ocolos variants are
#               built too, linked against it, with -DWITH_OCOLOS.
# environment:
#   FE_OUT      output directory (default: bench/out/fe, or bench/out/fe-small
#               when --functions is below 20000 is not wanted: set it)
#   FE_PIE      nopie | pie | both (default both)
#   CC          compiler (default gcc)
#   FE_JOBS     parallel compiles (default: nproc)
#   OCOLOS_LIBS extra libraries when linking the static libocolos.a
#               (default: -lelf -lz -lpthread -ldl)
#
# Produces $FE_OUT/fe-nopie, $FE_OUT/fe-pie and, with the library,
# $FE_OUT/fe-nopie-ocolos, $FE_OUT/fe-pie-ocolos. Example (smoke preset):
#   FE_OUT=bench/out/fe-small bench/build_frontend.sh build --functions 2000
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=build
if [[ $# -gt 0 && $1 != --* ]]; then
	build=$1
	shift
fi
case $build in /*) ;; *) build="$root/$build" ;; esac
out=${FE_OUT:-$root/bench/out/fe}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
pie=${FE_PIE:-both}
cc=${CC:-gcc}
jobs=${FE_JOBS:-$(nproc 2>/dev/null || echo 2)}

# Flags the workload is meant for (see docs/benchmarks.md).
cflags=(-O1 -fno-jump-tables -g0 -w)
ldflags=(-Wl,--emit-relocs -pthread)

mkdir -p "$out/src"
python3 "$here/gen_frontend.py" --out "$out/src" "$@"

have_lib=
if [[ -f $build/libocolos.so ]]; then
	have_lib=so
elif [[ -f $build/libocolos.a ]]; then
	have_lib=a
else
	echo "build_frontend: no libocolos in $build; building without it" >&2
fi

# compile MODE: compile every generated TU for MODE (nopie|pie) in parallel,
# skipping objects newer than their source and flags file.
compile() {
	local mode=$1 obj="$out/obj-$1" modeflags
	if [[ $mode == pie ]]; then modeflags="-fPIE"; else modeflags="-fno-pie"; fi
	mkdir -p "$obj"
	local flagsig="$cc ${cflags[*]} $modeflags"
	if [[ ! -f $obj/flags ]] || [[ $(cat "$obj/flags") != "$flagsig" ]]; then
		rm -f "$obj"/*.o
		echo "$flagsig" >"$obj/flags"
	fi
	grep -v '^fe_main.c$' "$out/src/sources.txt" |
		while read -r src; do
			o="$obj/${src%.c}.o"
			if [[ ! -f $o || $out/src/$src -nt $o ]]; then
				echo "$src"
			fi
		done |
		xargs -r -P "$jobs" -I{} sh -c \
			'src=$1; shift; obj=$1; shift; srcdir=$1; shift;
			 exec "$@" -c "$srcdir/$src" -o "$obj/${src%.c}.o"' \
			sh {} "$obj" "$out/src" "$cc" "${cflags[@]}" $modeflags
}

# link MODE WITH_OCOLOS: link fe-MODE[-ocolos].
link() {
	local mode=$1 with=$2 obj="$out/obj-$1" name="fe-$1" modeflags linkmode
	local extra=() libs=()
	if [[ $mode == pie ]]; then
		modeflags="-fPIE"
		linkmode="-pie"
	else
		modeflags="-fno-pie"
		linkmode="-no-pie"
	fi
	if [[ $with == 1 ]]; then
		name="$name-ocolos"
		extra=(-DWITH_OCOLOS -I"$root/include")
		if [[ $have_lib == so ]]; then
			libs=(-L"$build" -locolos -Wl,-rpath,"$build")
		else
			# shellcheck disable=SC2206
			libs=("$build/libocolos.a" ${OCOLOS_LIBS:--lelf -lz -lpthread -ldl})
		fi
	fi
	"$cc" "${cflags[@]}" $modeflags "${extra[@]}" -c "$out/src/fe_main.c" \
		-o "$obj/fe_main$with.o"
	local objs=()
	while read -r src; do
		[[ $src == fe_main.c ]] && continue
		objs+=("$obj/${src%.c}.o")
	done <"$out/src/sources.txt"
	"$cc" $linkmode -o "$out/$name.tmp" "$obj/fe_main$with.o" "${objs[@]}" \
		"${ldflags[@]}" "${libs[@]}"
	mv "$out/$name.tmp" "$out/$name"
	printf 'build_frontend: %s (.text %s bytes)\n' "$out/$name" \
		"$(size -A "$out/$name" | awk '$1==".text"{print $2}')" >&2
}

modes=()
case $pie in
both) modes=(nopie pie) ;;
nopie | pie) modes=("$pie") ;;
*)
	echo "build_frontend: FE_PIE must be nopie, pie or both" >&2
	exit 2
	;;
esac

start=$(date +%s)
for m in "${modes[@]}"; do
	compile "$m"
	link "$m" 0
	if [[ -n $have_lib ]]; then
		link "$m" 1
	fi
done
echo "build_frontend: done in $(($(date +%s) - start)) s" >&2

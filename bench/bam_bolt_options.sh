#!/usr/bin/env bash
# Does another set of BOLT options lay cc1 out better than ocolos-bam's?
# BOLT runs on the cc1 of bench/bam_gcc.sh with the profile of one of its
# cache entries (an instrumented run's, profile.fdata), once per variant;
# each result compiles two preprocessed SQLite files under cachegrind
# (deterministic: instructions and I1 misses, 32 KiB 8-way I1).
#
#   bench/bam_bolt_options.sh ENTRY_DIR   (a bench/out/bam/gcc.*/cache/e/*
#                                          directory holding profile.fdata)
#   env: LLVM_DIR (default /usr/lib/llvm-22), FILES (default "where btree")
#
# Prints one line per variant and file: instructions, I1 misses, and both
# against plain cc1's. Every variant's assembly output must equal plain
# cc1's, or the script fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] && [ -f "$1/profile.fdata" ] || { echo "usage: $0 ENTRY_DIR (with profile.fdata)" >&2; exit 2; }
entry=$(cd "$1" && pwd)
LLVM_DIR=${LLVM_DIR:-/usr/lib/llvm-22}
read -r -a files <<< "${FILES:-where btree}"
cc1=$here/out/gcc/cc1dir/cc1
sqsrc=$(ls -d "$here"/out/bam/src/sqlite3-3*/ 2>/dev/null | head -1 || true)
ts=${sqsrc%/}/bld/tsrc
[ -x "$cc1" ] && [ -f "$ts/where.c" ] || { echo "run bench/bam_gcc.sh first" >&2; exit 2; }
command -v valgrind > /dev/null || { echo "needs valgrind" >&2; exit 2; }
out=$here/out/bam/bolt-options.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
# ocolos-bam's options in relocation mode (tools/ocolos_bam.c, bolt_common
# and bolt_relocs), then the variants. --plt=hot is left out: BOLT refuses
# it for a cc1 not linked with -z now.
cur="--reorder-blocks=ext-tsp --split-functions --split-all-cold --icf=1 --use-gnu-stack --lite --dyno-stats=0 --reorder-functions=cdsort"
variants=(
	"cur|$cur"
	"icp|$cur --indirect-call-promotion=all"
	"peephole|$cur --peepholes=all --frame-opt=hot --inline-small-functions"
	"cdsplit|$cur --split-strategy=cdsplit"
)
flags=(-O2 -DSQLITE_CORE -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_ENABLE_FTS3
	-DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_GEOPOLY -I"$ts" -I"${sqsrc%/}/ext/rtree")
for f in "${files[@]}"; do
	gcc-12 "${flags[@]}" -E "$ts/$f.c" -o "$out/$f.i"
done
# cg CC1 FILE NAME: "Ir I1mr" of cc1 on FILE.i, its output kept as NAME.FILE.s
cg() {
	valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=49152,12,64 \
		--LL=1048576,16,64 --cachegrind-out-file="$out/$3.$2.cg" \
		"$1" -quiet -O2 -fasynchronous-unwind-tables -mtune=generic -march=x86-64 \
		"$out/$2.i" -o "$out/$3.$2.s" 2> "$out/$3.$2.cg.err"
	awk '/^summary:/ {print $2, $3}' "$out/$3.$2.cg"
}
declare -A base
for f in "${files[@]}"; do
	base[$f]=$(cg "$cc1" "$f" plain)
	echo "plain $f: Ir I1mr ${base[$f]}"
done
for v in "${variants[@]}"; do
	name=${v%%|*} opts=${v#*|}
	# shellcheck disable=SC2086 # the options are words
	/usr/bin/time -f "%e s wall, %M KB" -o "$out/$name.time" "$LLVM_DIR/bin/llvm-bolt" "$cc1" \
		-o "$out/$name.cc1" -data="$entry/profile.fdata" $opts > "$out/$name.bolt.log" 2>&1 ||
		{ echo "$name: llvm-bolt failed (see $out/$name.bolt.log)" >&2; continue; }
	for f in "${files[@]}"; do
		r=$(cg "$out/$name.cc1" "$f" "$name")
		cmp -s "$out/plain.$f.s" "$out/$name.$f.s" || { echo "$name: $f.s differs from plain cc1's" >&2; exit 1; }
		read -r ir i1 <<< "$r"
		read -r bir bi1 <<< "${base[$f]}"
		awk -v n="$name" -v f="$f" -v ir="$ir" -v i1="$i1" -v bir="$bir" -v bi1="$bi1" 'BEGIN {
			printf "%-9s %-6s Ir %.0f (%.4f of plain)  I1 misses %.0f (%.4f of plain)\n",
				n, f, ir, ir / bir, i1, i1 / bi1 }'
	done
	rm -f "$out/$name.cc1"
done
echo "files in $out"

#!/usr/bin/env bash
# Deterministic layout regression check (method 3 of docs/benchmarks.md).
#
# Builds a small generated front-end-bound program (bench/gen_frontend.py),
# profiles a fixed amount of work with callgrind (exact instruction counts,
# turned into BOLT `S` records by bench/cg2pa.py: a fixed, dense, synthetic
# IP profile), BOLTs it offline with the options under test, and checks with
# callgrind's cache simulator that I1 misses per 1000 instructions drop by at
# least GUARD_MIN_DROP (a fraction, default 0.5). Nothing here depends on
# wall time or on the machine's PMU; the numbers are the same on every run
# with the same gcc, valgrind and llvm-bolt.
#
# usage: bench/cachesim_guard.sh [WORKDIR]      (default: a fresh mktemp -d)
# environment:
#   BOLT            llvm-bolt (default /usr/lib/llvm-22/bin/llvm-bolt)
#   GUARD_PROFILE   fdata (default): `llvm-bolt --aggregate-only --pa --ba`
#                   first, then `llvm-bolt -data` (what works with BOLT 22);
#                   pa: one `llvm-bolt --pa --ba -p` call (what lib/layout/
#                   bolt.c did when this was written: it fails this check)
#   GUARD_BOLT_OPTS layout options (default: the recommended set, see
#                   docs/benchmarks.md)
#   GUARD_MIN_DROP  required relative drop of I1 MPKI (default 0.5)
#   CC              compiler (default gcc)
# exit status: 0 pass, 1 fail (numbers on stdout), 77 skipped (tool missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bolt=${BOLT:-/usr/lib/llvm-22/bin/llvm-bolt}
cc=${CC:-gcc}
mode=${GUARD_PROFILE:-fdata}
opts=${GUARD_BOLT_OPTS:---enable-bat --lite --reorder-blocks=ext-tsp --reorder-functions=cdsort --split-functions --jump-tables=move --no-huge-pages}
min_drop=${GUARD_MIN_DROP:-0.5}
ops=20000
cg=(valgrind --tool=callgrind --cache-sim=yes --I1=32768,8,64
	--D1=49152,12,64 --LL=2097152,16,64)

for t in valgrind python3 "$cc" "$bolt"; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "cachesim_guard: SKIP: $t not found"
		exit 77
	fi
done
work=${1:-$(mktemp -d /tmp/cachesim_guard.XXXXXX)}
mkdir -p "$work/src"

# 400 functions, 40 hot ones scattered among them, 6 rare blocks placed
# inline (compiler told they are likely) between 4-op hot blocks: ~0.7 MB
# of .text, ~18 KB of hot code after BOLT, ~1 MB before when counted in
# touched cache lines spread over the whole text.
python3 "$here/gen_frontend.py" --out "$work/src" --functions 400 --hot 40 \
	--tus 2 --seed 7 2>/dev/null
srcs=()
while read -r s; do srcs+=("$work/src/$s"); done <"$work/src/sources.txt"
"$cc" -O1 -fno-jump-tables -g0 -w -fno-pie -no-pie -pthread \
	-Wl,--emit-relocs -o "$work/fe" "${srcs[@]}"

mpki() { # BINARY [extra valgrind args] -> prints "instructions i1_misses"
	local bin=$1
	shift
	"${cg[@]}" "$@" --callgrind-out-file="$bin.cg" "$bin" --ops "$ops" \
		--threads 1 --check 0 2>&1 >/dev/null |
		awk '/I +refs:/{gsub(",","",$4);i=$4} /I1 +misses:/{gsub(",","",$4);m=$4}
		     END{print i, m}'
}

read -r i0 m0 < <(mpki "$work/fe" --dump-instr=yes)
python3 "$here/cg2pa.py" --callgrind "$work/fe.cg" --binary "$work/fe" \
	--out "$work/fe.pa" --scale 100 2>/dev/null
# shellcheck disable=SC2086
if [[ $mode == pa ]]; then
	"$bolt" "$work/fe" -o "$work/fe.bolt" --pa --ba -p "$work/fe.pa" $opts \
		>"$work/bolt.log" 2>&1
else
	"$bolt" "$work/fe" --aggregate-only --pa --ba -p "$work/fe.pa" \
		-o "$work/fe.fdata" >"$work/aggregate.log" 2>&1
	"$bolt" "$work/fe" -o "$work/fe.bolt" -data "$work/fe.fdata" $opts \
		>"$work/bolt.log" 2>&1
fi
read -r i1 m1 < <(mpki "$work/fe.bolt")
python3 - "$i0" "$m0" "$i1" "$m1" "$min_drop" "$mode" <<'EOF'
import sys
i0, m0, i1, m1 = map(int, sys.argv[1:5])
need, mode = float(sys.argv[5]), sys.argv[6]
a, b = 1000.0 * m0 / i0, 1000.0 * m1 / i1
drop = 1 - b / a if a else 0
ok = drop >= need
print("cachesim_guard: %s profile=%s I1 MPKI original %.2f (%d instr) -> "
      "BOLT %.2f (%d instr): drop %.0f%% (need >= %.0f%%)" %
      ("PASS" if ok else "FAIL", mode, a, i0, b, i1, 100 * drop, 100 * need))
sys.exit(0 if ok else 1)
EOF

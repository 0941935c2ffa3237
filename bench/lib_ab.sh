#!/usr/bin/env bash
# Two builds of libocolos on the same workload, interleaved: fe's in-process
# A/B (original vs optimized code in one process, after one round) run with
# build A's library, then B's, REPS times. A change to what a round writes
# (entries through stubs, say) shows as a different optimized/original
# ratio; the paired B/A ratios and their median are printed.
#
# usage: bench/lib_ab.sh LIBDIR_A LIBDIR_B [REPS]
#   LIBDIR_*   a directory holding libocolos.so.0 (e.g. a copy of an older
#              build's), used through LD_LIBRARY_PATH
#   REPS       pairs of runs (default 3)
# environment:
#   LAB_ARGS   fe's arguments (default: --duration 150 --online-after 4
#              --ab-pairs 6 --ab-secs 1.5)
# needs bench/out/fe/fe-nopie-ocolos (bench/build_frontend.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fe=$here/out/fe/fe-nopie-ocolos
[ -x "$fe" ] || { echo "lib_ab: $fe missing: run bench/build_frontend.sh" >&2; exit 2; }
[ $# -ge 2 ] || { echo "usage: $0 LIBDIR_A LIBDIR_B [REPS]" >&2; exit 2; }
a=$1 b=$2 reps=${3:-3}
# --duration only bounds a run (it ends after the A/B pairs); the default
# round's window under its 2 % cost limit takes 3-3.5 minutes on fe here.
args=${LAB_ARGS:---duration 900 --online-after 4 --ab-pairs 6 --ab-secs 1.5}
ratios=()
for ((i = 1; i <= reps; i++)); do
	for side in A B; do
		dir=$a; [ $side = B ] && dir=$b
		# shellcheck disable=SC2086
		r=$(LD_LIBRARY_PATH=$dir "$fe" $args 2>&1 | sed -n 's/^ab done .*median=\([0-9.]*\).*/\1/p')
		[ -n "$r" ] || { echo "lib_ab: run $i ($side) gave no A/B result" >&2; exit 1; }
		echo "rep $i $side optimized/original $r"
		[ $side = A ] && ra=$r || ratios+=("$(python3 -c "print(round($r / $ra, 4))")")
	done
done
python3 - "${ratios[@]}" <<'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print("B/A per pair:", " ".join(f"{x:.4f}" for x in v))
print(f"B/A median {statistics.median(v):.4f} (min {min(v):.4f}, max {max(v):.4f})")
PY

#!/usr/bin/env bash
# Several builds of gcc's cc1 on the same compilations, interleaved file by
# file: each SQLite source of bench/bam_gcc.sh's build (Debian's gcc-12
# driver, -O2, the same flags) is compiled by every cc1 in turn, the order
# rotated by one each file, and each cc1's CPU time (user + system of the
# driver and its children) summed per repetition. Finer-grained than
# bam_gcc.sh's whole builds, so a host that slows down for a minute moves
# every cc1 alike. For comparing profiles, e.g. the optimized cc1 of two
# bam_gcc.sh runs (bench/out/bam/gcc.*/cache/e/*/optimized) and the plain
# one (bench/out/gcc/cc1dir/cc1).
#
#   bench/cc1_ab.sh CC1 CC1 [CC1...]   (the first is the baseline)
#   env: REPS (repetitions, default 3), FILES (how many of the sources,
#        default all 101)
# Prints per repetition each cc1's CPU seconds and its ratio baseline/cc1
# (> 1: faster than the baseline), then per cc1 the median ratio and range.
# The CPU time is the compilation's, driver and assembler included (they
# are the same for every cc1), so a ratio understates cc1's own.
# Every object file must be identical across the cc1s, or the script fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 CC1 CC1 [CC1...]" >&2; exit 2; }
REPS=${REPS:-3}
driver=$(command -v gcc-12) || { echo "cc1_ab: needs Debian's gcc-12" >&2; exit 2; }
sqsrc=$(ls -d "$here"/out/bam/src/sqlite3-3*/ 2>/dev/null | head -1 || true)
sqsrc=${sqsrc%/}
ts=$sqsrc/bld/tsrc
[ -d "$ts" ] || { echo "cc1_ab: $ts missing: run bench/bam_gcc.sh once" >&2; exit 2; }
srcs=$(cd "$ts" && ls ./*.c | sed 's|^\./||; s/\.c$//' | grep -vE '^(fts1|fts2|tclsqlite|geopoly|icu$|fts3_icu)')
[ -n "${FILES:-}" ] && srcs=$(echo "$srcs" | head -n "$FILES")
flags=(-O2 -DSQLITE_CORE -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_ENABLE_FTS3
	-DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_GEOPOLY -I"$ts" -I"$sqsrc/ext/rtree")
work=$(mktemp -d /tmp/cc1_ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc1s=("$@")
n=$#
for ((k = 0; k < n; k++)); do
	c=${cc1s[k]}
	c=$(cd "$(dirname "$c")" && pwd)/$(basename "$c")
	[ -x "$c" ] || { echo "cc1_ab: $c is not executable" >&2; exit 2; }
	mkdir -p "$work/b$k" "$work/o$k"
	ln -s "$c" "$work/b$k/cc1" # gcc -B<dir>/ runs <dir>/cc1
	case $("$driver" -B"$work/b$k/" -v -x c -c /dev/null -o /dev/null 2>&1) in *"
 $work/b$k/cc1 "*) ;; *) echo "cc1_ab: the driver does not run $work/b$k/cc1 with -B" >&2; exit 1 ;; esac
	echo "cc1 $k: $c"
done
declare -a ratios
for ((r = 1; r <= REPS; r++)); do
	declare -a cpu=()
	for ((k = 0; k < n; k++)); do cpu[k]=0; done
	i=0
	for s in $srcs; do
		for ((j = 0; j < n; j++)); do
			k=$(((i + j + r) % n))
			/usr/bin/time -f "%U %S" -o "$work/t" \
				"$driver" -B"$work/b$k/" "${flags[@]}" -c "$ts/$s.c" -o "$work/o$k/$s.o"
			cpu[k]=$(awk -v a="${cpu[k]}" '{print a + $1 + $2}' "$work/t")
		done
		i=$((i + 1))
	done
	for ((k = 1; k < n; k++)); do
		for s in $srcs; do cmp -s "$work/o0/$s.o" "$work/o$k/$s.o" ||
			{ echo "cc1_ab: $s.o differs between cc1 0 and cc1 $k" >&2; exit 1; }; done
	done
	line="rep $r:"
	for ((k = 0; k < n; k++)); do
		rt=$(awk -v a="${cpu[0]}" -v b="${cpu[k]}" 'BEGIN {printf "%.4f", a / b}')
		line+=" cc1 $k ${cpu[k]} s ($rt)"
		ratios[k]="${ratios[k]:-} $rt"
	done
	echo "$line"
done
for ((k = 1; k < n; k++)); do
	python3 - "$k" ${ratios[k]} <<'PY'
import statistics, sys
k, v = sys.argv[1], [float(x) for x in sys.argv[2:]]
print(f"cc1 {k}: baseline/cc1 median {statistics.median(v):.4f} (range {min(v):.4f}-{max(v):.4f}, n={len(v)})")
PY
done

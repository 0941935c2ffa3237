#!/usr/bin/env bash
# What one instrumented compilation costs (ocolos-bam --instrument), and what
# BOLT's --instrument-calls=false would save: cc1 (bam_gcc.sh's, with
# relocations) instrumented both ways, then select.c and where.c of SQLite
# compiled REPS times with plain / instrumented / instrumented without call
# counts, interleaved; CPU time (user + sys) of each compilation.
#
#   bench/bam_instr_cost.sh      (after bench/bam_gcc.sh has built cc1 and
#                                 SQLite's sources; LLVM_DIR, REPS, FILES)
#
# Every object must be identical to the plain compiler's, or the script fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LLVM_DIR=${LLVM_DIR:-/usr/lib/llvm-22} REPS=${REPS:-3}
read -r -a files <<< "${FILES:-select where}"
log() { echo "bam_instr_cost: $*" >&2; }
cc1=$here/out/gcc/cc1dir/cc1
sqsrc=$(ls -d "$here"/out/bam/src/sqlite3-3*/ 2>/dev/null | head -1 || true)
ts=${sqsrc%/}/bld/tsrc
[ -x "$cc1" ] && [ -f "$ts/select.c" ] ||
	{ log "run bench/bam_gcc.sh first (it builds $cc1 and SQLite's split sources)"; exit 1; }
driver=$(command -v gcc-12)
out=$here/out/bam/instr-cost.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"/{plain,instr,nocalls,prof}
cp "$cc1" "$out/plain/cc1"
for k in instr nocalls; do
	extra=(); [ $k = nocalls ] && extra=(--instrument-calls=false)
	/usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KB" -o "$out/$k.bolt.time" \
		"$LLVM_DIR/bin/llvm-bolt" "$cc1" --instrument "${extra[@]}" \
		--instrumentation-file="$out/prof/$k" --instrumentation-file-append-pid \
		-o "$out/$k/cc1" > "$out/$k.bolt.log" 2>&1
	log "llvm-bolt --instrument ${extra[*]}: $(cat "$out/$k.bolt.time")"
done
cflags=(-O2 -DSQLITE_CORE -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_ENABLE_FTS3
	-DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_GEOPOLY -I"$ts"
	-I"${sqsrc%/}/ext/rtree")
echo -e "file\tkind\tcpu_s" > "$out/times.tsv"
for r in $(seq "$REPS"); do
	for f in "${files[@]}"; do
		for k in plain instr nocalls; do
			/usr/bin/time -f "%U %S" -o "$out/t" "$driver" -B"$out/$k/" "${cflags[@]}" \
				-c "$ts/$f.c" -o "$out/$k.$f.o"
			echo -e "$f\t$k\t$(awk '{print $1 + $2}' "$out/t")" >> "$out/times.tsv"
		done
		for k in instr nocalls; do
			cmp -s "$out/plain.$f.o" "$out/$k.$f.o" || { log "ORACLE: $k $f.o differs"; exit 1; }
		done
	done
done
rm -rf "$out/prof"
python3 - "$out/times.tsv" <<'EOF' | tee "$out/summary.txt"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
for f in dict.fromkeys(r[0] for r in rows):
    t = {k: [float(r[2]) for r in rows if r[0] == f and r[1] == k] for k in ("plain", "instr", "nocalls")}
    m = {k: statistics.median(v) for k, v in t.items()}
    print(f"{f}.c: plain {m['plain']:.2f} s, instrumented {m['instr']:.2f} s "
          f"({m['instr'] / m['plain']:.1f}x), --instrument-calls=false {m['nocalls']:.2f} s "
          f"({m['nocalls'] / m['plain']:.1f}x, {100 * (1 - m['nocalls'] / m['instr']):.0f} % less "
          f"than instrumented); all: {t}")
EOF
log "results in $out"

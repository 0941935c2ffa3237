#!/bin/sh
# Edge-weight accuracy of IP-sample profiles against BOLT instrumentation.
#
# What this file is responsible for: measuring, edge by edge, how close two
# estimates built from the same cpu-clock IP samples come to the true edge
# counts of a run:
#   hybrid  libocolos' infer_write_hybrid (CFG + must-have-run inference +
#           the AOBO hybrid estimator) -> B/F records, read by BOLT as branch
#           data (`--pa`, no `--ba`);
#   paper   the same without the must-have-run inference (HYBRID_NO_INFER);
#   nl      BOLT's own inference from the same samples (`--pa --ba`, S records).
# Ground truth: `llvm-bolt -instrument`, the instrumented binary run on the
# same workload, its fdata read back by BOLT.
#
# How edges are compared: every profile is read by the same llvm-bolt on the
# same binary with `--print-estimate-edge-counts`, which prints each
# profiled function's CFG with the edge counts BOLT ended up with (after its
# own no-LBR estimation; for branch profiles nothing changes there), before
# any optimization pass. So all of them are expressed on BOLT's own CFG and
# compared edge by edge: (function, from-block index, to-block index).
# (`-w x.yaml` would be simpler but saves no edges for sample profiles.)
# Two ways of feeding BOLT the S records are measured: `nl` = perf2bolt
# --pa --ba -> fdata -> llvm-bolt -data (how perf2bolt users get BOLT's
# inference), `nldirect` = llvm-bolt -p S.pa --pa --ba (what libocolos's
# round does today; BOLT 22 warns "reading perf data directly is
# unsupported" and, as measured here, then attaches no block counts).
# Metric: weighted error = sum over edges |est - true| / sum true, after
# scaling each estimate so its total equals the truth's total; hot-edge
# coverage = the fraction of the truth's weight carried by the edges that
# make up its top 90 % which the estimate gives a non-zero count.
#
# usage: bench/edge_accuracy.sh [fe-small|fe|sqlite|gzip|fixture] [SAMPLES...]
#   SAMPLES: sample budgets drawn (seeded) from one perf recording; "all"
#   uses every sample. Default: 2000 10000 all.
# env: BUILD (a libocolos build dir with libocolos_internal.a; default
#   build), BOLT (default /usr/lib/llvm-22/bin/llvm-bolt), PERF_FREQ (default
#   20000), OUT (default bench/out/edge_accuracy/<workload>).
# Last line: `edge-accuracy: hybrid <err>% nl <err>%` for the smallest budget.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WL=${1:-fe-small}
[ $# -gt 0 ] && shift
BUDGETS=${*:-2000 10000 all}
BUILD=${BUILD:-$ROOT/build}
BOLT=${BOLT:-/usr/lib/llvm-22/bin/llvm-bolt}
PERF2BOLT=${PERF2BOLT:-$(dirname "$BOLT")/perf2bolt}
PERF_FREQ=${PERF_FREQ:-20000}
OUT=${OUT:-$ROOT/bench/out/edge_accuracy/$WL}
mkdir -p "$OUT"

case "$WL" in
fe-small)
	BIN=$ROOT/bench/out/fe-small/fe-nopie
	[ -x "$BIN" ] || FE_OUT=$ROOT/bench/out/fe-small FE_PIE=nopie \
		"$ROOT/bench/build_frontend.sh" build --functions 2000
	TRUTH_ARGS="--ops 2000000 --threads 1"
	PERF_ARGS="--ops 10000000 --threads 1" ;;
fe)
	BIN=$ROOT/bench/out/fe/fe-nopie
	[ -x "$BIN" ] || FE_PIE=nopie "$ROOT/bench/build_frontend.sh" build
	TRUTH_ARGS="--ops 300000 --threads 1"
	PERF_ARGS="--ops 3000000 --threads 1" ;;
sqlite)
	BIN=$ROOT/bench/out/sqlite/speedtest1-nopie
	[ -x "$BIN" ] || "$ROOT/bench/build_sqlite.sh"
	TRUTH_ARGS="--size 100"
	PERF_ARGS="--size 100" ;;
gzip)
	BIN=$ROOT/bench/out/gzip/gzip
	[ -x "$BIN" ] || "$ROOT/bench/build_gzip.sh"
	# a deterministic, compressible input (words from a fixed seed)
	[ -f "$OUT/input.txt" ] || python3 -c 'import random
r = random.Random(7); w = ["w%d" % i for i in range(5000)]
open("'"$OUT"'/input.txt", "w").write(" ".join(r.choice(w) for _ in range(3000000)))'
	TRUTH_ARGS="-c -6 $OUT/input.txt"
	PERF_ARGS="-c -6 $OUT/input.txt" ;;
fixture)
	BIN=$BUILD/tests/unit/unit_fixture
	TRUTH_ARGS=20000000
	PERF_ARGS=20000000 ;;
*) echo "edge_accuracy: unknown workload '$WL'" >&2; exit 2 ;;
esac

LIB=$BUILD/libocolos_internal.a
[ -f "$LIB" ] || { echo "edge_accuracy: $LIB missing; build libocolos first (BUILD=...)" >&2; exit 2; }

# --- the helper: S records (link-time address, count) -> infer_write_hybrid_flags
HELPER=$OUT/hybrid_pa
cat > "$OUT/hybrid_pa.c" <<'EOF'
/* S <addr> <count> lines -> hybrid B/F profile via infer_write_hybrid_flags.
 * usage: hybrid_pa BINARY IN.pa OUT.pa [noinfer] */
#include <stdio.h>
#include <string.h>
#include "elf/binary.h"
#include "infer/hybrid.h"
int main(int argc, char **argv)
{
	struct core_err err = { 0 };
	struct elf_binary *b;
	if (argc < 4 || elf_binary_open(argv[1], &b, &err)) {
		fprintf(stderr, "hybrid_pa: %s\n", err.msg);
		return 1;
	}
	FILE *in = fopen(argv[2], "r");
	struct sample_set s = { 0 };
	char line[256];
	unsigned long long a, n;
	while (in && fgets(line, sizeof(line), in))
		if (sscanf(line, "S %llx %llu", &a, &n) == 2)
			while (n--)
				sample_set_push(&s, a);
	struct infer_profile_stats st;
	struct hybrid_write_stats hs;
	unsigned flags = argc > 4 && !strcmp(argv[4], "noinfer") ? HYBRID_NO_INFER : 0;
	if (infer_write_hybrid_flags(b, 0, &s, argv[3], flags, &st, &hs, &err)) {
		fprintf(stderr, "hybrid_pa: %s\n", err.msg);
		return 1;
	}
	fprintf(stderr, "hybrid_pa samples=%zu functions=%u cfg=%u nocfg=%u sampled_blocks=%u "
		"inferred_blocks=%u (R1 %u R2 %u R3 %u R4 %u) edges=%u B=%llu F=%llu calls=%llu "
		"entries=%llu\n", s.n, st.functions, hs.functions_cfg, hs.functions_nocfg,
		hs.est.sampled_blocks, hs.est.inferred_blocks, hs.est.by_rule[0],
		hs.est.by_rule[1], hs.est.by_rule[2], hs.est.by_rule[3], hs.est.weighted_edges,
		(unsigned long long)hs.branch_records, (unsigned long long)hs.fallthrough_records,
		(unsigned long long)hs.call_records, (unsigned long long)hs.entry_records);
	sample_set_free(&s);
	elf_binary_close(b);
	return 0;
}
EOF
${CC:-cc} -O2 -D_GNU_SOURCE -I"$ROOT/include" -I"$ROOT/lib" -o "$HELPER" "$OUT/hybrid_pa.c" \
	"$LIB" -lelf -lZydis -lpfm -lpthread -lgcc_s

# bolt_cfg OUT [bolt profile args...]: the CFG with edge counts BOLT ends
# up with (printed after its no-LBR edge estimation, a no-op for branch
# profiles), reduced to function, block and successor lines.
bolt_cfg() {
	out=$1
	shift
	"$BOLT" "$BIN" -o "$OUT/tmp.bolt" "$@" --print-estimate-edge-counts > "$out.log" 2>&1 ||
		{ echo "edge_accuracy: llvm-bolt failed, see $out.log" >&2; exit 1; }
	rm -f "$OUT/tmp.bolt"
	grep -E '^Binary Function|^[^ ]+ \([0-9]+ instructions|^  Successors:' "$out.log" > "$out"
	grep -E "mismatching|non-empty execution profile" "$out.log" | sed 's/^/  bolt: /' >&2 || true
	sed -i -E '/^Binary Function|^[^ ]+ \([0-9]+ instructions|^  Successors:/d' "$out.log"
}

# --- ground truth
if [ ! -s "$OUT/truth.cfg" ]; then
	"$BOLT" "$BIN" -instrument -o "$OUT/instr.bin" --instrumentation-file="$OUT/truth.fdata" \
		> "$OUT/instr.log" 2>&1
	rm -f "$OUT/truth.fdata"
	(cd "$OUT" && ./instr.bin $TRUTH_ARGS > /dev/null)
	bolt_cfg "$OUT/truth.cfg" -data "$OUT/truth.fdata"
fi

# --- one IP recording, subsampled per budget
if [ ! -s "$OUT/perf.data" ]; then
	(cd "$OUT" && perf record -q -e cpu-clock -F "$PERF_FREQ" -o perf.data -- "$BIN" $PERF_ARGS \
		> /dev/null)
fi

RESULTS=$OUT/results.txt
: > "$RESULTS"
for n in $BUDGETS; do
	max=0
	[ "$n" = all ] || max=$n
	python3 "$ROOT/bench/perf2pa.py" --perf-data "$OUT/perf.data" --binary "$BIN" \
		--out "$OUT/s$n.pa" --max-samples "$max" --seed 1
	"$HELPER" "$BIN" "$OUT/s$n.pa" "$OUT/hybrid$n.pa"
	"$HELPER" "$BIN" "$OUT/s$n.pa" "$OUT/paper$n.pa" noinfer
	# BOLT's own no-LBR inference, the way perf2bolt users get it: aggregate
	# the S records to an fdata first (perf2bolt --ba), then read it.
	"$PERF2BOLT" "$BIN" -p "$OUT/s$n.pa" --pa --ba -o "$OUT/nl$n.fdata" > "$OUT/nl$n.p2b.log" 2>&1
	bolt_cfg "$OUT/nl$n.cfg" -data "$OUT/nl$n.fdata"
	# What libocolos does today: llvm-bolt reads the S records directly.
	bolt_cfg "$OUT/nldirect$n.cfg" -p "$OUT/s$n.pa" --pa --ba
	bolt_cfg "$OUT/hybrid$n.cfg" -p "$OUT/hybrid$n.pa" --pa
	bolt_cfg "$OUT/paper$n.cfg" -p "$OUT/paper$n.pa" --pa
	python3 - "$OUT/truth.cfg" "$n" "$OUT/hybrid$n.cfg" "$OUT/paper$n.cfg" \
		"$OUT/nl$n.cfg" "$OUT/nldirect$n.cfg" >> "$RESULTS" <<'EOF'
import re, sys
NO_PROFILE = 1 << 63
SUCC = re.compile(r"(\S+) \(mispreds: \d+, count: (\d+)\)")

def edges(path):
    """{(function, from block, to block): count} of a BOLT CFG dump. Blocks
    are named by their index in the function's (original) layout: BOLT's
    labels are numbered across functions, so they differ between runs that
    profile different functions."""
    e = {}
    def flush(fn, blocks):
        index = {label: i for i, (label, _) in enumerate(blocks)}
        for i, (_, succ) in enumerate(blocks):
            for to, c in succ:
                if 0 < c < NO_PROFILE and to in index:
                    k = (fn, i, index[to])
                    e[k] = e.get(k, 0.0) + c
    fn, blocks = None, []
    for line in open(path):
        if line.startswith("Binary Function"):
            if fn:
                flush(fn, blocks)
            fn, blocks = line.split('"')[1], []
        elif line.startswith("  Successors:"):
            if blocks:
                blocks[-1][1].extend((t, int(c)) for t, c in SUCC.findall(line))
        else:
            blocks.append((line.split(" ", 1)[0], []))
    if fn:
        flush(fn, blocks)
    return e

truth = edges(sys.argv[1])
total = sum(truth.values())
hot, acc = set(), 0.0
for k, v in sorted(truth.items(), key=lambda kv: -kv[1]):
    if acc >= 0.9 * total:
        break
    hot.add(k)
    acc += v
row = ["samples=%s" % sys.argv[2], "true_edges=%d" % len(truth), "hot_edges=%d" % len(hot)]
for name, path in zip(("hybrid", "paper", "nl", "nldirect"), sys.argv[3:]):
    est = edges(path)
    scale = total / sum(est.values()) if est else 0.0
    err = sum(abs(est.get(k, 0.0) * scale - truth.get(k, 0.0)) for k in set(truth) | set(est))
    cov = sum(truth[k] for k in hot if est.get(k, 0) > 0) / acc if acc else 0.0
    row.append("%s_err=%.1f%% %s_hotcov=%.1f%%" % (name, 100 * err / total, name, 100 * cov))
print(" ".join(row))
EOF
	tail -1 "$RESULTS"
done
first=$(head -1 "$RESULTS")
h=$(echo "$first" | sed -n 's/.*hybrid_err=\([0-9.]*\)%.*/\1/p')
l=$(echo "$first" | sed -n 's/.*nl_err=\([0-9.]*\)%.*/\1/p')
echo "edge-accuracy: hybrid $h% nl $l%"

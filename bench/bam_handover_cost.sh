#!/usr/bin/env bash
# What an instrumented run costs with its counters handed over at exit
# (ocolos-bam's default since 2026-12-03; tools/bam/counts.h) against BOLT's
# runtime writing the profile in the run itself, and what the replay of the
# counters then costs the background worker; and whether the two ways give
# the same profile.
#
# ocolos-bam makes the instrumented copy of BIN (--instrument 1 --wait, the
# first run being BIN itself); then REPS times, interleaved, the copy runs
# ARGS:
#   dump      directly, no preload: BOLT's runtime writes the whole profile
#             at exit (what every instrumented run did before)
#   handover  as ocolos-bam runs it (the preload, the entry's variables): the
#             counters go to fdata/counts.<pid>, the runtime writes the rest
#   replay    the copy replaying those counters, as the worker does
# CPU time (user + sys, /usr/bin/time) of each; the profile of dump against
# handover's own file merged with the replay's, fixed as
# tools/bam/counts.c does (summed per branch: the lines that differ and
# their share of all counts).
#
#   bench/bam_handover_cost.sh BUILD_DIR BIN ARGS...
#   env: REPS (default 5), BOLT (llvm-bolt, default /usr/lib/llvm-22/bin/llvm-bolt),
#        KEEP=1 (keep the profiles and the cache)
# e.g. fe: bench/bam_handover_cost.sh build bench/out/fe/fe-nopie --threads 1 --ops 200000
# cc1: the cc1 command line `gcc-12 -### -B<dir>/ ...` prints, output to a file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bdir=$(cd "${1:?usage: bam_handover_cost.sh BUILD_DIR BIN ARGS...}" && pwd)
bin=$(realpath "${2:?BIN}")
shift 2
REPS=${REPS:-5} BOLT=${BOLT:-/usr/lib/llvm-22/bin/llvm-bolt}
bam=$bdir/tools/ocolos-bam preload=$bdir/tools/libocolos-bam.so
out=$here/out/bam/handover.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
cache=$out/cache
log() { echo "bam_handover_cost: $*" >&2; }
"$bam" --cache "$cache" --bolt "$BOLT" --target "$bin" --instrument 1 --wait -- env "$bin" "$@" \
	>/dev/null 2>"$out/make-copy.log" || { cat "$out/make-copy.log" >&2; exit 1; }
e=$(ls -d "$cache"/e/* | head -1)
[ -x "$e/instrumented" ] || { log "no instrumented copy: $e"; cat "$out/make-copy.log" >&2; exit 1; }
[ -s "$e/instrumented.counters" ] || { log "the copy's counters were not located: no hand-over"; exit 1; }
rm -f "$e"/fdata/*
timed() { /usr/bin/time -f "%U %S" -o "$out/t" "$@" >/dev/null 2>>"$out/runs.log"; awk '{print $1 + $2}' "$out/t"; }
echo -e "rep\tkind\tcpu_s" > "$out/times.tsv"
for r in $(seq "$REPS"); do
	order="dump handover"; [ $((r % 2)) = 0 ] && order="handover dump"
	for k in $order; do
		if [ $k = dump ]; then
			t=$(timed "$e/instrumented" "$@")
			mv "$e"/fdata/prof.*.fdata "$out/dump.$r.fdata"
		else
			t=$(timed env LD_PRELOAD="$preload" OCOLOS_BAM_DIR="$cache" OCOLOS_BAM_RUN_ENTRY="$e" \
				OCOLOS_BAM_RUN_ORIG="$bin" OCOLOS_BAM_RUN_FDATA="$e/fdata" "$e/instrumented" "$@")
			c=$(ls "$e"/fdata/counts.* | grep -v fdata$)
			pid=${c##*.}
			[ -n "$pid" ] || { log "no counters handed over"; exit 1; }
			tr=$(timed env LD_PRELOAD="$preload" OCOLOS_BAM=off OCOLOS_BAM_REPLAY="$c" "$e/instrumented")
			echo -e "$r\treplay\t$tr" >> "$out/times.tsv"
			mv "$e/fdata/prof.$pid.fdata" "$out/run.$r.fdata"
			mv "$c.fdata" "$out/replay.$r.fdata"
			rm -f "$e"/fdata/*
		fi
		echo -e "$r\t$k\t$t" >> "$out/times.tsv"
	done
done
python3 - "$out" "$REPS" <<'EOF' | tee "$out/summary.txt"
import collections, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
rows = [l.split() for l in open(out + "/times.tsv")][1:]
t = {k: [float(r[2]) for r in rows if r[1] == k] for k in ("dump", "handover", "replay")}
m = {k: statistics.median(v) for k, v in t.items()}
print("CPU s, median of %d: dump %.3f, handover %.3f (%.1f %% less), replay %.3f (in the worker)"
      % (reps, m["dump"], m["handover"], 100 * (1 - m["handover"] / m["dump"]), m["replay"]))
print("all:", {k: v for k, v in t.items()})
def load(f):
    c = collections.Counter()
    for l in open(f):
        x = l.split()
        if len(x) == 8:
            c[" ".join(x[:7])] += int(x[7])
    return c
for r in range(1, reps + 1):
    d, run, rep = (load("%s/%s.%d.fdata" % (out, k, r)) for k in ("dump", "run", "replay"))
    ind = collections.Counter()
    for k, v in run.items():
        x = k.split()
        if x[3] == "1":
            ind[(x[4], x[5])] += v
    fixed = collections.Counter()
    for k, v in rep.items():
        x = k.split()
        if x[0] == "1" and x[3] == "0" and x[4] == "[unknown]":
            continue
        if x[0] == "0" and x[1] == "[unknown]" and x[3] == "1":
            v -= ind[(x[4], x[5])]
            if v <= 0:
                continue
        fixed[k] = v
    merged = fixed + run
    diff = [k for k in set(d) | set(merged) if d[k] != merged[k]]
    w = sum(abs(d[k] - merged[k]) for k in diff)
    print("rep %d: %d branches in the dump, %d differ (%.4f %% of the counts)"
          % (r, len(d), len(diff), 100 * w / max(1, sum(d.values()))))
# A program that is not deterministic (cc1: hash tables keyed by
# addresses, under ASLR) differs from run to run anyway: two dumps.
if reps > 1:
    a, b = load(out + "/dump.1.fdata"), load(out + "/dump.2.fdata")
    diff = [k for k in set(a) | set(b) if a[k] != b[k]]
    print("run to run, dump 1 against dump 2: %d differ (%.4f %% of the counts)"
          % (len(diff), 100 * sum(abs(a[k] - b[k]) for k in diff) / max(1, sum(a.values()))))
EOF
# The profiles and the copy are large (cc1: 20 MB a profile, 166 MB the copy).
[ "${KEEP:-0}" = 1 ] || rm -rf "$out"/*.fdata "$cache"
log "results in $out"

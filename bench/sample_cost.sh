#!/usr/bin/env bash
# The default round's sampling cost, measured on the workload itself, and
# what the cost limit does to the layout, in one run: fe in process
# (bench/out/fe/fe-nopie-ocolos, 2 worker threads, one round after AFTER
# seconds, then 6 A/B pairs of 1.5 s). Two sides alternate, RUNS times each
# (ABBA: the order swapped every other run):
#   limit    the library's default round: a converging window under the
#            default cost limit (2 % of the sampled threads' CPU time)
#   nolimit  the same with --ocolos-max-overhead-permille 1000 (no limit:
#            10 kHz, as the default was before the limit)
# Per run it prints the window (seconds, samples, the final rate, the
# library's own cost estimate), the workers' measured throughput during the
# window against the AFTER seconds before it (median of the per-second
# figures, the first 2 s of warm-up left out): "loss" is 1 - during/before,
# and the C1/C0 median of the A/B pairs.
#
# With WORKLOAD=sqlite the program is SQLite's speedtest1 (one thread,
# bench/out/sqlite/speedtest1-nopie, `--memdb --size 50`, PASSES passes of
# the `main` test set) with bench/autoself.c preloaded (nolimit:
# OCOLOS_MAX_OVERHEAD=1000); throughput is passes per second from the
# program's own per-test times: before the window, during it, and after
# the round (C1, against before: one process, so drift counts).
#
#   bench/sample_cost.sh
#   env: RUNS (runs per side, default 2), AFTER (seconds before the round,
#        default 12), WORKLOAD (fe or sqlite, default fe), PASSES (sqlite:
#        default 300, ~0.85 s each here)
# needs bench/out/fe/fe-nopie-ocolos (bench/build_frontend.sh), or for
# sqlite bench/out/sqlite/speedtest1-nopie and autoself.so
# (bench/build_sqlite.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-2} AFTER=${AFTER:-12} WORKLOAD=${WORKLOAD:-fe} PASSES=${PASSES:-300}
fe=$here/out/fe/fe-nopie-ocolos
sq=$here/out/sqlite/speedtest1-nopie
case $WORKLOAD in
fe) [ -x "$fe" ] || { echo "sample_cost: $fe missing: run bench/build_frontend.sh" >&2; exit 2; } ;;
sqlite) [ -x "$sq" ] && [ -f "${sq%/*}/autoself.so" ] ||
	{ echo "sample_cost: $sq or autoself.so missing: run bench/build_sqlite.sh" >&2; exit 2; } ;;
*) echo "sample_cost: WORKLOAD is fe or sqlite" >&2; exit 2 ;;
esac
out=$here/out/sample_cost.$WORKLOAD.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
# speedtest1's passes: start (sum of the test times before it, ~ seconds
# since start) and duration of each `main` pass after the first; the
# autoself line says when the round started and ended.
summarize_sqlite() { # log side run
	python3 - "$@" "$AFTER" <<'PY'
import re, statistics, sys
log, side, run, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
test = re.compile(r"^\s*(\d+) - .*?\s([\d.]+)s\s*$")
passes, cur, t, o = [], None, 0.0, {}
for line in open(log + ".err", errors="replace"):  # autoself's line
    if line.startswith("ocolos rc="):
        o = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
for line in open(log, errors="replace"):
    if "Begin testset" in line:
        if cur: passes.append(cur)
        cur = [t, 0.0]
    elif (m := test.match(line)):
        t += float(m.group(2))
        if cur and m.group(1) != "999":
            cur[1] += float(m.group(2))
if cur: passes.append(cur)
passes = passes[1:]
if o.get("rc") != "0":
    sys.exit("%s run %d: round failed: %s" % (side, run, o))
t0 = float(o["t_start"]) + 1; t1 = t0 - 1 + int(o["profile_ns"]) / 1e9; td = float(o["t_done"])
pre = [d for s, d in passes if s > 2 and s + d <= t0 - 1]
dur = [d for s, d in passes if s > t0 and s + d <= t1]
post = [d for s, d in passes if s > td]
if not pre or not dur or not post:
    sys.exit("%s run %d: too few passes (%d before, %d during, %d after)" % (side, run, len(pre), len(dur), len(post)))
b, d, a = (statistics.median(x) for x in (pre, dur, post))
print("%-8s run %d: window %6.1f s, %7s samples, %5s Hz at the end, estimate %5.2f %%, pass "
      "before %.3f s during %.3f s (n=%d): loss %+.2f %%, after/before %.3f (n=%d)"
      % (side, run, int(o["profile_ns"]) / 1e9, o["samples"], o["sample_hz_final"],
         int(o["sample_overhead_ppm"]) / 1e4, b, d, len(dur), (1 - b / d) * 100, b / a, len(post)))
PY
}
summarize() { # log side run
	awk -v side="$2" -v run="$3" -v after="$AFTER" '
	function median(a, n,   i, j, t) {
		for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/^tput / { split($2, a, "="); split($4, b, "="); t[++nt] = a[2]; v[nt] = b[2] }
	/^ocolos rc=/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); o[kv[1]] = kv[2] } }
	/^ab done/ { split($0, m, "median="); split(m[2], mm, " "); ab = mm[1] }
	END {
		if (o["rc"] != 0) { printf "%s run %d: round failed\n", side, run; exit 1 }
		ws = o["t_start"] + 1; we = o["t_start"] + o["profile_ns"] / 1e9
		for (i = 1; i <= nt; i++) {
			if (t[i] > 2 && t[i] <= after) pre[++np] = v[i]
			else if (t[i] > ws + 1 && t[i] <= we) dur[++nd] = v[i]
		}
		if (!np || !nd) { printf "%s run %d: window too short to measure\n", side, run; exit 1 }
		bm = median(pre, np); d = median(dur, nd)
		printf "%-8s run %d: window %6.1f s, %7d samples, %5d Hz at the end, estimate %5.2f %%, " \
		       "throughput before %.0f during %.0f (n=%d): loss %+.2f %%, C1/C0 %s\n",
		       side, run, o["profile_ns"] / 1e9, o["samples"], o["sample_hz_final"],
		       o["sample_overhead_ppm"] / 1e4, bm, d, nd, (1 - d / bm) * 100, ab
	}' "$1"
}
for ((r = 1; r <= RUNS; r++)); do
	order="limit nolimit"; [ $((r % 2)) = 0 ] && order="nolimit limit" # ABBA
	for side in $order; do
		log=$out/$side.$r.log
		if [ "$WORKLOAD" = sqlite ]; then
			sets=$(printf 'main,%.0s' $(seq "$PASSES")); sets=${sets%,}
			lim=; [ "$side" = nolimit ] && lim=1000
			LD_PRELOAD=${sq%/*}/autoself.so OCOLOS_AFTER=$AFTER OCOLOS_MAX_OVERHEAD=$lim \
				"$sq" --memdb --size 50 --testset "$sets" >"$log" 2>"$log.err" || true
			summarize_sqlite "$log" "$side" "$r" | tee -a "$out/summary.txt" || true
			continue
		fi
		extra=()
		[ "$side" = nolimit ] && extra=(--ocolos-max-overhead-permille 1000)
		"$fe" --duration 900 --online-after "$AFTER" --ab-pairs 6 --ab-secs 1.5 "${extra[@]}" \
			>"$log" 2>&1 || true
		grep -q "check end=.* ok=1" "$log" || { echo "sample_cost: $log: checksum failed" >&2; exit 1; }
		summarize "$log" "$side" "$r" | tee -a "$out/summary.txt" || true
	done
done
echo "logs: $out"

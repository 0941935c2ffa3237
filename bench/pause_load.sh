#!/usr/bin/env bash
# The in-process pause on a busy machine, with and without the stopping
# thread's real-time boost (lib/proc/boost.c), in one run: fe in process
# (bench/out/fe/fe-nopie-ocolos, 2 worker threads), continuous rounds, while
# LOAD busy loops of other processes compete for the CPUs. The two sides
# alternate, RUNS times each (ABBA: the order swapped every other run):
#   boost     as the library runs by default (root here: allowed)
#   noboost   the same process started without CAP_SYS_NICE (setpriv
#             --bounding-set -sys_nice), so sched_setscheduler(SCHED_FIFO)
#             fails and the stop runs as a normal thread, as before the
#             boost existed
# Prints each round's pause and, per side, the median, IQR and max.
#
#   bench/pause_load.sh
#   env: RUNS (runs per side, default 2), ROUNDS (rounds per run, default
#        10), LOAD (busy loops, default 2), PROFILE_MS (each round's window,
#        default 1000: the pause, not the layout, is measured)
# needs bench/out/fe/fe-nopie-ocolos (bench/build_frontend.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fe=$here/out/fe/fe-nopie-ocolos
[ -x "$fe" ] || { echo "pause_load: $fe missing: run bench/build_frontend.sh" >&2; exit 2; }
RUNS=${RUNS:-2} ROUNDS=${ROUNDS:-10} LOAD=${LOAD:-2} PROFILE_MS=${PROFILE_MS:-1000}
command -v setpriv >/dev/null || { echo "pause_load: needs setpriv (util-linux)" >&2; exit 2; }
chrt -f 1 true 2>/dev/null ||
	{ echo "pause_load: SCHED_FIFO not allowed here: boost would not boost" >&2; exit 2; }
setpriv --bounding-set -sys_nice chrt -f 1 true 2>/dev/null &&
	{ echo "pause_load: real-time allowed without CAP_SYS_NICE (RLIMIT_RTPRIO?): noboost would boost" >&2; exit 2; }
out=$here/out/pause_load.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
hogs=()
cleanup() { for h in "${hogs[@]}"; do kill "$h" 2>/dev/null || true; done; }
trap cleanup EXIT
for ((i = 0; i < LOAD; i++)); do
	sh -c 'while :; do :; done' & hogs+=($!)
done
# --duration only bounds a run: one A/B pair after the rounds ends it.
dur=$((ROUNDS * 60 + 60))
for ((r = 1; r <= RUNS; r++)); do
	order="boost noboost"; [ $((r % 2)) = 0 ] && order="noboost boost" # ABBA
	for side in $order; do
		pre=()
		[ $side = noboost ] && pre=(setpriv --bounding-set -sys_nice)
		log=$out/$side.$r.log
		"${pre[@]}" "$fe" --threads 2 --duration "$dur" --online-after 3 \
			--online-rounds "$ROUNDS" --ocolos-profile-ms "$PROFILE_MS" \
			--ab-pairs 1 --ab-secs 0.1 > "$log" 2>&1 || true
		n=$(grep -c '^ocolos rc=0 ' "$log" || true)
		echo "run $r $side: $n of $ROUNDS rounds ok, load $(cut -d' ' -f1 /proc/loadavg)"
	done
done
python3 - "$out" <<'PY'
import glob, re, statistics, sys
out = sys.argv[1]
for side in ("boost", "noboost"):
    p = []
    for f in sorted(glob.glob(f"{out}/{side}.*.log")):
        for line in open(f):
            m = re.match(r"ocolos rc=0 .*pause_ns=(\d+)", line)
            if m:
                p.append(int(m.group(1)) / 1e6)
    if not p:
        print(f"{side}: no rounds"); continue
    q = statistics.quantiles(p, n=4) if len(p) > 1 else [p[0]] * 3
    print(f"{side}: {len(p)} rounds, pause median {statistics.median(p):.2f} ms "
          f"(IQR {q[0]:.2f}-{q[2]:.2f}), max {max(p):.2f} ms; all: "
          + " ".join(f"{x:.1f}" for x in p))
PY
echo "pause_load: logs in $out"

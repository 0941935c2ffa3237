#!/usr/bin/env bash
# One BOLT per build (issue 16, item 3): what an artifact saves a fleet.
# Starts N instances (default 4) of the front-end benchmark
# (bench/build_frontend.sh), runs one ocolos-agent round with
# --artifact-out on the first, then --artifact-in on the others, and prints
# per instance the agent's CPU time and peak RSS (from /usr/bin/time: they
# include llvm-bolt, the agent's child, which the agent waits for) and the
# time to optimized code (the agent's wall time, and the round's round_ms).
# The difference between the first row and the others is what the
# artifact saves each further instance: the BOLT run and the sampling window.
#
#   bench/fleet_artifact.sh [BUILD_DIR]      (default: build)
# environment:
#   FE_BIN        the workload (default bench/out/fe/fe-nopie)
#   FLEET_N       instances (default 4)
#   FLEET_PROFILE sampling window of the first round, seconds (default 4)
#   FLEET_WARMUP  seconds before the first round (default 2)
#
# Each instance runs one thread (--threads 1) for FLEET_DURATION seconds
# (default 150: the first round, BOLT included, must end before it; the
# workload takes no signal that ends it with a checksum), then its end
# checksum must be ok; the script fails if a round fails.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
agent=$build/tools/ocolos-agent
fe=${FE_BIN:-$root/bench/out/fe/fe-nopie}
n=${FLEET_N:-4}
profile=${FLEET_PROFILE:-4}
warmup=${FLEET_WARMUP:-2}
duration=${FLEET_DURATION:-150}
[[ -x $agent ]] || { echo "no $agent: build libocolos first" >&2; exit 1; }
[[ -x $fe ]] || { echo "no $fe: run bench/build_frontend.sh first (or set FE_BIN)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

# The artifact is code: it goes in a private directory (docs/api.md, "Artifacts").
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleet_artifact.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

for ((i = 0; i < n; i++)); do
	"$fe" --duration "$duration" --threads 1 >"$tmp/fe$i.out" 2>&1 &
	pids+=($!)
done
sleep "$warmup"

field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }
echo "$(uname -m), $(nproc) CPUs; $fe ($(stat -c %s "$fe") bytes), $n instances"
printf '%-9s %-13s %9s %9s %10s %10s %10s %9s %8s\n' instance mode cpu_s maxrss_MiB wall_s \
	round_ms profile_ms bolt_ms moved
for ((i = 0; i < n; i++)); do
	if ((i == 0)); then
		mode=artifact-out
		args=(--profile "$profile" --artifact-out "$tmp/fe.art")
	else
		mode=artifact-in
		args=(--artifact-in "$tmp/fe.art")
	fi
	t0=$(date +%s.%N)
	/usr/bin/time -f '%U %S %M' -o "$tmp/time$i" \
		"$agent" --json -q --pid "${pids[$i]}" "${args[@]}" >"$tmp/json$i" 2>"$tmp/err$i" || {
		cat "$tmp/json$i" "$tmp/err$i" >&2
		exit 1
	}
	t1=$(date +%s.%N)
	grep -q '"ok":true' "$tmp/json$i" || { cat "$tmp/json$i" >&2; exit 1; }
	read -r u s m <"$tmp/time$i"
	printf '%-9s %-13s %9.2f %9.1f %10.2f %10s %10s %9s %8s\n' "$i" "$mode" \
		"$(echo "$u + $s" | bc)" "$(echo "scale=1; $m / 1024" | bc)" "$(echo "$t1 - $t0" | bc)" \
		"$(field round_ms "$tmp/json$i")" "$(field profile_ms "$tmp/json$i")" \
		"$(field bolt_ms "$tmp/json$i")" \
		"$(field functions_moved "$tmp/json$i")" | tee -a "$tmp/rows"
done
echo "artifact: $(stat -c %s "$tmp/fe.art") bytes"
# Saved per further instance: the first row's CPU and wall time less the
# mean of the others'.
awk 'NR == 1 { c0 = $3; w0 = $5; r0 = $4 } NR > 1 { c += $3; w += $5; r += $4; k++ }
     END { if (k) printf "saved per further instance: %.2f s CPU, %.2f s to optimized code; " \
		"peak RSS %.1f MiB (BOLT) vs %.1f MiB\n", c0 - c / k, w0 - w / k, r0, r / k }' \
	"$tmp/rows"
# The end checksum: the optimized code computed what the original does.
echo "waiting for the instances to end (--duration $duration)..."
for ((i = 0; i < n; i++)); do
	wait "${pids[$i]}" || { echo "instance $i exited $?" >&2; tail -3 "$tmp/fe$i.out" >&2; exit 1; }
	grep -q 'check end=.* ok=1' "$tmp/fe$i.out" || {
		echo "instance $i: checksum mismatch" >&2; tail -3 "$tmp/fe$i.out" >&2; exit 1; }
done
pids=()
echo "all $n instances ended with their checksum ok"

#!/usr/bin/env bash
# Fleet speed, measured (issue 16, "Measure"): (a) is a profile merged from
# N instances x SHORT s as good as one instance x LONG s, and (b) do
# instances optimized from an artifact (--artifact-in: no sampling, no BOLT)
# run as fast as the instance that ran BOLT?
#
#   bench/fleet_ab.sh [BUILD_DIR]      (default: build)
# environment:
#   FE_BIN         the workload (default bench/out/fe/fe-nopie, non-PIE, --emit-relocs)
#   FLEET_N        instances (default 4), one worker thread each
#   FLEET_SHORT    sampling window per instance for the merged profile (default 1)
#   FLEET_LONG     sampling window of the single-instance profile (default 4)
#   FLEET_REPS     (a): alternations merged/long on instance 0 (default 4)
#   FLEET_REPS_B   (b): artifact-in rounds per instance (default 2)
#   FLEET_REPS_C   (b) on one process: alternations of a BOLT round and an
#                  artifact-in round on instance 0 (default 0: off; not yet run to the end)
#   FLEET_CPU_REPS (a) again, per CPU second (step 6): alternations (default 0: off)
#   FLEET_CPU_WIN  its window, seconds (default 3)
#   FLEET_CPU_B    (b) per CPU second (step 7): rounds (default 0: off)
#   FLEET_ONLY_CPU 1: steps 1, 2, 6 and 7 only
#   FLEET_OUT      where the raw JSON lines and the summary go
#                  (default bench/out/fleet_ab)
#
# Speed is the agent's benefit check (--work-cmd; docs/api.md, "The benefit
# check"): after each round the optimized code (C1) and the original (C0)
# alternate in ABBA windows (5 pairs of 300 ms) on the same process, and the
# round reports the median of the pair ratios C1/C0 as benefit_ratio. The
# work counter is the instance's own output: fe prints the operations of
# each --interval 0.01 s, the work command sums them. --benefit-min 0.001:
# the check measures, it never reverts.
#
# Steps, all on the same N running instances:
#  1. profiles: on each instance a SHORT s window exported
#     (--export-profile), and a LONG s window on instance 0. These rounds
#     only sample: --bolt is a stub that answers llvm-bolt's version probe
#     and refuses to run, so the round fails at its optimize stage after the
#     export (the export is written at the end of the profile stage) and
#     nothing is mapped.
#  2. two BOLT rounds on instance 0, each with --artifact-out and the check:
#     --profile-from all SHORT profiles (merged), then --profile-from the
#     LONG one; each reverted after.
#  3. (a) on instance 0, FLEET_REPS times, --artifact-in merged then long
#     (order alternating: ABBA), each with the check, each reverted.
#  4. (b) every instance, FLEET_REPS_B times: --artifact-in merged with the
#     check, reverted; the BOLT instance's own ratio is step 2's first row.
#  5. (b) on one process: on instance 0, FLEET_REPS_C times, a BOLT round
#     from the merged profiles and an --artifact-in round of the merged
#     artifact (order alternating), each with the check, each reverted:
#     the same code, applied the two ways, on the same process.
#  6. (a) per CPU second (FLEET_CPU_REPS > 0): on a machine this loaded the
#     wall-clock rate mostly measures the instance's share of the CPUs. Here
#     the rate is operations per second of CPU time of the instance (the sum
#     of its threads' run time, /proc/PID/task/*/schedstat, in ns; the
#     worker never blocks), over windows of FLEET_CPU_WIN s: C0, merged C1,
#     C0, long C1, C0, ... (order alternating), the optimized code applied by
#     --artifact-in and taken off by --revert between windows (no window
#     spans a round). Each C1 window's ratio is against the mean of the C0
#     windows either side of it.
#  7. (b) per CPU second (FLEET_CPU_B > 0), the same windows: on instance 0
#     a BOLT round from the merged profiles (the instance that runs BOLT)
#     and, alternating with it, --artifact-in of the merged artifact; on
#     every other instance --artifact-in; each C1 window between two C0
#     windows of the same instance.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
agent=$build/tools/ocolos-agent
fe=${FE_BIN:-$root/bench/out/fe/fe-nopie}
n=${FLEET_N:-4}
short=${FLEET_SHORT:-1}
long=${FLEET_LONG:-4}
reps=${FLEET_REPS:-4}
reps_b=${FLEET_REPS_B:-2}
reps_c=${FLEET_REPS_C:-0}
cpu_reps=${FLEET_CPU_REPS:-0}
cpu_win=${FLEET_CPU_WIN:-3}
cpu_b=${FLEET_CPU_B:-0}
only_cpu=${FLEET_ONLY_CPU:-0}
out=${FLEET_OUT:-$root/bench/out/fleet_ab}
[[ -x $agent ]] || { echo "no $agent: build libocolos first" >&2; exit 1; }
[[ -x $fe ]] || { echo "no $fe: run bench/build_frontend.sh first (or set FE_BIN)" >&2; exit 1; }
mkdir -p "$out"

# Artifacts are code: a private directory (docs/api.md, "Artifacts").
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleet_ab.XXXXXX")
chmod 700 "$tmp"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# The profile-only llvm-bolt: probes go to the real one, a run fails.
realbolt=$(ls -d /usr/lib/llvm-*/bin/llvm-bolt 2>/dev/null | sort -V | tail -1)
realbolt=${realbolt:-$(command -v llvm-bolt)}
cat >"$tmp/nobolt" <<EOF
#!/bin/sh
for a in "\$@"; do case \$a in --version|-version|--help*|-help*) exec "$realbolt" "\$@";; esac; done
echo "fleet_ab: profile-only round, no BOLT run" >&2
exit 1
EOF
chmod 700 "$tmp/nobolt"

for ((i = 0; i < n; i++)); do
	"$fe" --duration 100000 --threads 1 --interval 0.01 >"$tmp/fe$i.out" 2>&1 &
	pids+=($!)
done
sleep 3

workcmd() { echo "awk '/^tput/{s+=substr(\$3,5)} END{printf \"%.0f\\n\", s}' $tmp/fe$1.out"; }
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
rows=$out/rows.txt
: >"$rows"
: >"$out/rounds.jsonl"
echo "$(uname -m), $(nproc) CPUs, load $(load); $fe ($(stat -c %s "$fe") bytes), $n instances x 1 thread"
printf '%-10s %4s %-9s %8s %9s %6s %9s %9s %7s %s\n' step inst sampler samples profile_ms moved bolt_ms round_ms ratio load
# agent STEP INSTANCE MUST_SUCCEED ARGS...: one round, one row
agent() {
	local step=$1 i=$2 must=$3
	shift 3
	local j=$tmp/j.$step.$i
	"$agent" --json -q --pid "${pids[$i]}" "$@" >"$j" 2>"$tmp/err" || true
	cat "$j" >>"$out/rounds.jsonl"
	if ((must)) && ! grep -q '"ok":true' "$j"; then
		echo "round $step on instance $i failed:" >&2
		cat "$j" "$tmp/err" >&2
		exit 1
	fi
	local r
	r=$(field benefit_ratio "$j")
	printf '%-10s %4s %-9s %8s %9s %6s %9s %9s %7s %s\n' "$step" "$i" \
		"$(field sampler "$j" | tr -d '"')" "$(field samples_in_binary "$j")" \
		"$(field profile_ms "$j")" "$(field functions_moved "$j")" "$(field bolt_ms "$j")" \
		"$(field round_ms "$j")" "${r:--}" "$(load)" | tee -a "$rows"
}
# A revert unmaps only the code no thread is in; an --artifact-in round
# needs none mapped: revert again (up to 5 times) until none is.
revert() {
	local k
	for ((k = 0; k < 5; k++)); do
		"$agent" --json -q --pid "${pids[$1]}" --revert >"$tmp/rv" 2>&1 ||
			{ echo "revert of instance $1 failed" >&2; cat "$tmp/rv" >&2; exit 1; }
		grep -q '"versions_mapped":0' "$tmp/rv" && return 0
		echo "instance $1: a version still mapped after a revert, again" >&2
		sleep 0.2
	done
	echo "instance $1: optimized code still mapped after 5 reverts" >&2
	cat "$tmp/rv" >&2
	exit 1
}
check=(--benefit-min 0.001)

# 1. profiles
merged=()
for ((i = 0; i < n; i++)); do
	agent "short" "$i" 0 --profile "$short" --export-profile "$tmp/short$i.gz" --bolt "$tmp/nobolt"
	[[ -s $tmp/short$i.gz ]] || { echo "no profile exported from instance $i" >&2; exit 1; }
	merged+=(--profile-from "$tmp/short$i.gz")
done
agent "long" 0 0 --profile "$long" --export-profile "$tmp/long.gz" --bolt "$tmp/nobolt"
[[ -s $tmp/long.gz ]] || { echo "no long profile exported" >&2; exit 1; }

# 2. the BOLT rounds, their artifacts
agent "bolt-merged" 0 1 "${merged[@]}" --artifact-out "$tmp/merged.art" --work-cmd "$(workcmd 0)" "${check[@]}"
revert 0
agent "bolt-long" 0 1 --profile-from "$tmp/long.gz" --artifact-out "$tmp/long.art" --work-cmd "$(workcmd 0)" "${check[@]}"
revert 0

# 3. (a) merged vs long, alternating, on instance 0
((only_cpu)) && reps=0 reps_b=0 reps_c=0
for ((r = 0; r < reps; r++)); do
	if ((r % 2 == 0)); then order=(merged long); else order=(long merged); fi
	for v in "${order[@]}"; do
		agent "a-$v" 0 1 --artifact-in "$tmp/$v.art" --work-cmd "$(workcmd 0)" "${check[@]}"
		revert 0
	done
done

# 4. (b) every instance from the merged artifact
for ((r = 0; r < reps_b; r++)); do
	for ((i = 0; i < n; i++)); do
		agent "b-art" "$i" 1 --artifact-in "$tmp/merged.art" --work-cmd "$(workcmd "$i")" "${check[@]}"
		revert "$i"
	done
done

# 5. (b) on one process: BOLT round vs artifact-in, alternating
for ((r = 0; r < reps_c; r++)); do
	if ((r % 2 == 0)); then order=(bolt art); else order=(art bolt); fi
	for v in "${order[@]}"; do
		if [[ $v == bolt ]]; then
			agent "c-bolt" 0 1 "${merged[@]}" --work-cmd "$(workcmd 0)" "${check[@]}"
		else
			agent "c-art" 0 1 --artifact-in "$tmp/merged.art" --work-cmd "$(workcmd 0)" "${check[@]}"
		fi
		revert 0
	done
done

# 6. (a) per CPU second
# counters I: "ops cpu_ns wall_ns" of instance I now
counters() {
	local ops cpu
	cpu=$(cat /proc/"${pids[$1]}"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }')
	ops=$(awk '/^tput/ { s += substr($3, 5) } END { printf "%.0f", s }' "$tmp/fe$1.out")
	echo "$ops $cpu $(date +%s%N)"
}
# window KIND [I [TAG]]: one window on instance I (0), a row
# "TAG KIND ops/cpu_s ops/wall_s load" (TAG: cpu)
window() {
	local a b i=${2:-0} tag=${3:-cpu}
	a=$(counters "$i")
	sleep "$cpu_win"
	b=$(counters "$i")
	echo "$a $b" | awk -v t="$tag" -v k="$1" -v l="$(load)" '{ printf "%s %-7s %12.0f %12.0f %s\n", t, k,
		($4 - $1) / (($5 - $2) / 1e9), ($4 - $1) / (($6 - $3) / 1e9), l }' | tee -a "$rows"
}
if ((cpu_reps)); then
	echo "step 6: instance 0, ${cpu_win} s windows; kind ops_per_cpu_s ops_per_wall_s load"
	window c0
	for ((r = 0; r < cpu_reps; r++)); do
		if ((r % 2 == 0)); then order=(merged long); else order=(long merged); fi
		for v in "${order[@]}"; do
			"$agent" --json -q --pid "${pids[0]}" --artifact-in "$tmp/$v.art" >"$tmp/j6" 2>&1 &&
				grep -q '"ok":true' "$tmp/j6" || { echo "artifact-in failed" >&2; cat "$tmp/j6" >&2; exit 1; }
			cat "$tmp/j6" >>"$out/rounds.jsonl"
			window "$v"
			revert 0
			window c0
		done
	done
fi
# 7. (b) per CPU second
for ((r = 0; r < cpu_b; r++)); do
	((r == 0)) && echo "step 7: ${cpu_win} s windows; instance kind ops_per_cpu_s ops_per_wall_s load"
	if ((r % 2 == 0)); then order=(bolt art); else order=(art bolt); fi
	for v in "${order[@]}"; do
		((r == 0)) && [[ $v == "${order[0]}" ]] && window c0 0 cpub0
		if [[ $v == bolt ]]; then a7=("${merged[@]}"); else a7=(--artifact-in "$tmp/merged.art"); fi
		"$agent" --json -q --pid "${pids[0]}" "${a7[@]}" >"$tmp/j7" 2>&1 &&
			grep -q '"ok":true' "$tmp/j7" || { echo "round failed" >&2; cat "$tmp/j7" >&2; exit 1; }
		cat "$tmp/j7" >>"$out/rounds.jsonl"
		window "$v" 0 cpub0
		revert 0
		window c0 0 cpub0
	done
	for ((i = 1; i < n; i++)); do
		((r == 0)) && window c0 "$i" "cpub$i"
		"$agent" --json -q --pid "${pids[$i]}" --artifact-in "$tmp/merged.art" >"$tmp/j7" 2>&1 &&
			grep -q '"ok":true' "$tmp/j7" || { echo "round failed" >&2; cat "$tmp/j7" >&2; exit 1; }
		cat "$tmp/j7" >>"$out/rounds.jsonl"
		window art "$i" "cpub$i"
		revert "$i"
		window c0 "$i" "cpub$i"
	done
done
echo "load at the end: $(load)"

# Summary: median, quartiles, min-max of the benefit ratios per group.
summ() {
	sort -g | awk -v name="$1" '{ v[NR] = $1 }
	function q(p,   h, l) { h = 1 + (NR - 1) * p; l = int(h); return v[l] + (h - l) * (v[l + (l < NR)] - v[l]) }
	END { if (NR) printf "%-34s n=%2d median %.3f  IQR %.3f-%.3f  range %.3f-%.3f\n", name, NR, q(0.5), q(0.25), q(0.75), v[1], v[NR] }'
}
{
	echo "(a) instance 0, C1/C0 per round (median of 5 ABBA pairs of 300 ms each):"
	awk '$1 == "a-merged" { print $9 }' "$rows" | summ "  merged ${n} x ${short} s (artifact-in)"
	awk '$1 == "a-long" { print $9 }' "$rows" | summ "  single 1 x ${long} s (artifact-in)"
	awk '$1 == "a-merged" || $1 == "a-long" { r[$1] = r[$1] " " $9 }
	END { split(r["a-merged"], m); split(r["a-long"], l)
		for (k = 1; k in m && k in l; k++) print m[k] / l[k] }' "$rows" | summ "  merged/single, per alternation"
	echo "(b) C1/C0 per round, the merged artifact:"
	awk '$1 == "bolt-merged" { print $9 }' "$rows" | summ "  instance 0, the BOLT round"
	for ((i = 0; i < n; i++)); do
		awk -v i="$i" '$1 == "b-art" && $2 == i { print $9 }' "$rows" | summ "  instance $i, artifact-in"
	done
	awk '$1 == "b-art" && $2 != 0 { print $9 }' "$rows" | summ "  instances 1..$((n - 1)), artifact-in"
	echo "(b) on instance 0 alone, alternating: the merged profile's code applied by"
	awk '$1 == "c-bolt" { print $9 }' "$rows" | summ "  a BOLT round"
	awk '$1 == "c-art" { print $9 }' "$rows" | summ "  --artifact-in"
	if ((cpu_reps)); then
		# the C1 windows against the mean of their neighbouring C0 windows
		for col in 3 4; do
			[[ $col == 3 ]] && unit="per CPU s" || unit="per wall s"
			for v in merged long; do
				awk -v v="$v" -v c="$col" '$1 == "cpu" { k[++n] = $2; x[n] = $c }
				END { for (i = 2; i < n; i++) if (k[i] == v) print x[i] / ((x[i - 1] + x[i + 1]) / 2) }' \
					"$rows" | summ "  step 6, $v C1/C0, $unit"
			done
			awk -v c="$col" '$1 == "cpu" { k[++n] = $2; x[n] = $c }
			END { for (i = 2; i < n; i++) if (k[i] != "c0") { r = x[i] / ((x[i - 1] + x[i + 1]) / 2)
				if (k[i] == "merged") m[++a] = r; else l[++b] = r }
				for (i = 1; i <= a && i <= b; i++) print m[i] / l[i] }' "$rows" |
				summ "  step 6, merged/single, $unit"
		done
	fi
	if ((cpu_b)); then
		# per instance: each C1 window against its instance's C0 windows either side
		nb() { awk -v t="$1" -v v="$2" -v c="$3" '$1 == t { k[++n] = $2; x[n] = $c }
			END { for (i = 2; i < n; i++) if (k[i] == v) print x[i] / ((x[i - 1] + x[i + 1]) / 2) }' "$rows"; }
		for col in 3 4; do
			[[ $col == 3 ]] && unit="per CPU s" || unit="per wall s"
			nb cpub0 bolt $col | summ "  step 7, inst 0 BOLT round, $unit"
			nb cpub0 art $col | summ "  step 7, inst 0 artifact-in, $unit"
			for ((i = 1; i < n; i++)); do nb "cpub$i" art $col; done | summ "  step 7, inst 1..$((n - 1)) artifact-in, $unit"
		done
	fi
} | tee "$out/summary.txt"

#!/usr/bin/env bash
# The main job: install dependencies, build libocolos, and optimize running
# programs while they work, printing throughput on the original and on the
# optimized code, and the pause.
#
#  1. A generated front-end-bound workload (bench/gen_frontend.py: 3,000
#     functions, ~5 MiB of code, hot code scattered among cold code) that
#     links libocolos and calls ocolos_optimize_self() after a warm-up. Its
#     speed is then compared in the same process, switching between the
#     optimized and the original code (ocolos_revert_self/reapply_self), so
#     the machine's drift cancels out.
#  2. examples/self_tuning_server: a small key-value request loop (not
#     front-end bound: expect no gain; it shows the API).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)"

out=build/demo-fe
echo "== building the generated workload (3,000 functions; about 30 s) =="
FE_OUT=$out FE_PIE=nopie bench/build_frontend.sh build --functions 3000 >/dev/null 2>&1
echo "== running it on 2 threads; libocolos optimizes it after 3 s =="
echo "   (default options: it samples until the profile converges, at a rate that"
echo "   costs the workers at most 2 % of their CPU: on a VM without a PMU that is"
echo "   about 1 kHz; this program keeps about a megabyte of code hot, so the window"
echo "   runs to its maximum: 193 s on this project's VM)"
"$out/fe-nopie-ocolos" --duration 900 --online-after 3 --ab-pairs 6 --ab-secs 1.5 \
	>"$out/run.log" 2>&1 || true
awk '
/^ocolos rc=/ {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	if (v["rc"] != 0) { print "optimization failed: " $0; exit 1 }
	printf "optimized while running: %d functions moved, C1 %.1f MiB, %d call sites + %d pointer slots redirected\n",
		v["functions_moved"], v["c1_bytes"] / 1048576, v["call_sites_patched"], v["pointer_slots_patched"]
	printf "sampling: %.1f s, %d samples, %d Hz at the end, estimated cost %.2f %% of the workers\047 CPU\n",
		v["profile_ns"] / 1e9, v["samples"], v["sample_hz_final"], v["sample_overhead_ppm"] / 1e4
	printf "round: BOLT %.1f s, pause %.2f ms (%d threads stopped)\n",
		v["bolt_ns"] / 1e9, v["pause_ns"] / 1e6, v["threads_stopped"]
}
/^ab pair=/ {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); w[kv[1]] = kv[2] }
	c0 += w["c0_ops_per_s"]; c1 += w["c1_ops_per_s"]; n++
}
/^ab done/ { split($0, a, "median="); split(a[2], m, " ") ; median = m[1] }
/^check end/ { ok = ($0 ~ /ok=1/) }
END {
	if (n) {
		printf "throughput on the original code:  %.0f ops/s\n", c0 / n
		printf "throughput on the optimized code: %.0f ops/s\n", c1 / n
		printf "speedup, median of %d paired windows in the same process: %.2fx\n", n, median
	}
	print ok ? "results checked: identical to the original code" : "RESULT CHECK FAILED"
}' "$out/run.log"

echo
echo "== examples/self_tuning_server: a key-value request loop on 2 threads =="
./build/examples/self_tuning_server 2 2 3

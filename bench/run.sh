#!/usr/bin/env bash
# Build the workloads and run every benchmark of docs/benchmarks.md.
#
# usage: bench/run.sh [BUILD_DIR] [full|smoke]
#   BUILD_DIR  libocolos build directory (default: build). Without
#              BUILD_DIR/libocolos.so the online rows are skipped.
#   full       (default) 20,000-function program + SQLite, 5 reps, the
#              samples-vs-speedup curve and callgrind (about 45 minutes
#              on 2 cores)
#   smoke      2,000-function program, 2 short reps (a few minutes): checks
#              that everything runs, not that it is faster
# Markdown results go to stdout and bench/out/results/summary-<date>.md,
# JSON to bench/out/results/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
mode=${2:-full}
cd "$root"

need=()
command -v perf >/dev/null || need+=(linux-perf)
command -v valgrind >/dev/null || need+=(valgrind)
[[ -x /usr/lib/llvm-22/bin/llvm-bolt ]] || need+=(bolt-22)
if ((${#need[@]})); then
	echo "run.sh: installing ${need[*]}" >&2
	if [[ $(id -u) == 0 ]]; then
		apt-get install -y -q "${need[@]}"
	else
		sudo apt-get install -y -q "${need[@]}"
	fi
fi

mkdir -p bench/out/results
summary="bench/out/results/summary-$(date +%Y%m%d-%H%M%S).md"
drv=(python3 bench/driver.py)

case $mode in
smoke)
	FE_OUT=bench/out/fe-small bench/build_frontend.sh "$build" --functions 2000
	fe=bench/out/fe-small/fe-nopie
	{
		"${drv[@]}" run --workload fe --bin "$fe" --reps 2 --secs 4 \
			--online-secs 30 --profile-secs 3
		"${drv[@]}" curve --workload fe --bin "$fe" --reps 1 --secs 3 \
			--profile-secs 3 --samples 1000,10000
		"${drv[@]}" cachesim --workload fe --bin "$fe" --cachesim-ops 20000 \
			--profile-secs 3
	} | tee "$summary"
	;;
full)
	FE_PIE=both bench/build_frontend.sh "$build"
	bench/build_sqlite.sh "$build"
	{
		"${drv[@]}" run --workload fe --reps 5
		"${drv[@]}" run --workload fe --bin bench/out/fe/fe-pie --reps 5
		"${drv[@]}" run --workload sqlite --reps 5
		"${drv[@]}" curve --workload fe --reps 3
		"${drv[@]}" cachesim --workload fe
		"${drv[@]}" cachesim --workload sqlite
	} | tee "$summary"
	;;
*)
	echo "usage: bench/run.sh [BUILD_DIR] [full|smoke]" >&2
	exit 2
	;;
esac
echo "run.sh: summary in $summary" >&2

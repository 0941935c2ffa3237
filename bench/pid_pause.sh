#!/bin/sh
# The pause of a round by pid (issue 14, item 4: AOBO's figure): RUNS times,
# start TARGET (a pid test target: tests/pid/pid_target*.c*, built without
# libocolos), let it warm up, run one `ocolos-agent --pid` round on it, stop
# it with SIGTERM and require its "ok". Prints each round's JSON figures and
# the median pause. POSIX sh: runs on the host and in the AArch64 guest
# (busybox), e.g.
#
#   bench/pid_pause.sh build/tests/pid/pid_target_cxx_pie build/tools/ocolos-agent 5 1 1
#   scripts/a64vm.sh run sh bench/pid_pause.sh \
#       build-a64/tests/aarch64/a64_pid_target_cxx_pie build-a64/tools/ocolos-agent 5 4 4
#
#   pid_pause.sh TARGET AGENT RUNS PROFILE_S WARMUP_S
#
# The pause is the stop-the-world of the replace stage (every thread seized,
# patches written, i-cache maintenance on AArch64, threads resumed), as the
# agent's JSON reports it; under TCG its absolute value means little, the
# count of patches and threads is what compares.
set -eu
target=$1 agent=$2 runs=$3 profile=$4 warmup=$5
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pid_pause.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$tmp/json"; }
echo "$(uname -m) $(uname -r), $(nproc) CPUs; $target"
echo "run pause_ms call_sites entries pointer_slots functions threads"
i=0
while [ $i -lt "$runs" ]; do
	i=$((i + 1))
	"$target" >"$tmp/out" 2>"$tmp/target.err" &
	pid=$!
	sleep "$warmup"
	"$agent" --pid $pid --profile "$profile" >"$tmp/json" 2>"$tmp/err" || {
		cat "$tmp/err" >&2
		kill $pid
		exit 1
	}
	kill -TERM $pid
	wait $pid || { echo "target exited $?" >&2; exit 1; }
	grep -q '^ok' "$tmp/out" || { echo "target output:" >&2; cat "$tmp/out" >&2; exit 1; }
	grep -q '"ok":true' "$tmp/json" || { cat "$tmp/json" >&2; exit 1; }
	echo "$i $(field pause_ms) $(field call_sites_patched) $(field entries_patched)" \
	     "$(field pointer_slots_patched) $(field functions_moved) $(field threads_stopped)" |
		tee -a "$tmp/rows"
done
# The median pause (the middle row by pause; the lower middle for even RUNS).
echo "median pause_ms $(sort -n -k2 "$tmp/rows" | sed -n "$(((runs + 1) / 2))p" | cut -d' ' -f2)"

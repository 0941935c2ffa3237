#!/usr/bin/env bash
# Soak of continuous optimization by pid: ocolos-agent --every runs round
# after round (each the next generation, no revert) on a multi-threaded C++
# program with virtual calls, exceptions, threads that come and go and
# fork() during the run (bench/soak_target.cpp); its output must be the same
# as a plain run's.
#
# usage: bench/continuous_soak.sh [BUILD_DIR]
#   BUILD_DIR    libocolos build directory with tools/ocolos-agent
#                (default: build)
# environment:
#   SOAK_OUT     output directory (default: bench/out/soak)
#   SOAK_ROUNDS  rounds (default 1000)
#   SOAK_PROFILE sampling window of a round, s (default 0.2)
#   SOAK_EVERY   pause between rounds, s (default 0.05)
#   SOAK_PIE     pie | nopie (default pie)
#   SOAK_PLAIN   seconds of the plain (unoptimized) run (default 20)
#   SOAK_ARGS    extra soak_target arguments (default none)
#   SOAK_AGENT_ARGS  the agent's verbosity (default -q; "" keeps its
#                warnings in agent.err, -v adds its progress)
#
# Checks, each reported in $SOAK_OUT/summary.txt:
#   - every JSON line of the agent has "ok":true, and "versions_mapped" <= 2
#     (the in-use version and at most one older one a thread was still in);
#   - the generation grows by one each round;
#   - /proc/PID/maps, read every 2 s by a watcher: how many
#     /memfd:ocolos-cN code versions it listed at once (reported, not a
#     check: while a round runs, its new version is mapped before the
#     switch and the older ones are retired after it, so three can be seen
#     for a moment);
#   - the target is alive when the agent ends, exits 0 on SIGTERM, and its
#     stdout (checksums of fixed work, "threads ok", "children ok", "ok")
#     is identical to a plain run's.
# Exit 0 when all hold, 1 otherwise. The rounds reached are reported even
# when the run is cut short (SIGINT: the agent is stopped, the rest runs).
# This is a benchmark run by hand (an hour or so for 1000 rounds on
# 2 cores); ctest runs 50 rounds of it (soak.continuous_pid).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
out=${SOAK_OUT:-$root/bench/out/soak}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
rounds=${SOAK_ROUNDS:-1000}
profile=${SOAK_PROFILE:-0.2}
every=${SOAK_EVERY:-0.05}
pie=${SOAK_PIE:-pie}
plain_secs=${SOAK_PLAIN:-20}
# shellcheck disable=SC2206
targs=(${SOAK_ARGS:-})
agent=$build/tools/ocolos-agent

log() { echo "continuous_soak: $*" >&2; }
[[ -x $agent ]] || {
	log "build libocolos first: $agent missing"
	exit 1
}
mkdir -p "$out"
case $pie in
pie) pflags=(-fPIE -pie) ;;
nopie) pflags=(-fno-pie -no-pie) ;;
*)
	log "SOAK_PIE must be pie or nopie"
	exit 2
	;;
esac
bin=$out/soak_target-$pie
if [[ ! -x $bin || $here/soak_target.cpp -nt $bin ]]; then
	g++ -O2 -fno-jump-tables -Wall -Wextra -pthread "${pflags[@]}" \
		"$here/soak_target.cpp" -o "$bin" -Wl,--emit-relocs || exit 1
fi

# Targets run in $out, with core dumps allowed where the system lets us
# (kernel.core_pattern "core" then leaves them there).
cd "$out" || exit 1
ulimit -c unlimited 2>/dev/null || true

# ---- plain run ---------------------------------------------------------------
log "plain run, ${plain_secs} s: $bin ${targs[*]}"
"$bin" "${targs[@]}" >"$out/plain.out" 2>"$out/plain.err" &
ppid_=$!
sleep "$plain_secs"
kill -TERM "$ppid_"
wait "$ppid_"
plain_rc=$?
log "plain: exit $plain_rc; $(cat "$out/plain.err")"

# ---- optimized run -----------------------------------------------------------
"$bin" "${targs[@]}" >"$out/soak.out" 2>"$out/soak.err" &
tpid=$!
sleep 1
start=$(date +%s)
log "target pid $tpid; agent: $agent --pid $tpid --every $every --rounds $rounds --profile $profile --json ${SOAK_AGENT_ARGS--q}"
# The watcher: the most code versions /proc/PID/maps ever listed at once.
(
	while kill -0 "$tpid" 2>/dev/null; do
		n=$(grep -o '/memfd:ocolos-c[0-9]*' "/proc/$tpid/maps" 2>/dev/null | sort -u | wc -l)
		echo "$(date +%s) $n"
		sleep 2
	done
) >"$out/maps.log" &
wpid=$!
nice -n 5 "$agent" --pid "$tpid" --every "$every" --rounds "$rounds" --profile "$profile" \
	--json ${SOAK_AGENT_ARGS--q} >"$out/rounds.jsonl" 2>"$out/agent.err" &
apid=$!
trap 'log "interrupted: stopping the agent"; kill -INT $apid' INT
wait "$apid"
agent_rc=$?
# wait returns early when the trap ran: wait again for the agent itself.
while kill -0 "$apid" 2>/dev/null; do wait "$apid"; agent_rc=$?; done
trap - INT
secs=$(($(date +%s) - start))
alive=1
kill -0 "$tpid" 2>/dev/null || alive=0
final_maps=$(grep 'ocolos' "/proc/$tpid/maps" 2>/dev/null)
kill -TERM "$tpid" 2>/dev/null
wait "$tpid"
target_rc=$?
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null

{
	echo "command: SOAK_ROUNDS=$rounds SOAK_PROFILE=$profile SOAK_EVERY=$every SOAK_PIE=$pie bench/continuous_soak.sh"
	echo "date: $(date -u +%FT%TZ); load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "target: $bin ${targs[*]}; agent exit $agent_rc after $secs s; target alive at end: $alive, exit $target_rc"
	python3 - "$out/rounds.jsonl" <<'EOF'
import json, sys
rows = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        rows.append(json.loads(line))
ok = [r for r in rows if r.get("ok")]
bad = [r for r in rows if not r.get("ok")]
over = [r for r in rows if r.get("versions_mapped", 0) > 2]
gens = [r.get("generation", 0) for r in ok]
jumps = sum(1 for a, b in zip(gens, gens[1:]) if b != a + 1)
print("rounds: %d reported, %d ok, %d failed" % (len(rows), len(ok), len(bad)))
for r in bad[:10]:
    print("  failed round %s: stage %s, %s: %s" % (r.get("round"), r.get("stage"),
          r.get("error"), r.get("message", "")[:300]))
import collections
dist = collections.Counter(r.get("versions_mapped", 0) for r in rows)
print("versions_mapped: max %d, rounds with more than 2: %d; distribution %s" %
      (max(dist or [0]), len(over), dict(sorted(dist.items()))))
if gens:
    print("generation: first %d, last %d, non-consecutive steps: %d" %
          (gens[0], gens[-1], jumps))
last = rows[-1] if rows else {}
print("versions_retired %s, bytes_retired %s (last line)" %
      (last.get("versions_retired"), last.get("bytes_retired")))
def q(xs):
    xs = sorted(xs)
    return "median %.1f, max %.1f" % (xs[len(xs) // 2], xs[-1]) if xs else "n/a"
print("pause_ms %s; round_ms %s; samples_in_binary %s; functions_moved %s" % (
      q([r["pause_ms"] for r in ok]), q([r["round_ms"] for r in ok]),
      q([r["samples_in_binary"] for r in ok]), q([r["functions_moved"] for r in ok])))
print("CHECK_ROUNDS_OK=%d" % (len(rows) > 0 and not bad))
print("CHECK_VERSIONS=%d" % (not over))
print("CHECK_GENERATIONS=%d" % (jumps == 0))
EOF
	echo "maps watcher: $(wc -l <"$out/maps.log") reads; code versions listed at once: $(awk '{print $2}' "$out/maps.log" | sort -n | uniq -c | awk '{printf "%s%d in %d reads", s, $2, $1; s=", "}')"
	echo "ocolos mappings at the end:"
	echo "$final_maps" | sed 's/^/  /'
	echo "target stderr: $(cat "$out/soak.err")"
	if cmp -s "$out/plain.out" "$out/soak.out"; then
		echo "output: identical to the plain run ($(wc -l <"$out/soak.out") lines)"
	else
		echo "output: DIFFERS from the plain run:"
		diff "$out/plain.out" "$out/soak.out" | head -20
	fi
} >"$out/summary.txt"
cat "$out/summary.txt"

pass=1
grep -q 'CHECK_ROUNDS_OK=1' "$out/summary.txt" || pass=0
grep -q 'CHECK_VERSIONS=1' "$out/summary.txt" || pass=0
grep -q 'CHECK_GENERATIONS=1' "$out/summary.txt" || pass=0
grep -q '^output: identical' "$out/summary.txt" || pass=0
((alive == 1 && target_rc == 0 && plain_rc == 0)) || pass=0
if ((pass)); then
	log "PASS"
	exit 0
fi
log "FAIL (see $out/summary.txt)"
exit 1

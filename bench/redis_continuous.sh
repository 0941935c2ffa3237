#!/usr/bin/env bash
# Continuous optimization of a running Redis by pid: ocolos-agent --every
# runs round after round (each the next generation, no revert) while
# redis-benchmark drives the server on loopback without pause.
#
# usage: bench/redis_continuous.sh [BUILD_DIR]
#   BUILD_DIR   libocolos build directory with tools/ocolos-agent
#               (default: build)
# environment:
#   RC_ROUNDS   rounds (default 100)
#   RC_PROFILE  sampling window of a round, s (default 1)
#   RC_EVERY    pause between rounds, s (default 0.5)
#   RC_N        requests per test per benchmark run (default 20000)
#   RC_KEYS     DEBUG POPULATE size of the data set in db 0 (default 200000)
#   RC_AGENT_ARGS  more ocolos-agent options (e.g. -v: the pause split into
#               stopping, looking and writing, in continuous.agent.err)
#   RD_OUT, RD_PORT, RD_JOBS as for bench/redis.sh (which builds Redis from
#               Debian's sources; this script calls it with RD_ONLY=build)
#
# Checks, reported in $RD_OUT/continuous.txt:
#   - failed requests: 0. Every redis-benchmark run (-c 50, set, get, incr,
#     lpush, lpop, random keys in db 1) exits 0 and writes nothing on
#     stderr; INFO commandstats shows failed_calls=0 and rejected_calls=0
#     for every command, INFO stats total_error_replies=0; the server
#     answers PING at the end;
#   - DEBUG DIGEST unchanged: db 0 (DEBUG POPULATE, never written during the
#     run) has the same digest after the rounds as before them, once db 1
#     (the benchmark's) is flushed; and a deterministic workload on db 2
#     (redis-benchmark without -r: fixed keys and values) gives the same
#     digest on the optimized server as before the first round;
#   - every agent line "ok":true, versions_mapped <= 2, the generation
#     growing by one each round.
# Exit 0 when all hold, 1 otherwise. A benchmark run by hand, not a test.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
out=${RD_OUT:-$root/bench/out/redis}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
rounds=${RC_ROUNDS:-100}
prof=${RC_PROFILE:-1}
every=${RC_EVERY:-0.5}
n=${RC_N:-20000}
keys=${RC_KEYS:-200000}
port=${RD_PORT:-16379}
# shellcheck disable=SC2206
agent_args=(${RC_AGENT_ARGS:-})
agent=$build/tools/ocolos-agent

log() { echo "redis_continuous: $*" >&2; }
[[ -x $agent ]] || {
	log "build libocolos first: $agent missing"
	exit 1
}
RD_ONLY=build RD_OUT=$out "$here/redis.sh" "$build" || exit 1
cli() { "$out/redis-cli" -h 127.0.0.1 -p "$port" "$@"; }
tag=continuous
rm -f "$out/$tag".*
: >"$out/$tag.bench.err"

"$out/redis-server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
	--daemonize no --protected-mode yes --enable-debug-command local --loglevel warning \
	--logfile "$out/$tag.redis.log" &
srv=$!
for _ in $(seq 100); do
	cli ping 2>/dev/null | grep -q PONG && break
	sleep 0.1
done
cli ping | grep -q PONG || {
	log "server did not come up"
	exit 1
}

# The deterministic workload on db 2 and its digest; db 2 flushed after.
det_digest() {
	"$out/redis-benchmark" -h 127.0.0.1 -p "$port" --dbnum 2 -n 20000 -c 50 \
		-t set,incr,lpush,sadd,hset,zadd -q >/dev/null 2>>"$out/$tag.bench.err"
	cli debug digest
	cli -n 2 flushdb >/dev/null
}

cli debug populate "$keys" key 64 >/dev/null
d0_before=$(cli debug digest)
dw_before=$(det_digest)
[[ $d0_before =~ ^[0-9a-f]{40}$ && $dw_before =~ ^[0-9a-f]{40}$ ]] || {
	log "DEBUG DIGEST gave: $d0_before / $dw_before"
	cli shutdown nosave >/dev/null 2>&1
	exit 1
}
log "db 0: $keys keys, digest $d0_before; deterministic workload digest $dw_before"

runs=0 bench_fail=0
bench_loop() {
	while [[ ! -e $out/$tag.stop ]]; do
		"$out/redis-benchmark" -h 127.0.0.1 -p "$port" --dbnum 1 -r 100000 -n "$n" \
			-c 50 -t set,get,incr,lpush,lpop --csv >>"$out/$tag.bench.csv" \
			2>>"$out/$tag.bench.err" || echo "exit $?" >>"$out/$tag.bench.fail"
		echo run >>"$out/$tag.bench.runs"
	done
}
bench_loop &
loader=$!
sleep 2
start=$(date +%s)
log "server pid $srv; agent: $agent --pid $srv --every $every --rounds $rounds --profile $prof --json -q"
nice -n 5 "$agent" --pid "$srv" --every "$every" --rounds "$rounds" --profile "$prof" \
	--json -q "${agent_args[@]}" >"$out/$tag.jsonl" 2>"$out/$tag.agent.err"
agent_rc=$?
secs=$(($(date +%s) - start))
touch "$out/$tag.stop"
wait "$loader"
final_maps=$(grep ocolos "/proc/$srv/maps" 2>/dev/null)
alive=0
cli ping 2>/dev/null | grep -q PONG && alive=1
cli -n 1 flushdb >/dev/null
d0_after=$(cli debug digest)
dw_after=$(det_digest)
stats=$(cli info commandstats | tr -d '\r')
errs=$(cli info stats | tr -d '\r' | sed -n 's/^total_error_replies:\(.*\)/\1/p')
cli shutdown nosave >/dev/null 2>&1
wait "$srv"
srv_rc=$?
runs=$(wc -l <"$out/$tag.bench.runs")
fails=$(cat "$out/$tag.bench.fail" 2>/dev/null | wc -l)
bad_cmds=$(echo "$stats" | grep '^cmdstat_' | grep -v 'failed_calls=0$\|failed_calls=0,' ||
	true)
bad_cmds2=$(echo "$stats" | grep '^cmdstat_' | grep -v 'rejected_calls=0' || true)

{
	echo "command: RC_ROUNDS=$rounds RC_PROFILE=$prof RC_EVERY=$every RC_N=$n bench/redis_continuous.sh"
	echo "date: $(date -u +%FT%TZ); redis $(cat "$out/VERSION"); load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "agent exit $agent_rc after $secs s; server alive at the end: $alive; exit after SHUTDOWN: $srv_rc"
	echo "load: $runs redis-benchmark runs x 5 tests x $n requests ($((runs * 5 * n)) requests), -c 50, db 1, -r 100000; runs that failed: $fails; benchmark stderr: $(wc -c <"$out/$tag.bench.err") bytes"
	echo "commandstats: $(echo "$stats" | grep -c '^cmdstat_') commands; with failed_calls != 0: $(echo -n "$bad_cmds" | grep -c .); with rejected_calls != 0: $(echo -n "$bad_cmds2" | grep -c .); total_error_replies: $errs"
	echo "$stats" | grep -E '^cmdstat_(set|get|incr|lpush|lpop):' | sed 's/^/  /'
	echo "db 0 digest: before $d0_before, after $d0_after: $([[ $d0_before == "$d0_after" ]] && echo unchanged || echo CHANGED)"
	echo "deterministic workload digest: before $dw_before, after $dw_after: $([[ $dw_before == "$dw_after" ]] && echo unchanged || echo CHANGED)"
	python3 - "$out/$tag.jsonl" <<'EOF'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ok = [r for r in rows if r.get("ok")]
bad = [r for r in rows if not r.get("ok")]
gens = [r.get("generation", 0) for r in ok]
jumps = sum(1 for a, b in zip(gens, gens[1:]) if b != a + 1)
dist = collections.Counter(r.get("versions_mapped", 0) for r in rows)
print("rounds: %d reported, %d ok, %d failed" % (len(rows), len(ok), len(bad)))
for r in bad[:10]:
    print("  failed round %s: stage %s, %s: %s" % (r.get("round"), r.get("stage"),
          r.get("error"), r.get("message", "")[:300]))
print("versions_mapped: max %d; distribution %s" % (max(dist or [0]), dict(sorted(dist.items()))))
if gens:
    print("generation: first %d, last %d, non-consecutive steps: %d" % (gens[0], gens[-1], jumps))
last = rows[-1] if rows else {}
print("versions_retired %s, bytes_retired %s (last line)" % (last.get("versions_retired"), last.get("bytes_retired")))
def q(xs):
    xs = sorted(xs)
    return "median %.1f, max %.1f" % (xs[len(xs) // 2], xs[-1]) if xs else "n/a"
print("pause_ms %s; round_ms %s; functions_moved %s; c1_bytes %s" % (
      q([r["pause_ms"] for r in ok]), q([r["round_ms"] for r in ok]),
      q([r["functions_moved"] for r in ok]), q([r["c1_bytes"] for r in ok])))
print("CHECK_ROUNDS_OK=%d" % (len(rows) > 0 and not bad))
print("CHECK_VERSIONS=%d" % (max(dist or [0]) <= 2))
print("CHECK_GENERATIONS=%d" % (jumps == 0))
EOF
	echo "ocolos mappings at the end:"
	echo "$final_maps" | sed 's/^/  /'
} >"$out/$tag.txt"
cat "$out/$tag.txt"

pass=1
for c in CHECK_ROUNDS_OK CHECK_VERSIONS CHECK_GENERATIONS; do
	grep -q "$c=1" "$out/$tag.txt" || pass=0
done
[[ $d0_before == "$d0_after" && $dw_before == "$dw_after" ]] || pass=0
((alive == 1 && fails == 0)) || pass=0
[[ ! -s $out/$tag.bench.err && -z $bad_cmds && -z $bad_cmds2 && $errs == 0 ]] || pass=0
if ((pass)); then
	log "PASS"
	exit 0
fi
log "FAIL (see $out/$tag.txt)"
exit 1

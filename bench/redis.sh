#!/usr/bin/env bash
# Redis, a real server from Debian's sources, optimized by pid while its own
# benchmark tool drives it on loopback: once under ocolos-supervise, once
# with ocolos-agent attaching to a running server.
#
# usage: bench/redis.sh [BUILD_DIR]
#   BUILD_DIR   libocolos build directory with tools/ocolos-supervise and
#               tools/ocolos-agent (default: build)
# environment:
#   RD_OUT      output directory (default: bench/out/redis)
#   RD_N        requests per test per benchmark run (default 50000)
#   RD_REPS     benchmark runs before and after each round (default 5)
#   RD_PROFILE  sampling window of the round, s (default 3)
#   RD_PORT     loopback port (default 16379)
#   RD_JOBS     make -j for the build (default: nproc)
#   RD_ONLY     "build": build (or find) the binaries, then exit
#
# Builds redis-server, redis-benchmark and redis-cli from `apt-get source
# redis` with -O2 -fno-jump-tables -Wl,--emit-relocs (MALLOC=libc: no
# vendored jemalloc). Each benchmark run is `redis-benchmark -n RD_N -c 50
# -t set,get,incr,lpush,lpop --csv`; its throughput is total requests over
# total time of the five tests. Runs before the round and after it are
# reported separately (runs overlapping the round are counted for the
# failed-request check but not for throughput). Failed requests: every
# request must show up in the server's INFO commandstats with
# failed_calls=0 and rejected_calls=0, and no error reply may be counted
# (total_error_replies). Results: $RD_OUT/results.txt; raw files beside it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
out=${RD_OUT:-$root/bench/out/redis}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
n=${RD_N:-50000}
reps=${RD_REPS:-5}
prof=${RD_PROFILE:-3}
port=${RD_PORT:-16379}
tests=set,get,incr,lpush,lpop
ntests=5

log() { echo "redis.sh: $*" >&2; }

sup=$build/tools/ocolos-supervise
agent=$build/tools/ocolos-agent
[[ -x $sup && -x $agent ]] || {
	log "build libocolos first: $sup / $agent missing"
	exit 1
}

# ---- source and build ------------------------------------------------------
mkdir -p "$out/src"
src=$(find "$out/src" -maxdepth 1 -type d -name 'redis-*' | sort | tail -1)
if [[ -z $src ]]; then
	grep -qsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list \
		/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources || {
		log "no deb-src entry: run bench/build_sqlite.sh once (it adds them) or add one"
		exit 1
	}
	(cd "$out/src" && apt-get source -q redis 2>&1 | tail -2) >&2
	src=$(find "$out/src" -maxdepth 1 -type d -name 'redis-*' | sort | tail -1)
fi
log "source: $src"
if [[ ! -x $out/redis-server || ! -x $out/redis-benchmark || ! -x $out/redis-cli ]]; then
	log "building (make MALLOC=libc, -O2 -fno-jump-tables -Wl,--emit-relocs)"
	# CFLAGS from the environment reach the vendored deps (lua, hiredis) too.
	(cd "$src" && make distclean >/dev/null 2>&1 || true)
	(cd "$src" && CFLAGS=-fno-jump-tables make -j"${RD_JOBS:-$(nproc)}" -C src \
		redis-server redis-benchmark redis-cli MALLOC=libc USE_SYSTEMD=no BUILD_TLS=no \
		OPTIMIZATION="-O2 -fno-jump-tables" LDFLAGS="-Wl,--emit-relocs" \
		>"$out/make.log" 2>&1) || {
		log "build failed; see $out/make.log"
		exit 1
	}
	cp "$src/src/redis-server" "$src/src/redis-benchmark" "$src/src/redis-cli" "$out/"
	echo "${src##*/}" >"$out/VERSION"
fi

[[ ${RD_ONLY:-} != build ]] || exit 0

cli() { "$out/redis-cli" -h 127.0.0.1 -p "$port" "$@"; }

# The server's log goes to a file: stdout is where the tools' JSON goes.
server_args=(--port "$port" --bind 127.0.0.1 --save "" --appendonly no
	--daemonize no --protected-mode yes --loglevel warning --logfile "$out/redis.log")

wait_up() {
	for _ in $(seq 100); do
		cli ping 2>/dev/null | grep -q PONG && return 0
		sleep 0.1
	done
	log "server did not come up"
	return 1
}

runs=0
# One benchmark run; prints requests/s over the five tests.
bench_once() {
	local csv
	csv=$("$out/redis-benchmark" -h 127.0.0.1 -p "$port" -n "$n" -c 50 -t "$tests" --csv \
		2>>"$out/$tag.bench.err")
	echo "$csv" >>"$out/$tag.bench.csv"
	runs=$((runs + 1))
	# "SET","123456.78",...: total requests / sum of per-test times
	echo "$csv" | awk -F, -v n="$n" 'NR>1 { gsub(/"/,"",$2); t += n / $2; k++ }
		END { if (k) printf "%.0f\n", k * n / t; else print 0 }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Every request counted by the server, none failed or rejected.
check_requests() {
	local stats expect=$((runs * n)) bad=0
	stats=$(cli info commandstats)
	echo "$stats" >"$out/$tag.commandstats"
	for c in set get incr lpush lpop; do
		local line calls failed rejected
		line=$(echo "$stats" | tr -d '\r' | grep "^cmdstat_$c:" || true)
		calls=$(echo "$line" | sed -n 's/^cmdstat_[a-z]*:calls=\([0-9]*\),.*/\1/p')
		failed=$(echo "$line" | sed -n 's/.*failed_calls=\([0-9]*\).*/\1/p')
		rejected=$(echo "$line" | sed -n 's/.*rejected_calls=\([0-9]*\).*/\1/p')
		if [[ ${calls:-0} != "$expect" || ${failed:-1} != 0 || ${rejected:-1} != 0 ]]; then
			log "$tag: $c calls=$calls (want $expect) failed=$failed rejected=$rejected"
			bad=1
		fi
	done
	local errs
	errs=$(cli info stats | tr -d '\r' | sed -n 's/^total_error_replies:\(.*\)/\1/p')
	[[ $errs == 0 ]] || {
		log "$tag: total_error_replies=$errs"
		bad=1
	}
	[[ ! -s $out/$tag.bench.err ]] || {
		log "$tag: redis-benchmark wrote errors: $(head -3 "$out/$tag.bench.err")"
		bad=1
	}
	echo "$tag: $runs runs x $ntests tests x $n requests = $((runs * n * ntests)) requests, failed: $([[ $bad == 0 ]] && echo 0 || echo 'SOME (see above)')" |
		tee -a "$out/results.txt"
	return $bad
}

# Load until $1 holds a JSON line (the round is over): runs during the
# round (profiling needs a busy server; their throughput is not reported).
load_until() {
	while ! grep -qs '^{"pid"' "$1"; do bench_once >>"$out/$tag.during"; done
}

report() {
	local b a
	b=$(median <"$out/$tag.before")
	a=$(median <"$out/$tag.after")
	{
		echo "$tag: before (median of $reps): $b req/s  [$(tr '\n' ' ' <"$out/$tag.before")]"
		echo "$tag: after  (median of $reps): $a req/s  [$(tr '\n' ' ' <"$out/$tag.after")]"
		awk -v b="$b" -v a="$a" 'BEGIN { printf "'"$tag"': change %+.1f%%\n", (a / b - 1) * 100 }'
		echo "$tag: round: $(grep '^{"pid"' "$out/$tag.json")"
	} | tee -a "$out/results.txt"
}

: >"$out/results.txt"
{
	echo "redis $(cat "$out/VERSION"), $(nproc) CPUs, $(uname -r), $(date -u +%F)"
	echo "bench: redis-benchmark -h 127.0.0.1 -p $port -n $n -c 50 -t $tests --csv"
} | tee -a "$out/results.txt"

# ---- 1. ocolos-supervise -----------------------------------------------------
# The supervisor waits --after seconds, which we fill with the "before"
# runs; the round profiles while load_until keeps the server busy.
tag=supervise
rm -f "$out/$tag".*
runs=0
# Warm-up + before runs take about reps x (run time); measure one run first.
"$out/redis-server" "${server_args[@]}" &
probe=$!
wait_up
t0=$(date +%s.%N)
bench_once >/dev/null
t1=$(date +%s.%N)
cli shutdown nosave >/dev/null 2>&1 || true
wait $probe || true
runs=0
: >"$out/$tag.bench.err"
: >"$out/$tag.bench.csv"
per=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
after=$(awk -v p="$per" -v r="$reps" 'BEGIN { printf "%.0f", p * (r + 1) + 2 }')
log "one run takes ${per}s; supervisor --after $after --profile $prof"
echo "$tag: ocolos-supervise --after $after --profile $prof -- redis-server ${server_args[*]}" |
	tee -a "$out/results.txt"
"$sup" --json --after "$after" --profile "$prof" -- "$out/redis-server" "${server_args[@]}" \
	>"$out/$tag.json" 2>"$out/$tag.stderr" &
sup_pid=$!
wait_up
for _ in $(seq "$reps"); do bench_once >>"$out/$tag.before"; done
load_until "$out/$tag.json"
for _ in $(seq "$reps"); do bench_once >>"$out/$tag.after"; done
check_requests || true
report
kill -TERM "$sup_pid"
set +e
wait "$sup_pid"
st=$?
set -e
echo "$tag: SIGTERM to the supervisor -> supervisor exit status $st (redis-server's own)" |
	tee -a "$out/results.txt"

# ---- 2. ocolos-agent on a running server ------------------------------------
tag=agent
rm -f "$out/$tag".*
runs=0
: >"$out/$tag.bench.err"
"$out/redis-server" "${server_args[@]}" &
srv=$!
wait_up
echo "$tag: ocolos-agent --pid $srv --profile $prof" | tee -a "$out/results.txt"
for _ in $(seq "$reps"); do bench_once >>"$out/$tag.before"; done
: >"$out/$tag.json.tmp"
load_until "$out/$tag.json" &
loader=$!
sleep 1
"$agent" --json --pid "$srv" --profile "$prof" >"$out/$tag.json.tmp" 2>"$out/$tag.stderr" || true
mv "$out/$tag.json.tmp" "$out/$tag.json"
wait "$loader"
# the loader ran in a subshell: count its runs from the CSV
runs=$(grep -c '^"SET"' "$out/$tag.bench.csv")
for _ in $(seq "$reps"); do bench_once >>"$out/$tag.after"; done
check_requests || true
report
kill -TERM "$srv"
set +e
wait "$srv"
st=$?
set -e
echo "$tag: redis-server exit status after SIGTERM: $st" | tee -a "$out/results.txt"

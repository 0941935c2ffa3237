#!/bin/sh
# perf and gdb on optimized code (ctest -L debuginfo).
#
#   run_debug.sh perf-self DBG_SELF            in-process rounds (dbg_self)
#   run_debug.sh perf-pid  TARGET AGENT        a plain program optimized by
#                                              ocolos-agent --pid
#   run_debug.sh gdb-self  DBG_SELF            gdb attaches; the JIT
#                                              interface names the frames
#   run_debug.sh gdb-pid   TARGET AGENT SCRIPT gdb attaches, sources SCRIPT
#                                              (ocolos_gdb.py), runs
#                                              ocolos-symbols
#
# perf-self: the program runs with OCOLOS_JITDUMP=$tmp; `perf record -k
# mono -p` samples it for 3 s after the round (attaching after the marker
# was mapped: perf synthesizes that mmap event), `perf inject --jit` turns
# the jitdump into objects, `perf script` resolves each sample; of the
# samples in the newest version's code [c1_addr, c1_addr + c1_bytes), at
# least 90 % must carry a function name — and in the recording before
# inject, under 10 %: the jitdump is what names them.
# perf-pid: the same, the agent running with OCOLOS_JITDUMP=$tmp (the
# target maps the dump's marker, injected).
# gdb-*: `gdb -batch -p` prints every thread's backtrace; at least one frame
# must lie in the optimized code, and every such frame must be named (never
# "??"). Retried twice when no thread happened to be in that code.
#
# DBG_SELF's extra arguments (ROUNDS) follow. Exit 0 pass, 1 fail, 77 skip
# (no perf, no gdb, or no perf_event access).
set -u
mode=$1
shift
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocolos-dbg.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$pid" ] && rm -f "/tmp/perf-$pid.map" "/tmp/perf-$pid.map.hidden"
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
need() { command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed ($2)"; }
# Programs run without the sanitizer runtime the ctest environment may
# preload for the driver (the self program gets it back through
# OCOLOS_TEST_PRELOAD).
# It execs, so that a background `run` is the program itself ($! its pid).
run() { if [ -n "${OCOLOS_TEST_PRELOAD:-}" ]; then exec env LD_PRELOAD="$OCOLOS_TEST_PRELOAD" "$@"; else exec env -u LD_PRELOAD "$@"; fi; }

# start_self DBG_SELF [ROUNDS]: run it until it prints "ready ...".
start_self() {
	(OCOLOS_JITDUMP=$tmp run "$@" >"$tmp/out" 2>"$tmp/err") &
	pid=$!
	for _ in $(seq 1 600); do
		if grep -q '^ready ' "$tmp/out" 2>/dev/null; then
			set -- $(grep '^ready ' "$tmp/out")
			c1=$3 c1_bytes=$4 gen=$5
			echo "ready: pid $pid, C$gen at $c1, $c1_bytes bytes" >&2
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			rc=$?
			cat "$tmp/err" >&2
			[ $rc -eq 77 ] && skip "the program cannot sample here"
			fail "the program exited with $rc before its rounds were done"
		fi
		sleep 0.1
	done
	cat "$tmp/err" >&2
	fail "no round done after 60 s"
}

# start_pid TARGET AGENT: start TARGET, optimize it with the agent.
start_pid() {
	(exec env -u LD_PRELOAD "$1" --threads 2 >"$tmp/out" 2>"$tmp/err") &
	pid=$!
	rm -f "/tmp/perf-$pid.map"
	sleep 1
	# The agent links the library (instrumented in a sanitizer build: its
	# runtime preloaded, OCOLOS_TEST_PRELOAD); the target never is.
	env LD_PRELOAD="${OCOLOS_TEST_PRELOAD:-}" OCOLOS_JITDUMP="$tmp" "$2" --pid "$pid" --profile 1 --json \
		>"$tmp/agent.json" 2>"$tmp/agent.err"
	rc=$?
	if [ $rc -ne 0 ]; then
		cat "$tmp/agent.err" "$tmp/agent.json" >&2
		grep -q '"error_code":-8' "$tmp/agent.json" && skip "no perf_event access"
		fail "ocolos-agent exited with $rc"
	fi
	c1=$(sed -n 's/.*"c1_addr":"\(0x[0-9a-f]*\)".*/\1/p' "$tmp/agent.json")
	c1_bytes=$(sed -n 's/.*"c1_bytes":\([0-9]*\).*/\1/p' "$tmp/agent.json")
	[ -n "$c1" ] && [ -n "$c1_bytes" ] || fail "no c1_addr in the agent's report: $(cat "$tmp/agent.json")"
	echo "optimized: pid $pid, C1 at $c1, $c1_bytes bytes" >&2
}

# attribution [DATA]: "IN_C1 NAMED" over the samples of DATA (perf.data).
attribution() {
	perf script -i "$tmp/${1:-perf.data}" -F ip,sym 2>/dev/null | awk -v lo="$c1" -v n="$c1_bytes" '
		function hex(s,   i, c, v) { v = 0; s = tolower(s); sub(/^0x/, "", s)
			for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
			return v }
		BEGIN { l = hex(lo); h = l + n }
		{ ip = hex($1); if (ip >= l && ip < h) { inc++; if ($2 != "[unknown]" && $2 != "") named++ } }
		END { printf "%d %d\n", inc, named }'
}

# check_perf [jit]: with "jit", the names come from the jitdump (perf inject
# --jit), else from the perf map.
check_perf() {
	need perf "apt-get install linux-perf"
	perf record -q -k mono -e cpu-clock -F 1000 -p "$pid" -o "$tmp/perf.data" -- sleep 3 \
		>"$tmp/perf.log" 2>&1 || { cat "$tmp/perf.log" >&2; skip "perf record cannot sample process $pid"; }
	data=perf.data
	if [ "${1:-}" = jit ]; then
		[ -s "$tmp/jit-$pid.dump" ] || fail "no jitdump $tmp/jit-$pid.dump: $(cat "$tmp/err")"
		perf inject --jit -i "$tmp/perf.data" -o "$tmp/perf.jit.data" >"$tmp/inject.log" 2>&1 ||
			{ cat "$tmp/inject.log" >&2; fail "perf inject --jit failed"; }
		data=perf.jit.data
	fi
	set -- $(attribution $data)
	in_c1=$1 named=$2
	echo "perf: $in_c1 samples in the optimized code, $named of them named" >&2
	perf script -i "$tmp/$data" -F ip,sym 2>/dev/null | sort | uniq -c | sort -rn | head -8 >&2
	[ "$in_c1" -ge 50 ] || fail "only $in_c1 samples in the optimized code: is it in use?"
	[ $((named * 100)) -ge $((in_c1 * 90)) ] ||
		fail "only $named of $in_c1 samples in the optimized code are attributed to a function"
	if [ "$data" = perf.jit.data ]; then
		# Before inject, the same samples have no names: the jitdump names them.
		set -- $(attribution perf.data)
		echo "perf without the jitdump: $2 of $1 named" >&2
	else
		# Without the map, the same samples have no names: the map names them.
		mv "/tmp/perf-$pid.map" "/tmp/perf-$pid.map.hidden"
		set -- $(attribution)
		mv "/tmp/perf-$pid.map.hidden" "/tmp/perf-$pid.map"
		echo "perf without the map: $2 of $1 named" >&2
	fi
	[ $(($2 * 100)) -lt $(($1 * 10)) ] || fail "perf names the samples without the perf map too?"
	echo "PASS: $((named * 100 / in_c1)) % of the samples in the optimized code attributed" >&2
}

# check_gdb: every frame in [c1, c1 + c1_bytes) is named ($gdb_script, if
# set, is sourced first and its ocolos-symbols run).
gdb_script=
check_gdb() {
	need gdb "apt-get install gdb"
	for attempt in 1 2 3; do
		if [ -n "$gdb_script" ]; then
			gdb -nx -batch -p "$pid" -ex "source $gdb_script" -ex "ocolos-symbols" \
				-ex "thread apply all bt" >"$tmp/gdb.out" 2>"$tmp/gdb.err"
		else
			gdb -nx -batch -p "$pid" -ex "thread apply all bt" >"$tmp/gdb.out" 2>"$tmp/gdb.err"
		fi
		set -- $(awk -v lo="$c1" -v n="$c1_bytes" '
			function hex(s,   i, c, v) { v = 0; s = tolower(s); sub(/^0x/, "", s)
				for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
				return v }
			BEGIN { l = hex(lo); h = l + n }
			/^#[0-9]+ +0x[0-9a-f]+ in / { a = hex($2); if (a >= l && a < h) { inc++; if ($4 != "??") named++ } }
			END { printf "%d %d\n", inc, named }' "$tmp/gdb.out")
		in_c1=$1 named=$2
		grep -E '^#|^ocolos' "$tmp/gdb.out" | head -40 >&2
		echo "gdb (attempt $attempt): $in_c1 frames in the optimized code, $named named" >&2
		[ "$in_c1" -gt 0 ] && break
	done
	[ "$in_c1" -gt 0 ] || { cat "$tmp/gdb.err" >&2; fail "no frame in the optimized code in 3 attempts"; }
	[ "$named" -eq "$in_c1" ] || fail "$((in_c1 - named)) frames in the optimized code have no name"
	echo "PASS: gdb names the frames in the optimized code" >&2
}

case $mode in
perf-self) start_self "$@"; check_perf jit ;;
gdb-self) start_self "$@"; check_gdb ;;
perf-pid) start_pid "$1" "$2"; check_perf jit ;;
gdb-pid)
	start_pid "$1" "$2"
	gdb_script=$3
	check_gdb
	grep -q '^ocolos: C1 at' "$tmp/gdb.out" || fail "ocolos-symbols did not report C1"
	;;
*) fail "unknown mode '$mode'" ;;
esac
exit 0

#!/bin/sh
# it_artifact: an artifact written by `ocolos-agent --artifact-out` from one
# instance of PROGRAM, applied in-process by a second (it_artifact.c);
# both must print the same final checksums with no lap mismatch.
#
# Usage: it_artifact.sh PROGRAM AGENT
# Exit: 0 pass, 1 fail, 77 skip (no perf_event access for the agent's round).
set -u
prog=$1 agent=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocolos-it-artifact.XXXXXX") || exit 1
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
# The program links the (possibly instrumented) library; the agent too.
run() { if [ -n "${OCOLOS_TEST_PRELOAD:-}" ]; then LD_PRELOAD=$OCOLOS_TEST_PRELOAD "$@"; else "$@"; fi; }
# (not through run(): $! must be the program, not a subshell)
if [ -n "${OCOLOS_TEST_PRELOAD:-}" ]; then
	LD_PRELOAD=$OCOLOS_TEST_PRELOAD "$prog" wait >"$tmp/wait.out" 2>"$tmp/wait.err" &
else
	"$prog" wait >"$tmp/wait.out" 2>"$tmp/wait.err" &
fi
pid=$!
sleep 1
run "$agent" --pid "$pid" --profile 1 --json -q --artifact-out "$tmp/c1.art" >"$tmp/agent.json" \
	2>"$tmp/agent.err"
rc=$?
if [ $rc -ne 0 ]; then
	if grep -q 'EPERF\|perf_event' "$tmp/agent.json" "$tmp/agent.err"; then
		echo "SKIP: no perf_event access" >&2
		exit 77
	fi
	echo "FAIL: the agent's round exited $rc:" >&2
	cat "$tmp/agent.json" "$tmp/agent.err" >&2
	exit 1
fi
run "$prog" apply "$tmp/c1.art" >"$tmp/apply.out"
rc=$?
kill -TERM "$pid"
wait "$pid"
wrc=$?
pid=
if [ $rc -ne 0 ] || [ $wrc -ne 0 ]; then
	echo "FAIL: apply exited $rc, wait exited $wrc" >&2
	exit 1
fi
if ! cmp -s "$tmp/wait.out" "$tmp/apply.out"; then
	echo "FAIL: the outputs differ:" >&2
	diff "$tmp/wait.out" "$tmp/apply.out" >&2
	exit 1
fi
grep -q '^mismatches 0$' "$tmp/apply.out" || { cat "$tmp/apply.out" >&2; exit 1; }
echo "ok: artifact applied in-process, same output"

#!/bin/sh
# Integration test driver: run PROGRAM in `plain` mode (no round) and in
# `round` mode (one ocolos_optimize_self() round mid-run) and require both
# to succeed with identical stdout. The programs check the round itself
# (stats, C1 placement, where samples land); this script checks that the
# round changed nothing the program computes.
#
# Usage: run_it.sh PROGRAM [ARGS...]   (ARGS follow the mode)
# Exit: 0 pass, 1 fail, 77 skip (the program found no perf_event access).
set -u
prog=$1
shift
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocolos-it.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

echo "== $prog plain" >&2
# A sanitizer build's runtime goes into the program, not into this shell.
run() { if [ -n "${OCOLOS_TEST_PRELOAD:-}" ]; then LD_PRELOAD=$OCOLOS_TEST_PRELOAD "$@"; else "$@"; fi; }
run "$prog" plain "$@" >"$tmp/plain.out"
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: '$prog plain' exited with $rc" >&2
	exit 1
fi

echo "== $prog round" >&2
run "$prog" round "$@" >"$tmp/round.out"
rc=$?
if [ $rc -eq 77 ]; then
	echo "SKIP: '$prog round' cannot run here" >&2
	exit 77
fi
if [ $rc -ne 0 ]; then
	echo "FAIL: '$prog round' exited with $rc" >&2
	echo "--- stdout of plain run:" >&2
	cat "$tmp/plain.out" >&2
	echo "--- stdout of round run:" >&2
	cat "$tmp/round.out" >&2
	exit 1
fi

if ! cmp -s "$tmp/plain.out" "$tmp/round.out"; then
	echo "FAIL: output differs after the round (plain vs round):" >&2
	diff "$tmp/plain.out" "$tmp/round.out" >&2
	exit 1
fi
cat "$tmp/round.out"
echo "PASS: identical output with and without the round" >&2
exit 0

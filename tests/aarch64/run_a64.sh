#!/bin/sh
# Run an AArch64 integration program in `plain` and MODE mode, under
# qemu-user when cross-built, and require identical stdout.
#
# Usage: run_a64.sh PAGESIZE PROGRAM [MODE]
#   PAGESIZE  4096 or 65536 (qemu-aarch64 -p; ignored when running natively)
#   MODE      the mode that runs a round (default round; e.g. noreserve)
# Environment: OCOLOS_QEMU = qemu-aarch64 path ("" when running natively).
set -u
page=$1 prog=$2 mode=${3:-round}
run() {
	if [ -n "${OCOLOS_QEMU:-}" ]; then
		"$OCOLOS_QEMU" -L / -p "$page" "$prog" "$@"
	else
		"$prog" "$@"
	fi
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocolos-a64.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
for m in plain $mode; do
	echo "== $prog $m (pages $page)" >&2
	run $m >"$tmp/$m.out"
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL: '$prog $m' exited with $rc" >&2
		exit 1
	fi
done
if ! cmp -s "$tmp/plain.out" "$tmp/$mode.out"; then
	echo "FAIL: output differs after the round:" >&2
	diff "$tmp/plain.out" "$tmp/$mode.out" >&2
	exit 1
fi
cat "$tmp/$mode.out"
echo "PASS: identical output with and without the round" >&2

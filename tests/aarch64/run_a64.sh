#!/usr/bin/env bash
# Run an AArch64 test program under qemu-user when cross-built (natively
# otherwise), with a watchdog: a run that does not end within its limit is
# reported — what each thread was doing, whether the guest had started a
# thread, the guest's backtrace when gdb-multiarch is installed — and
# killed, so every AArch64 test ends with a failure that says what happened
# instead of hanging until ctest's timeout.
#
# Usage: run_a64.sh PAGESIZE PROGRAM [MODE]
#          integration: PROGRAM plain, then PROGRAM MODE (default round);
#          their stdout must be identical
#        run_a64.sh --once PAGESIZE PROGRAM [ARGS...]
#          unit: PROGRAM ARGS once; its exit code is the test's
#   PAGESIZE  4096 or 65536 (qemu-aarch64 -p; ignored when running natively)
# Environment: OCOLOS_QEMU = qemu-aarch64 path ("" when running natively);
#   OCOLOS_A64_LIMIT = seconds one run may take (default 95: just under the
#   integration programs' own 100 s SIGALRM watchdog, which only says "the
#   test hung", so that a run too slow or stuck is reported here first, with
#   its threads' states, whether it is spinning or starved of CPU, and where).
set -euo pipefail
once=0
if [ "${1:-}" = --once ]; then
	once=1
	shift
fi
page=$1 prog=$2
shift 2
case $prog in /*) ;; *) prog=$PWD/$prog ;; esac # runs from a scratch directory
limit=${OCOLOS_A64_LIMIT:-95}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocolos-a64.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# report PID: what the process and each of its threads is doing. Under
# qemu-user every guest thread is a host thread, plus qemu's RCU thread.
report() {
	local pid=$1 t n=0 hz f
	local -A cpu=()
	hz=$(getconf CLK_TCK)
	# /proc/PID/task/TID/stat after "(comm) ": 0 state, 11 utime, 12 stime
	for t in /proc/"$pid"/task/*; do
		f=($(sed 's/.*) //' "$t/stat" 2>/dev/null)) && [ ${#f[@]} -gt 12 ] || continue
		cpu[$t]=$(( f[11] + f[12] ))
	done
	sleep 1
	for t in "${!cpu[@]}"; do
		f=($(sed 's/.*) //' "$t/stat" 2>/dev/null)) && [ ${#f[@]} -gt 12 ] || continue
		n=$((n + 1))
		echo "  thread ${t##*/}: state ${f[0]}, cpu $(( (f[11] + f[12]) / hz )) s" \
			"($(( (f[11] + f[12] - cpu[$t]) * 100 / hz ))% of a cpu in the last second)," \
			"host syscall $(cut -d' ' -f1 "$t/syscall" 2>/dev/null || echo ?)," \
			"wchan $(cat "$t/wchan" 2>/dev/null || echo ?)" >&2
	done
	local used note=
	if f=($(sed 's/.*) //' /proc/"$pid"/stat 2>/dev/null)) && [ ${#f[@]} -gt 12 ]; then
		used=$(( (f[11] + f[12]) / hz ))
		[ $((used * 4)) -lt "$limit" ] &&
			note=": waiting for a CPU (a busy machine) or blocked most of the time"
		echo "  the process used $used s of CPU in its $limit s$note" >&2
	fi
	if [ -n "${OCOLOS_QEMU:-}" ] && [ $n -le 2 ]; then
		echo "  only qemu's own threads: the guest never created a thread" >&2
	fi
}

# guest_backtrace CORE: every guest thread's stack from qemu-user's core.
# Its core has no NT_FILE and leaves read-only segments out, so gdb cannot
# place the executable or ld.so by itself: their load addresses come from
# the core's auxiliary vector (AT_ENTRY, AT_BASE); libc's frames stay bare.
guest_backtrace() {
	local core=$1 auxv entry base e_entry
	auxv=$(gdb-multiarch -q -batch -ex 'info auxv' -c "$core" 2>/dev/null) || return 0
	entry=$(awk '$2 == "AT_ENTRY" { print $NF }' <<<"$auxv")
	base=$(awk '$2 == "AT_BASE" { print $NF }' <<<"$auxv")
	e_entry=$(readelf -h "$prog" | awk '/Entry point/ { print $NF }')
	[ -n "$entry" ] && [ -n "$e_entry" ] || return 0
	local args=(-ex 'set sysroot /' -ex "add-symbol-file $prog -o $((entry - e_entry))")
	[ -n "$base" ] && [ -e /lib/ld-linux-aarch64.so.1 ] &&
		args+=(-ex "add-symbol-file /lib/ld-linux-aarch64.so.1 -o $((base))")
	gdb-multiarch -q -batch "${args[@]}" -ex 'thread apply all bt 16' -c "$core" 2>&1 |
		awk '/^Thread/ { p = 1 } p && /^(#|Thread)/'
}

# guarded OUT ARGS...: run the program with ARGS, stdout to OUT; its exit
# code, or 124 after reporting and killing it when it overruns the limit.
guarded() {
	local out=$1 pid sleeper done rc=0
	shift
	if [ -n "${OCOLOS_QEMU:-}" ]; then
		# A guest core (qemu-user writes qemu_*.core into its cwd on SIGQUIT).
		(cd "$tmp" && ulimit -c unlimited 2>/dev/null || true
		 exec "$OCOLOS_QEMU" -L / -p "$page" "$prog" "$@") >"$out" &
	else
		"$prog" "$@" >"$out" &
	fi
	pid=$!
	sleep "$limit" &
	sleeper=$!
	wait -n -p done "$pid" "$sleeper" || rc=$?
	if [ "$done" = "$pid" ]; then
		kill "$sleeper" 2>/dev/null || true
		return $rc
	fi
	echo "FAIL: '$prog${*:+ $*}' (pages $page) did not finish within $limit s" \
		"(OCOLOS_A64_LIMIT); pid $pid:" >&2
	report "$pid"
	kill -QUIT "$pid" 2>/dev/null || true
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "  it did not react to SIGQUIT within 10 s${OCOLOS_QEMU:+ (qemu itself is stuck, not the guest)}; killed" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	local core
	core=$(ls "$tmp"/qemu_*.core 2>/dev/null | head -1) || true
	if [ -n "$core" ] && command -v gdb-multiarch >/dev/null; then
		echo "  the guest's threads at SIGQUIT (gdb-multiarch):" >&2
		guest_backtrace "$core" | sed 's/^/    /' >&2 || true
	elif [ -n "$core" ]; then
		echo "  (a guest core was written; install gdb-multiarch for its backtrace)" >&2
	fi
	return 124
}

if [ $once = 1 ]; then
	rc=0
	guarded "$tmp/out" "$@" || rc=$?
	cat "$tmp/out"
	exit $rc
fi

mode=${1:-round}
for m in plain "$mode"; do
	echo "== $prog $m (pages $page)" >&2
	rc=0
	guarded "$tmp/$m.out" "$m" || rc=$?
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

#!/bin/sh
# Pid-mode cases (tests/pid/pid_driver.c) run one after another inside the
# AArch64 guest, in one boot (scripts/a64vm.sh run; busybox sh there):
#
#   vm_pid.sh DRIVER SCALE CASE...
#
# Each CASE is one driver command line, "MODE TARGET [TOOL]", run with
# OCOLOS_TEST_SCALE=SCALE (the guest emulates the CPU: waits and limits
# stretch) and OCOLOS_TEST_KILLS=4 (agent-kill: each kill that waits for the
# replace stage costs a whole emulated round). Each case's time is printed;
# the first failing case ends the run with its exit code (77: skipped).
driver=$1 scale=$2
shift 2
echo "guest: kernel $(uname -r), $(grep -m1 KernelPageSize /proc/self/smaps | tr -s ' '), $(nproc) CPUs"
for c in "$@"; do
	t0=$(date +%s)
	echo "== case: $c"
	# word splitting of $c is intended: MODE TARGET [TOOL]
	# shellcheck disable=SC2086
	env OCOLOS_TEST_SCALE="$scale" OCOLOS_TEST_KILLS=4 "$driver" $c
	rc=$?
	echo "== case: $c: exit $rc after $(( $(date +%s) - t0 )) s"
	[ $rc -eq 0 ] || exit $rc
done

#!/usr/bin/env bash
# llvm-bolt wrapper for benchmarks: runs a basic-sample (`--pa --ba`) profile
# through BOLT's aggregator first, then optimizes with the resulting fdata.
#
# Why: with llvm-bolt 22, `llvm-bolt BIN --pa --ba -p S-RECORDS ...` in ONE
# invocation attaches the samples to functions ("Sample Count") but never
# turns them into basic-block counts, so every block has an unknown count,
# ext-tsp orders blocks blindly and --split-functions splits nothing
# (docs/benchmarks.md, "BOLT option study"). Aggregating first
# (`--aggregate-only`, same as perf2bolt) and passing `-data FDATA` gives
# BOLT real block counts.
#
# Use it as the library's bolt_path (opts.bolt_path; bench: frontend_main
# --ocolos-bolt, autoself OCOLOS_BOLT). Arguments are llvm-bolt's; anything
# else is passed through unchanged (e.g. `--help-hidden` for the library's
# probe). Environment:
#   BOLT_REAL   the real llvm-bolt (default /usr/lib/llvm-22/bin/llvm-bolt)
#   BOLT_DROP   space-separated arguments to remove (e.g. "--split-functions")
#   BOLT_ADD    space-separated arguments to add
set -u
real=${BOLT_REAL:-/usr/lib/llvm-22/bin/llvm-bolt}
drop=" ${BOLT_DROP:-} "
pa=0 ba=0 prof= out= args=()
while [[ $# -gt 0 ]]; do
	a=$1
	shift
	case $a in
	--pa) pa=1 ;;
	--ba) ba=1 ;;
	-p=* | --p=*) prof=${a#*=} ;;
	-p | --p) prof=$1; shift ;;
	-o=*) out=${a#*=}; args+=("$a") ;;
	*)
		if [[ $drop == *" $a "* ]]; then continue; fi
		args+=("$a")
		;;
	esac
done
# shellcheck disable=SC2206
add=(${BOLT_ADD:-})
if [[ $pa == 1 && $ba == 1 && -n $prof ]]; then
	bin=${args[0]}
	fdata=${out:-$prof}.fdata
	"$real" "$bin" --aggregate-only --pa --ba -p "$prof" -o "$fdata" || exit $?
	exec "$real" "${args[@]}" "-data=$fdata" "${add[@]}"
fi
# Not a basic-sample run: pass through (restoring what was taken apart).
extra=()
[[ $pa == 1 ]] && extra+=(--pa)
[[ $ba == 1 ]] && extra+=(--ba)
[[ -n $prof ]] && extra+=("-p=$prof")
exec "$real" "${args[@]}" "${extra[@]}" "${add[@]}"

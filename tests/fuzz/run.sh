#!/bin/sh
# The fuzz targets of this directory, for ctest -L fuzz (docs/fuzzing.md).
#
#   run.sh build SRC-DIR BUILD-DIR [LLVM-BOLT]
#       configure and build this directory's project with clang in
#       BUILD-DIR, then write the seed corpus (fuzz_seeds) to BUILD-DIR/seeds
#   run.sh run BUILD-DIR TARGET SECONDS
#       first every regression input (regress/TARGET/*: inputs that once
#       crashed, each must now pass), then fuzz_TARGET for SECONDS on a
#       fresh copy of its seeds; prints libFuzzer's final statistics and
#       the line its figures in docs/fuzzing.md come from
#   run.sh coverage BUILD-DIR TARGET [CORPUS-DIR]
#       the edges the corpus (default: the last run's) covers, per source
#       file of the library, from libFuzzer's -print_coverage
#
# A crash leaves its input in BUILD-DIR/artifacts/; fix the parser, then add
# the input to regress/TARGET/ (see docs/fuzzing.md).
# Environment: CC (clang), CMAKE.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

case $1 in
build)
	src=$2 build=$3 bolt=${4:-}
	"${CMAKE:-cmake}" -S "$here" -B "$build" -DCMAKE_C_COMPILER="${CC:-clang}" \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.log" 2>&1 ||
		{ cat "$build.log" >&2; fail "configuring the fuzzers failed"; }
	# As many jobs as the machine has (OCOLOS_FUZZ_JOBS overrides): most of
	# the fuzz label's time.
	"${CMAKE:-cmake}" --build "$build" -j"${OCOLOS_FUZZ_JOBS:-$(nproc)}" >>"$build.log" 2>&1 ||
		{ tail -n 40 "$build.log" >&2; fail "building the fuzzers failed"; }
	rm -rf "$build/seeds"
	"$build/fuzz_seeds" "$build/seeds" "$build/fuzz_fixture" "$bolt" ||
		fail "writing the seed corpus failed"
	for d in "$build"/seeds/*/; do
		echo "seeds: $(basename "$d"): $(ls "$d" | wc -l) files" >&2
	done
	;;
run)
	build=$2 t=$3 secs=$4
	fz=$build/fuzz_$t
	[ -x "$fz" ] || fail "$fz is not built (run.sh build)"
	if [ -d "$here/regress/$t" ] && [ -n "$(ls "$here/regress/$t")" ]; then
		"$fz" "$here"/regress/"$t"/* >"$build/regress-$t.log" 2>&1 ||
			{ tail -n 30 "$build/regress-$t.log" >&2; fail "a regression input of $t fails again"; }
		echo "$t: $(ls "$here/regress/$t" | wc -l) regression inputs pass" >&2
	fi
	corpus=$build/corpus/$t
	rm -rf "$corpus"
	mkdir -p "$corpus" "$build/artifacts"
	cp "$build/seeds/$t/"* "$corpus/" 2>/dev/null || true
	# -timeout: one input taking 10 s is a hang worth reporting; the RSS
	# limit keeps a runaway allocation a finding rather than an OOM kill.
	if ! "$fz" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$build/artifacts/$t-" "$corpus" >"$build/fuzz-$t.log" 2>&1; then
		grep -E 'ERROR|runtime error|SUMMARY|#[0-9]+ 0x' "$build/fuzz-$t.log" | head -n 40 >&2
		fail "fuzz_$t found a crash: $(ls "$build/artifacts/$t-"* 2>/dev/null | head -n 1)"
	fi
	grep -E 'INFO: Loaded 1 modules|INITED|DONE|stat::' "$build/fuzz-$t.log" >&2
	;;
coverage)
	build=$2 t=$3 corpus=${4:-$2/corpus/$3}
	"$build/fuzz_$t" -runs=0 -print_coverage=1 "$corpus" 2>&1 |
		awk '/^(UN)?COVERED_FUNC:/ {
			split($5, e, "/"); f = $NF; sub(/:[0-9]+$/, "", f);
			if (f !~ /\/lib\//) next; sub(/.*\/lib\//, "lib/", f);
			cov[f] += e[1]; tot[f] += e[2]; C += e[1]; T += e[2] }
		END { for (f in cov) if (cov[f]) printf "%-32s %5d / %5d edges\n", f, cov[f], tot[f];
		      printf "%-32s %5d / %5d edges (files reached: all their functions)\n", "total", C, T }' |
		sort
	;;
*)
	fail "unknown mode '$1'"
	;;
esac

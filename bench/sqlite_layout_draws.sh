#!/usr/bin/env bash
# SQLite's layout after a round, as a distribution: how much of the
# original's I1 misses the optimized code removes, over many rounds of two
# kinds of window, by callgrind's cache simulation (deterministic for one
# binary, so all the spread is the rounds').
#
# Why many rounds: SQLite's hot code (~45 KB after BOLT) is larger than a
# 32 KiB I1, so its misses are mostly conflicts, and which hot blocks land
# on which cache sets changes with every profile. One round's figure says
# little about a window (2026-12-03: 0.86-1.22 MPKI over six rounds at
# --size 20, with no order by the number of samples).
#
# Sides, alternating (ABAB...), N rounds each, one fresh process per round
# (bench/out/sqlite/speedtest1-nopie --memdb --size 50, the `main` test set
# over and over, bench/autoself.c preloaded, the round after AFTER s):
#   default  the library's default round (a converging window under the
#            default 2 % cost limit)
#   dense    a fixed 6 s window at 10 kHz, no cost limit (~46k samples in
#            the binary: the dense profile)
# Each round's optimized binary (c1.bolt in the kept work directory, a
# whole runnable program) and the original run under
#   valgrind --tool=callgrind --cache-sim=yes --I1=32768,8,64
#     --D1=49152,12,64 --LL=2097152,16,64 ... --memdb --size SIZE
#     --testset main
# (one callgrind at a time in the background while the next round runs),
# with --branch-sim=yes as well. Prints per round the I1 misses per 1000
# instructions and the estimated speedup over the original, and per side the
# median, the range and the median share of the original's misses removed;
# then default/dense of those medians.
#
# The estimated speedup is the original's cycle estimate over the round's,
# callgrind's CEst as KCachegrind defines it: Ir + 10 Bm + 10 L1m + 100 LLm
# (instructions, mispredicted branches, first-level misses of code and
# data, last-level misses): a model, deterministic per binary, not a
# timing. Printed, not relied on: on SQLite it moves by about 1 % for
# layouts that remove three quarters of the I1 misses, far less than the
# measured wall-time gain (docs/benchmarks.md, "Converging on blocks").
#
#   bench/sqlite_layout_draws.sh
#   env: N (rounds per side, default 8), SIZE (callgrind's --size, default
#        20: ~1 min each), AFTER (default 5), I1 (callgrind's --I1, default
#        32768,8,64), KEEP_BOLT (1: keep each round's binary in the run
#        directory, to simulate again)
# needs bench/out/sqlite/speedtest1-nopie and autoself.so
# (bench/build_sqlite.sh) and valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${N:-8} SIZE=${SIZE:-20} AFTER=${AFTER:-5} I1=${I1:-32768,8,64}
sq=$here/out/sqlite/speedtest1-nopie
[ -x "$sq" ] && [ -f "${sq%/*}/autoself.so" ] ||
	{ echo "sqlite_layout_draws: $sq or autoself.so missing: run bench/build_sqlite.sh" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "sqlite_layout_draws: needs valgrind" >&2; exit 2; }
out=$here/out/sqlite_layout.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
sets=$(printf 'main,%.0s' $(seq 400)); sets=${sets%,}

mpki() { # callgrind's stderr -> I1 misses per 1000 instructions, CEst
	python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def n(label):  # the first figure after the label (totals come first)
    return int(re.search(label + r':\s+([\d,]+)', t).group(1).replace(',', ''))
i, m = n(r'I\s+refs'), n(r'I1\s+misses')
l1 = m + n(r'D1\s+misses')
ll = n(r'LLi\s+misses') + n(r'LLd\s+misses')
print('%.4f %d' % (1000 * m / i, i + 10 * n(r'Mispredicts') + 10 * l1 + 100 * ll))
PY
}
cachesim() { # binary tag
	valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes --I1="$I1" --D1=49152,12,64 \
		--LL=2097152,16,64 --callgrind-out-file=/dev/null "$1" --memdb --size "$SIZE" \
		--testset main >/dev/null 2>"$out/$2.cg" || { echo "$2: callgrind failed" >&2; return 1; }
	local r
	r=$(mpki "$out/$2.cg") || { echo "$2: no figures in $out/$2.cg" >&2; return 1; }
	echo "$2 $r" >>"$out/mpki.txt"
}

cachesim "$sq" original &
bg=$!
for ((r = 1; r <= N; r++)); do
	order="default dense"; [ $((r % 2)) = 0 ] && order="dense default"
	for side in $order; do
		tag=$side.$r
		extra=(); [ "$side" = dense ] && extra=(OCOLOS_PROFILE_MS=6000)
		env "${extra[@]}" OCOLOS_KEEP=1 OCOLOS_VERBOSE=1 OCOLOS_AFTER="$AFTER" LD_PRELOAD="${sq%/*}/autoself.so" \
			"$sq" --memdb --size 50 --testset "$sets" >/dev/null 2>"$out/$tag.err" &
		pid=$!
		# The round's line ends the run: the rest of the passes are not needed.
		while kill -0 "$pid" 2>/dev/null && ! grep -q '^ocolos rc' "$out/$tag.err"; do sleep 1; done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		line=$(grep '^ocolos rc' "$out/$tag.err" || true)
		case $line in "ocolos rc=0 "*) ;; *) echo "$tag: the round failed: $line" >&2; exit 1 ;; esac
		dir=$(grep -o 'work directory kept: [^ ]*' "$out/$tag.err" | awk '{print $4}' || true)
		[ -x "$dir/c1.bolt" ] || { echo "$tag: no $dir/c1.bolt" >&2; exit 1; }
		mv "$dir/c1.bolt" "$out/$tag.bolt"
		rm -rf "$dir"
		echo "$tag $(echo "$line" | grep -o 'samples_in_binary=[0-9]*') $(echo "$line" | grep -o 'profile_ns=[0-9]*')" >>"$out/rounds.txt"
		wait "$bg" || exit 1
		cachesim "$out/$tag.bolt" "$tag" &
		bg=$!
	done
done
wait "$bg" || exit 1
[ "${KEEP_BOLT:-0}" = 1 ] || rm -f "$out"/*.bolt
python3 - "$out" <<'PY'
import statistics, sys
out = sys.argv[1]
mp = {l.split()[0]: l.split()[1:] for l in open(out + '/mpki.txt')}
rounds = {l.split()[0]: l.split()[1:] for l in open(out + '/rounds.txt')}
orig, orig_c = float(mp['original'][0]), int(mp['original'][1])
del mp['original']
print('original: %.3f I1 MPKI, CEst %d' % (orig, orig_c))
med, spd = {}, {}
for side in ('default', 'dense'):
    tags = sorted((t for t in mp if t.split('.')[0] == side), key=lambda t: int(t.split('.')[1]))
    v = [float(mp[t][0]) for t in tags]
    sp = [orig_c / int(mp[t][1]) for t in tags]
    for t, x in zip(tags, sp):
        print('  %-10s %.3f  est. speedup %.4f  %s' % (t, float(mp[t][0]), x, ' '.join(rounds[t])))
    med[side], spd[side] = statistics.median(v), statistics.median(sp)
    rem = [1 - x / orig for x in v]
    print('%s: median %.3f (range %.3f-%.3f, n=%d), misses removed: median %.1f %% (range %.1f-%.1f %%)'
          % (side, med[side], min(v), max(v), len(v), 100 * statistics.median(rem),
             100 * min(rem), 100 * max(rem)))
    print('%s: estimated speedup median %.4f (range %.4f-%.4f)' % (side, spd[side], min(sp), max(sp)))
g = {s: 1 - med[s] / orig for s in med}
print('default/dense, share of the misses removed (medians): %.2f' % (g['default'] / g['dense']))
print('default/dense, estimated speedup (medians): %.4f' % (spd['default'] / spd['dense']))
PY
echo "logs: $out"

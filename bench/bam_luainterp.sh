#!/usr/bin/env bash
# Batch Accelerator Mode on a batch of short interpreter runs, the binary
# having relocations: Lua 5.4 from Debian's source package, built here with
# -O2 -Wl,--emit-relocs (BOLT's relocation mode), running 32 short scripts
# under `make -j2`. Figures go to docs/benchmarks.md, "Batch accelerator mode".
#
#   bench/bam_luainterp.sh BUILD_DIR     (BUILD_DIR holds tools/ocolos-bam)
#   env: REPS (interleaved repetitions, default 3), JOBS (default 2),
#        FIRST_OPTS (more ocolos-bam options for the first batch, e.g.
#        "--profile-runs 32 --profile-samples 100000": every run profiled),
#        INSTRUMENT (N or auto: ocolos-bam --instrument N; the first batch makes
#        the instrumented lua, a batch `first2` runs N scripts instrumented
#        and BOLT takes their counts; unset: sampled, --instrument 0)
#
# Batches, timed (CPU time of the batch, and wall clock):
#   ref      no ocolos-bam (the oracle's outputs)
#   first    ocolos-bam --target lua on a fresh cache (defaults: 10 runs
#            profiled, BOLT once 2000 samples are in, in the background)
#   plain    no ocolos-bam                                  (REPS, interleaved)
#   later    ocolos-bam once the optimized lua exists        (REPS, interleaved)
# Every output of every batch must be byte-identical to ref's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bdir=$(cd "${1:?usage: bam_luainterp.sh BUILD_DIR}" && pwd)
bam=$bdir/tools/ocolos-bam
REPS=${REPS:-3} JOBS=${JOBS:-2}
log() { echo "bam_luainterp: $*" >&2; }
srcroot=$here/out/bam/src
src=$(ls -d "$srcroot"/lua5.4-*/src 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
	. "$here/debsrc.sh"
	ensure_sources
	mkdir -p "$srcroot"
	(cd "$srcroot" && apt-get source -q lua5.4 2>&1 | tail -2) >&2
	src=$(ls -d "$srcroot"/lua5.4-*/src | head -1)
fi
. "$here/debsrc.sh"
lua_multiarch_header "$src"
out=$here/out/bam/interp.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/run" "$out/ref" "$out/bin"
cache=$out/cache
srcs=$(ls "$src"/*.c | grep -v '/luac\.c$')
# shellcheck disable=SC2086
gcc -std=gnu99 -O2 -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -Wl,--emit-relocs -o "$out/bin/lua" $srcs -lm -ldl
cat > "$out/run/work.lua" <<'EOF'
-- A short interpreter job: tables, strings, closures, sorting.
local seed = tonumber(arg[1])
local t, acc = {}, 0
for i = 1, 120000 do t[i] = (i * 7919 + seed) % 100003 end
table.sort(t)
for i = 1, #t, 3 do acc = (acc + t[i] * i) % 1000000007 end
local parts = {}
for i = 1, 40000 do parts[#parts + 1] = string.format("%x", (i * seed) % 65521) end
local s = table.concat(parts, ",")
local words = 0
for w in s:gmatch("[^,]+") do if #w > 2 then words = words + 1 end end
local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
print(seed, acc, #s, words, fib(26))
EOF
n=32
{
	printf 'all:'; for i in $(seq 1 $n); do printf ' o%d.out' "$i"; done; echo
	printf 'o%%.out:\n\tlua work.lua $* > $@\n'
} > "$out/run/Makefile"
cd "$out/run"
export PATH=$out/bin:$PATH
now() { date +%s.%N; }
results=$out/results.tsv
echo -e "kind\trep\tseconds\tcpu_seconds\tinvocations\tprofiled\toptimized" > "$results"
# CPU time (user+sys of everything waited for: the build, not a detached
# BOLT) is what the comparison uses: wall time on this shared 2-core
# machine moves by 10-20 % with the other jobs.
timed() { /usr/bin/time -f "%e %U %S" -o "$out/t.tmp" "$@"; }
batch() { # batch KIND REP [ocolos-bam options...]
	local kind=$1 rep=$2; shift 2
	rm -f ./*.out
	local t0 t1 j="" f=(0 0 0)
	t0=$(now)
	if [ $# -eq 0 ]; then
		timed make -s -j"$JOBS" >/dev/null
	else
		timed "$bam" --cache "$cache" --instrument 0 "$@" -- make -s -j"$JOBS" >/dev/null 2> "$out/$kind.$rep.err"
		j=$(grep '^{"tool"' "$out/$kind.$rep.err" | tail -1)
		f=()
		for k in invocations invocations_profiled invocations_optimized; do
			f+=("$(grep -o "\"$k\":[0-9]*" <<< "$j" | head -1 | cut -d: -f2)")
		done
	fi
	t1=$(now)
	local s cpu; s=$(echo "$t1 - $t0" | bc)
	cpu=$(awk '{print $2 + $3}' "$out/t.tmp")
	echo -e "$kind\t$rep\t$s\t$cpu\t${f[0]}\t${f[1]}\t${f[2]}" >> "$results"
	log "$kind $rep: ${s}s wall ${cpu}s cpu ${j:0:200}"
	if [ "$kind" = ref ]; then
		cp ./*.out "$out/ref/"
	else
		for o in ./*.out; do cmp -s "$o" "$out/ref/$o" || { log "ORACLE: $o differs ($kind $rep)"; exit 1; }; done
	fi
}
batch ref 0
IOPTS=${INSTRUMENT:+--instrument $INSTRUMENT}
# shellcheck disable=SC2086
batch first 0 --target lua ${FIRST_OPTS:-} $IOPTS
entry=$(ls -d "$cache"/e/* | head -1)
if [ -n "${INSTRUMENT:-}" ]; then
	# (On this short batch the instrumented runs and BOLT may all happen
	# within the first batch: then there is no first2.)
	while [ ! -e "$entry/instrumented" ] && [ ! -e "$entry/instrument-failed" ] &&
		[ ! -e "$entry/optimized" ]; do
		# --instrument auto waits for memory while a session runs; none does here
		[ ! -e "$entry/instrument-deferred" ] ||
			{ log "instrumentation deferred: $(head -1 "$entry/instrument-deferred")"; exit 1; }
		sleep 1
	done
	[ ! -e "$entry/instrument-failed" ] || { log "not instrumented: $(cat "$entry/instrument-failed")"; exit 1; }
	# shellcheck disable=SC2086
	[ -e "$entry/optimized" ] || batch first2 0 --target lua ${FIRST_OPTS:-} $IOPTS
fi
t0=$(now)
while [ ! -e "$entry/optimized" ] && [ ! -e "$entry/failed" ]; do sleep 1; done
t1=$(now)
[ -e "$entry/optimized" ] || { log "BOLT failed: $(cat "$entry/failed")"; exit 1; }
log "BOLT done $(echo "$t1 - $t0" | bc)s after the first batch ended; mode $(cat "$entry/mode")"
grep -E "BOLT-INFO: (basic block reordering|splitting|[0-9]+ out of)" "$entry"/bolt.log.2 >&2 || true
for r in $(seq 1 "$REPS"); do
	batch plain "$r"
	batch later "$r" --target lua
done
python3 - "$results" <<'EOF' | tee "$out/summary.txt"
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
t = {}
w = {}
for k, r, s, c, *_ in rows:
    t.setdefault(k, []).append(float(c))
    w.setdefault(k, []).append(float(s))
m = {k: st.median(v) for k, v in t.items()}
for k in ("ref", "first", "first2", "plain", "later"):
    if k in t: print(f"{k:8s} n={len(t[k])} cpu median={m[k]:.2f}s all={' '.join(f'{x:.2f}' for x in t[k])}; wall {' '.join(f'{x:.1f}' for x in w[k])}")
print(f"speedup later vs plain: {m['plain'] / m['later']:.3f}x")
for k in ("first", "first2"):
    if k in m: print(f"{k} batch vs plain: {(m[k] / m['plain'] - 1) * 100:+.1f}%")
EOF
log "results in $out"

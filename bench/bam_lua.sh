#!/usr/bin/env bash
# Batch Accelerator Mode on a real build: Lua 5.4 from Debian's source
# package, its 34 .c files compiled by Debian's gcc 12 (`make -j2`, -O2 -g),
# the target being cc1 (stripped, no --emit-relocs: BOLT's non-relocation
# mode). Figures go to docs/benchmarks.md, "Batch accelerator mode".
#
#   bench/bam_lua.sh BUILD_DIR     (BUILD_DIR holds tools/ocolos-bam)
#   env: REPS (interleaved repetitions, default 3), JOBS (default 2)
#
# Builds, each from clean, timed (CPU time of the build, and wall clock):
#   plain    no ocolos-bam                                   (REPS, interleaved)
#   profile  ocolos-bam, every cc1 profiled, BOLT never runs (REPS, interleaved):
#            the cost of profiling alone
#   first    ocolos-bam on a fresh cache, defaults but --target cc1
#            --allow-stripped: the first 10 cc1 profiled, BOLT started in the
#            background once 2000 samples are in or the build is over
#   fault    the first build with the optimized cc1: BOLT 22's cc1 faults on
#            every input here (docs/benchmarks.md), so this build measures
#            the fallback (quarantine, re-exec of the original)
#   later    ocolos-bam with the entry quarantined: the preload's cost when
#            nothing is optimized                          (REPS, interleaved)
# Oracle: every .o of every build is byte-identical to the first plain
# build's, or the script fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bdir=$(cd "${1:?usage: bam_lua.sh BUILD_DIR}" && pwd)
bam=$bdir/tools/ocolos-bam
REPS=${REPS:-3} JOBS=${JOBS:-2}
log() { echo "bam_lua: $*" >&2; }
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
out=$here/out/bam/run.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/build" "$out/ref"
cache=$out/cache
cat > "$out/build/Makefile" <<EOF
OBJS = \$(patsubst $src/%.c,%.o,\$(wildcard $src/*.c))
all: \$(OBJS)
%.o: $src/%.c
	gcc -std=gnu99 -O2 -g -DLUA_COMPAT_5_3 -DLUA_USE_POSIX -c \$< -o \$@
EOF
cd "$out/build"
now() { date +%s.%N; }
results=$out/results.tsv
echo -e "kind\trep\tseconds\tcpu_seconds\tinvocations\tprofiled\toptimized" > "$results"
# CPU time (user+sys of everything waited for: the build, not a detached
# BOLT) is what the comparison uses: wall time on this shared 2-core
# machine moves by 10-20 % with the other jobs.
timed() { /usr/bin/time -f "%e %U %S" -o "$out/t.tmp" "$@"; }
# build KIND REP [ocolos-bam options...]: one clean build, timed, checked.
build() {
	local kind=$1 rep=$2; shift 2
	rm -f ./*.o
	local t0 t1 j=""
	t0=$(now)
	if [ $# -eq 0 ]; then
		timed make -s -j"$JOBS" >/dev/null
	else
		timed "$bam" --cache "$cache" --instrument 0 "$@" -- make -s -j"$JOBS" >/dev/null 2> "$out/$kind.$rep.err"
		j=$(grep '^{"tool"' "$out/$kind.$rep.err" | tail -1)
	fi
	t1=$(now)
	local f=(0 0 0)
	if [ -n "$j" ]; then
		for k in invocations invocations_profiled invocations_optimized; do
			f+=("$(grep -o "\"$k\":[0-9]*" <<< "$j" | head -1 | cut -d: -f2)")
		done
		f=("${f[@]:3}")
	fi
	local s cpu; s=$(echo "$t1 - $t0" | bc)
	cpu=$(awk '{print $2 + $3}' "$out/t.tmp")
	echo -e "$kind\t$rep\t$s\t$cpu\t${f[0]}\t${f[1]}\t${f[2]}" >> "$results"
	log "$kind $rep: ${s}s wall ${cpu}s cpu ${j:0:160}"
	if [ "$kind" = ref ]; then
		cp ./*.o "$out/ref/"
	else
		for o in ./*.o; do cmp -s "$o" "$out/ref/$o" || { log "ORACLE: $o differs ($kind $rep)"; exit 1; }; done
	fi
}
build ref 0
# The profile-only builds use their own cache: no entry there ever gets BOLT.
pcache=$out/cache-profile
build first 0 --target cc1 --allow-stripped
t0=$(now)
entry=$(ls -d "$cache"/e/* | head -1)
while [ ! -e "$entry/optimized" ] && [ ! -e "$entry/failed" ]; do sleep 2; done
t1=$(now)
[ -e "$entry/optimized" ] || { log "BOLT failed: $(tail -3 "$entry"/bolt.log*)"; exit 1; }
log "BOLT done $(echo "$t1 - $t0" | bc)s after the first build ended; mode $(cat "$entry/mode")"
build fault 0 --target cc1 --allow-stripped
log "entry state: $(ls "$entry" | tr '\n' ' ')"
for r in $(seq 1 "$REPS"); do
	build plain "$r"
	cache_save=$cache; cache=$pcache
	build profile "$r" --target cc1 --profile-runs 100000 --profile-samples 1000000000
	cache=$cache_save
	build later "$r" --target cc1 --allow-stripped
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
for k in ("ref", "first", "fault", "plain", "profile", "later"):
    if k in t:
        print(f"{k:8s} n={len(t[k])} cpu median={m[k]:.2f}s all={' '.join(f'{x:.2f}' for x in t[k])}; wall {' '.join(f'{x:.1f}' for x in w[k])}")
print(f"later (quarantined entry) vs plain: {(m['later'] / m['plain'] - 1) * 100:+.1f}%")
print(f"profiling overhead (profile vs plain): {(m['profile'] / m['plain'] - 1) * 100:+.1f}%")
print(f"first build vs plain: {(m['first'] / m['plain'] - 1) * 100:+.1f}%")
EOF
log "results in $out"

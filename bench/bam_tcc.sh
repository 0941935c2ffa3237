#!/usr/bin/env bash
# Batch Accelerator Mode on a real build whose compiler has symbols and
# relocations: TinyCC from Debian's source package (`apt-get source tcc`),
# built here with -O2 -g -Wl,--emit-relocs (BOLT's relocation mode), used as
# CC for SQLite 3 from Debian's source package compiled file by file (the
# split sources of its bld/tsrc, FTS3/FTS5/R-Tree/Geopoly/JSON on: 101 .c
# files and one link of the sqlite3 shell per copy of the tree; COPIES copies
# per build, `make -j2`). Figures go to docs/benchmarks.md, "Batch
# accelerator mode".
#
#   bench/bam_tcc.sh BUILD_DIR     (BUILD_DIR holds tools/ocolos-bam)
#   env: REPS (interleaved repetitions, default 9), JOBS (default 2),
#        COPIES (copies of the tree per build, default 6: 612 tcc runs),
#        FIRST_OPTS (more ocolos-bam options for the first build and the
#        later ones, e.g. "--profile-runs 100"),
#        PERF_FREQ (perf cpu-clock rate for the perf ceiling, default
#        10000; 0 skips that ceiling)
#
# Builds, each from clean, timed (CPU time, user+sys of everything the build
# waited for, and wall clock):
#   ref       no ocolos-bam (the oracle's outputs)
#   first     ocolos-bam --target tcc on a fresh cache (FIRST_OPTS; by
#             default 10 runs profiled, BOLT in the background once 2000
#             samples are in or the build is over); the script then waits
#             for BOLT
#   allprof   ocolos-bam on another fresh cache, every tcc run profiled
#             (--profile-runs = the runs of one build): BOLT at the end with
#             the profile of ALL invocations -> tcc-ceil (the ceiling, same
#             pipeline and BOLT options as ocolos-bam's)
#   perfrec   perf record -e cpu-clock -F PERF_FREQ over the whole build
#             (hrtimer-based, not limited to the kernel's tick as the
#             preload's CPU-time timer is); its tcc samples become one spool
#             file of a third cache, whose entry ocolos-bam's own worker
#             then BOLTs -> tcc-ceilperf (a denser whole-build profile,
#             same pipeline)
# then REPS times, interleaved (the order rotated by one each repetition):
#   plain     no ocolos-bam
#   later     ocolos-bam --target tcc FIRST_OPTS, the optimized tcc cached
#   ceil      tcc-ceil used directly as CC (no ocolos-bam)
#   ceilperf  tcc-ceilperf used directly as CC (no ocolos-bam)
#   profile   ocolos-bam, every tcc run profiled, BOLT never runs (a fresh
#             cache each time): the cost of profiling every run
# Every output (.o files and the linked sqlite3) of every build must be
# byte-identical to ref's, or the script fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bdir=$(cd "${1:?usage: bam_tcc.sh BUILD_DIR}" && pwd)
bam=$bdir/tools/ocolos-bam
REPS=${REPS:-9} JOBS=${JOBS:-2} COPIES=${COPIES:-6} PERF_FREQ=${PERF_FREQ:-10000}
log() { echo "bam_tcc: $*" >&2; }
. "$here/debsrc.sh"
srcroot=$here/out/bam/src
mkdir -p "$srcroot"
getsrc() { # getsrc PKG GLOB: the unpacked source tree of PKG
	local d
	d=$(ls -d "$srcroot"/$2 2>/dev/null | head -1 || true)
	if [ -z "$d" ]; then
		ensure_sources
		(cd "$srcroot" && apt-get source -q "$1" 2>&1 | tail -2) >&2
		d=$(ls -d "$srcroot"/$2 | head -1)
	fi
	echo "$d"
}
tccsrc=$(getsrc tcc 'tcc-0.9*/')
sqsrc=$(getsrc sqlite3 'sqlite3-3*/')
tccsrc=${tccsrc%/} sqsrc=${sqsrc%/}
# TinyCC with symbols and relocations, installed under out/bam/tcc
# (--debug: configure's default links with -s, which --emit-relocs refuses).
tccroot=$here/out/bam/tcc
tcc=$tccroot/bin/tcc
if [ ! -x "$tcc" ]; then
	log "building $(basename "$tccsrc") with -O2 -g -Wl,--emit-relocs"
	rm -rf "$here/out/bam/tcc-build"
	mkdir -p "$here/out/bam/tcc-build"
	(cd "$here/out/bam/tcc-build" &&
		"$tccsrc/configure" --prefix="$tccroot" --triplet=x86_64-linux-gnu --debug \
			--extra-cflags="-O2 -g" --extra-ldflags="-Wl,--emit-relocs" >configure.log 2>&1 &&
		make -j"$JOBS" >make.log 2>&1 && make install >install.log 2>&1) ||
		{ log "tcc build failed: see $here/out/bam/tcc-build"; exit 1; }
fi
case $(readelf -S "$tcc") in *.rela.text*) ;; *) false ;; esac || { log "$tcc has no .rela.text"; exit 1; }
# SQLite's split sources (and the generated parse.c, opcodes.c, ...): the
# tsrc directory its `make sqlite3.c` assembles.
ts=$sqsrc/bld/tsrc
if [ ! -f "$sqsrc/bld/sqlite3.c" ]; then
	command -v tclsh >/dev/null || as_root apt-get install -y -q tcl
	log "generating SQLite's sources (configure; make sqlite3.c)"
	mkdir -p "$sqsrc/bld"
	(cd "$sqsrc/bld" && ../configure --disable-tcl >configure.log 2>&1 &&
		make -j"$JOBS" sqlite3.c >make.log 2>&1) ||
		{ log "SQLite generation failed: see $sqsrc/bld"; exit 1; }
fi
# Not compiled: fts1/fts2 (deprecated, #error), tclsqlite (Tcl), geopoly
# (included by rtree.c), the ICU tokenizers (need ICU).
srcs=$(cd "$ts" && ls ./*.c | sed 's|^\./||; s/\.c$//' | grep -vE '^(fts1|fts2|tclsqlite|geopoly|icu$|fts3_icu)')
out=$here/out/bam/tcc.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/build" "$out/ref" "$out/bin"
{
	echo "CFLAGS = -O2 -g -DSQLITE_CORE -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION" \
		"-DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_GEOPOLY" \
		"-I$ts -I$sqsrc/ext/rtree"
	printf 'all:'; for k in $(seq 1 "$COPIES"); do printf ' c%d/sqlite3' "$k"; done; echo
	for k in $(seq 1 "$COPIES"); do
		printf 'c%d/sqlite3:' "$k"; for s in $srcs; do printf ' c%d/%s.o' "$k" "$s"; done
		printf '\n\t$(CC) -o $@ $^ -lpthread -lm\n'
		printf 'c%d/%%.o: %s/%%.c\n\t@mkdir -p c%d\n\t$(CC) $(CFLAGS) -c $< -o $@\n' "$k" "$ts" "$k"
	done
} > "$out/build/Makefile"
cd "$out/build"
now() { date +%s.%N; }
results=$out/results.tsv
echo -e "kind\trep\tseconds\tcpu_seconds\tinvocations\tprofiled\toptimized\tspool_samples" > "$results"
# CPU time (user+sys of everything waited for: the build, not a detached
# BOLT) is what the comparison uses: wall time on this shared 2-core
# machine moves with the other jobs.
timed() { /usr/bin/time -f "%e %U %S" -o "$out/t.tmp" "$@"; }
jfield() { grep -o "\"$1\":[0-9]*" <<< "$2" | head -1 | cut -d: -f2; }
# build KIND REP CC [ocolos-bam options...]: one clean build, timed, checked.
# With options, under ocolos-bam with --cache "$cache".
build() {
	local kind=$1 rep=$2 cc=$3; shift 3
	rm -rf ./c[0-9]*
	local t0 t1 j="" f=(0 0 0 0)
	t0=$(now)
	if [ $# -eq 0 ]; then
		timed make -s -j"$JOBS" CC="$cc" >/dev/null
	else
		timed "$bam" --cache "$cache" --instrument 0 "$@" -- make -s -j"$JOBS" CC="$cc" >/dev/null 2> "$out/$kind.$rep.err"
		j=$(grep '^{"tool"' "$out/$kind.$rep.err" | tail -1)
		f=("$(jfield invocations "$j")" "$(jfield invocations_profiled "$j")"
			"$(jfield invocations_optimized "$j")" "$(jfield samples "$j")")
	fi
	t1=$(now)
	local s cpu; s=$(echo "$t1 - $t0" | bc)
	cpu=$(awk '{print $2 + $3}' "$out/t.tmp")
	echo -e "$kind\t$rep\t$s\t$cpu\t${f[0]}\t${f[1]}\t${f[2]}\t${f[3]}" >> "$results"
	log "$kind $rep: ${s}s wall ${cpu}s cpu ${j:0:300}"
	if [ "$kind" = ref ]; then
		cp -r ./c[0-9]* "$out/ref/"
	else
		local o
		for o in ./c[0-9]*/*; do
			cmp -s "$o" "$out/ref/$o" || { log "ORACLE: $o differs ($kind $rep)"; exit 1; }
		done
	fi
}
# wait_bolt CACHE: the one entry's BOLT outcome; prints the entry.
wait_bolt() {
	local e; e=$(ls -d "$1"/e/* | head -1)
	while [ ! -e "$e/optimized" ] && [ ! -e "$e/failed" ]; do sleep 1; done
	[ -e "$e/optimized" ] || { log "BOLT failed in $e: $(cat "$e/failed")"; exit 1; }
	grep -hE "BOLT-INFO: ([0-9]+ out of .* profile|basic block reordering|splitting separates)" \
		"$e"/bolt.log.2 | sed 's/^/    /' >&2 || true
	echo "$e"
}
build ref 0 "$tcc"
c1=$(ls c1/*.o | wc -l)
(echo 'create virtual table t using fts5(x); insert into t values("hello world");' \
	"select * from t where t match 'hello'; select sqlite_version();" | c1/sqlite3) >&2
cache=$out/cache
# shellcheck disable=SC2086
build first 0 "$tcc" --target "$tcc" ${FIRST_OPTS:-}
t0=$(now)
entry=$(wait_bolt "$cache")
first_samples=$(cat "$entry/samples")
log "BOLT done $(echo "$(now) - $t0" | bc)s after the first build ended; mode $(cat "$entry/mode"); $first_samples samples"
ninv=$(tail -1 "$results" | cut -f5)
log "$ninv tcc runs per build ($c1 objects and 1 link per copy, $COPIES copies)"
# The ceiling: the profile of all runs of a build, through the same pipeline.
cache=$out/cache-ceil
build allprof 0 "$tcc" --target "$tcc" --profile-runs "$ninv" --profile-samples 1000000000
e=$(wait_bolt "$cache")
ceil_samples=$(cat "$e/samples")
cp "$e/optimized" "$out/bin/tcc-ceil"
log "ceiling: $ceil_samples samples from $ninv runs"
if [ "$PERF_FREQ" != 0 ]; then
	rm -rf ./c[0-9]*
	perf record -q -e cpu-clock -F "$PERF_FREQ" -o "$out/perf.data" -- make -s -j"$JOBS" CC="$tcc" >/dev/null 2>&1
	for o in ./c[0-9]*/*; do cmp -s "$o" "$out/ref/$o" || { log "ORACLE: $o differs (perfrec)"; exit 1; }; done
	# Samples in tcc, per process (PIE: each run has its own load bias),
	# as link-time PCs: the spool format (uint64 each).
	cat > "$out/perf2spool.py" <<'EOF'
import os, re, struct, sys
binary, dst = os.path.realpath(sys.argv[1]), sys.argv[2]
with open(binary, "rb") as f:
    eh = f.read(64)
    phoff, = struct.unpack_from("<Q", eh, 32)
    phentsize, phnum = struct.unpack_from("<HH", eh, 54)
    f.seek(phoff)
    ph = f.read(phentsize * phnum)
segs = []
for i in range(phnum):
    t, _fl, off, va, _pa, fsz = struct.unpack_from("<IIQQQQ", ph, i * phentsize)
    if t == 1:
        segs.append((off, va, fsz))
mm = re.compile(r"^\s*(\d+)\s.*PERF_RECORD_MMAP2?\s+(\d+)/\d+:\s+\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\)"
                r"\s+@\s+(0x[0-9a-f]+|0)\b.*\]:\s+(\S+)\s+(.*)$")
maps, pcs, total = {}, [], 0
for line in sys.stdin:
    if "PERF_RECORD_MMAP" in line:
        m = mm.search(line)
        if m and "x" in m.group(6) and os.path.realpath(m.group(7).strip()) == binary:
            s, n = int(m.group(3), 16), int(m.group(4), 16)
            maps.setdefault(int(m.group(2)), []).append((s, s + n, int(m.group(5), 16)))
        continue
    p = line.split()
    if len(p) < 3 or not p[0].isdigit():
        continue
    total += 1
    if os.path.basename(p[2].strip("()")) != os.path.basename(binary):
        continue
    ip = int(p[1], 16)
    for s, e, pg in maps.get(int(p[0]), ()):
        if s <= ip < e:
            o = ip - s + pg
            for so, sv, sz in segs:
                if so <= o < so + sz:
                    pcs.append(o - so + sv)
            break
with open(dst, "wb") as f:
    f.write(struct.pack("<%dQ" % len(pcs), *pcs))
print("perf samples %d, in tcc %d" % (total, len(pcs)), file=sys.stderr)
EOF
	perf script -i "$out/perf.data" --show-mmap-events -F pid,ip,dso 2>/dev/null |
		python3 "$out/perf2spool.py" "$tcc" "$out/perf.spool"
	perf_samples=$(( $(stat -c %s "$out/perf.spool") / 8 ))
	# A fresh entry: one profiled run (of 2) makes it, the perf samples go
	# into its spool, the second run ends the profiling and starts BOLT
	# (env: CMD itself is never a target, the processes it execs are).
	cache=$out/cache-ceilperf
	echo 'int main(void) { return 0; }' > "$out/tiny.c"
	"$bam" --cache "$cache" --instrument 0 --target "$tcc" --profile-runs 2 --profile-samples 1000000000 -- \
		env "$tcc" -c "$out/tiny.c" -o "$out/tiny.o" 2>/dev/null
	e=$(ls -d "$cache"/e/* | head -1)
	mkdir -p "$e/spool"
	cp "$out/perf.spool" "$e/spool/1.1.s"
	"$bam" --cache "$cache" --instrument 0 --target "$tcc" --profile-runs 2 --profile-samples 1000000000 --wait -- \
		env "$tcc" -c "$out/tiny.c" -o "$out/tiny.o" 2>/dev/null
	e=$(wait_bolt "$cache")
	cp "$e/optimized" "$out/bin/tcc-ceilperf"
	log "perf ceiling: $perf_samples samples in tcc at $PERF_FREQ Hz"
fi
run_kind() { # run_kind KIND REP
	case $1 in
	plain) build plain "$2" "$tcc" ;;
	later)
		cache=$out/cache
		# shellcheck disable=SC2086
		build later "$2" "$tcc" --target "$tcc" ${FIRST_OPTS:-} ;;
	ceil) build ceil "$2" "$out/bin/tcc-ceil" ;;
	ceilperf) build ceilperf "$2" "$out/bin/tcc-ceilperf" ;;
	profile)
		cache=$out/cache-profile
		rm -rf "$cache"
		build profile "$2" "$tcc" --target "$tcc" --profile-runs 100000000 \
			--profile-samples 1000000000000 ;;
	esac
}
kinds=(plain later ceil profile)
[ "$PERF_FREQ" = 0 ] || kinds=(plain later ceil ceilperf profile)
# Each repetition runs every kind once, the order rotated by one each time
# (the other jobs on the machine come and go: no kind always goes first).
for r in $(seq 1 "$REPS"); do
	for i in $(seq 0 $((${#kinds[@]} - 1))); do
		run_kind "${kinds[$(((i + r - 1) % ${#kinds[@]}))]}" "$r"
	done
done
{
	echo "tcc runs per build: $ninv; first build's profile: $first_samples samples" \
		"(FIRST_OPTS: ${FIRST_OPTS:-none}); ceiling profile: $ceil_samples samples (preload, all runs)"
	[ "$PERF_FREQ" = 0 ] || echo "perf ceiling profile: $perf_samples samples in tcc at $PERF_FREQ Hz"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg) at the end"
} > "$out/summary.txt"
python3 - "$results" <<'EOF' | tee -a "$out/summary.txt"
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
cpu, wall, by = {}, {}, {}
for k, r, s, c, *rest in rows:
    cpu.setdefault(k, []).append(float(c))
    wall.setdefault(k, []).append(float(s))
    by[(k, r)] = (float(c), float(s))
m = {k: st.median(v) for k, v in cpu.items()}
mw = {k: st.median(v) for k, v in wall.items()}
for k in ("ref", "first", "allprof", "plain", "later", "ceil", "ceilperf", "profile"):
    if k in cpu:
        print(f"{k:8s} n={len(cpu[k])} cpu median={m[k]:.2f}s all={' '.join(f'{x:.2f}' for x in cpu[k])};"
              f" wall median={mw[k]:.2f}s all={' '.join(f'{x:.1f}' for x in wall[k])}")
reps = sorted({r for k, r in by if k == "plain"}, key=int)
def pairs(k, i):
    v = [by[("plain", r)][i] / by[(k, r)][i] for r in reps if (k, r) in by]
    q = st.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return st.median(v), min(v), max(v), q[0], q[2]
for k in ("later", "ceil", "ceilperf", "profile"):
    if k in cpu:
        c, w = pairs(k, 0), pairs(k, 1)
        print(f"plain/{k}: cpu median of pairs {c[0]:.3f}x (IQR {c[3]:.3f}-{c[4]:.3f},"
              f" range {c[1]:.3f}-{c[2]:.3f}), wall {w[0]:.3f}x (IQR {w[3]:.3f}-{w[4]:.3f});"
              f" medians {m['plain'] / m[k]:.3f}x")
for k in ("ceil", "ceilperf"):
    if k in cpu:
        g = pairs(k, 0)[0] - 1
        if g >= 0.02:
            print(f"later's gain / {k}'s gain (cpu, median pairs): {(pairs('later', 0)[0] - 1) / g:.2f}")
        else:
            print(f"{k}: gain {g * 100:+.1f}% (under 2 %): later's share of it is not meaningful")
print(f"first build vs plain median: cpu {(m['first'] / m['plain'] - 1) * 100:+.1f}%,"
      f" wall {(mw['first'] / mw['plain'] - 1) * 100:+.1f}%")
print(f"every run profiled (profile vs plain, median pairs): {(1 / pairs('profile', 0)[0] - 1) * 100:+.1f}% cpu")
EOF
log "results in $out"

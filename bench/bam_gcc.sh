#!/usr/bin/env bash
# Batch Accelerator Mode on a real build by gcc's own cc1 with symbols and
# relocations: cc1 of GCC 12.2.0 from Debian's gcc-12 source package (the
# upstream tarball inside it), built here out of tree with -O2
# -Wl,--emit-relocs (no -g; .symtab kept), `make all-gcc`, C only. It is used
# through Debian's own gcc-12 driver (same version, 12.2.0) with
# -B<dir holding cc1>/. The workload is SQLite 3 from Debian's source package
# compiled file by file with -O2: the split sources of its bld/tsrc (as
# bam_tcc.sh: FTS3/FTS5/R-Tree/Geopoly/JSON on, 101 .c files) and one link
# of the sqlite3 shell per copy of the tree; COPIES copies per build,
# `make -j2`. Modelled on bam_tcc.sh (same build kinds, interleaving and
# oracle). Figures go to docs/benchmarks.md, "Batch accelerator mode".
#
#   bench/bam_gcc.sh BUILD_DIR     (BUILD_DIR holds tools/ocolos-bam)
#   env: REPS (interleaved repetitions, default 5), JOBS (default 2),
#        COPIES (copies of the tree per build, default 1: 101 cc1 runs),
#        FIRST_OPTS (more ocolos-bam options for the first build and the
#        later ones), KINDS (the interleaved kinds, default
#        "plain later ceil profile"), CEIL2 (a directory holding a cc1
#        BOLTed some other way, e.g. with a perf profile: kind "ceil2",
#        used directly as ceil is), INSTRUMENT (N or auto: ocolos-bam --instrument N
#        for first/later, and the ceiling from every run instrumented; see
#        below; unset: sampled profiles, --instrument 0, which every build
#        here is given first), FIRST2_DEFER (1: the user's BOLT lock held
#        through first2, so BOLT and the replay wait for its end); with
#        INSTRUMENT, KINDS may hold first2: that build repeated (below), and
#        first2alt: the same with the ocolos-bam of another build directory,
#        BAM_ALT (to compare two versions of the tool in one run); KINDS may
#        hold first: the first build repeated on a fresh cache, and
#        firstalt: the same with BAM_ALT's ocolos-bam
#
# Builds, each from clean, timed (CPU time, user+sys of everything the build
# waited for, and wall clock):
#   ref       no ocolos-bam (the oracle's outputs)
#   first     ocolos-bam --target <cc1> on a fresh cache (FIRST_OPTS; by
#             default 10 runs profiled, BOLT in the background once 2000
#             samples are in or the build is over); the script then waits
#             for BOLT
#   allprof   ocolos-bam on another fresh cache, every cc1 run profiled:
#             BOLT at the end with the profile of ALL invocations -> the
#             ceiling's cc1 (same pipeline and BOLT options as ocolos-bam's)
# then REPS times, interleaved (the order rotated by one each repetition):
#   plain     no ocolos-bam
#   later     ocolos-bam --target <cc1> FIRST_OPTS, the optimized cc1 cached
#   ceil      the ceiling's cc1 used directly (-B its directory, no preload)
#   profile   ocolos-bam, every cc1 run profiled, BOLT never runs (a fresh
#             cache each time): the cost of profiling every run
# With INSTRUMENT=N, `first` makes the instrumented cc1 (the originals run),
# `first2` runs N compilations instrumented and BOLT takes their counts, and
# the ceiling is made the same way with every run of a build instrumented.
# Every output (.o files and the linked sqlite3) of every build must be
# byte-identical to ref's, or the script fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bdir=$(cd "${1:?usage: bam_gcc.sh BUILD_DIR}" && pwd)
bam=$bdir/tools/ocolos-bam
REPS=${REPS:-5} JOBS=${JOBS:-2} COPIES=${COPIES:-1}
read -r -a kinds <<< "${KINDS:-plain later ceil profile}"
for k in "${kinds[@]}"; do # checked now, not an hour in
	case $k in
	first2 | first2alt) [ -n "${INSTRUMENT:-}" ] || { echo "bam_gcc: kind $k needs INSTRUMENT" >&2; exit 1; } ;;
	esac
	case $k in first2alt | firstalt) [ -x "${BAM_ALT:-}/tools/ocolos-bam" ] ||
		{ echo "bam_gcc: kind $k needs BAM_ALT (a build directory with tools/ocolos-bam)" >&2; exit 1; } ;; esac
done
log() { echo "bam_gcc: $*" >&2; }
. "$here/debsrc.sh"
driver=$(command -v gcc-12) || { log "needs Debian's gcc-12"; exit 1; }
gver=$("$driver" -dumpfullversion)
# --- cc1 of GCC 12.2.0 with symbols and relocations, under out/gcc --------
groot=$here/out/gcc
cc1dir=$groot/cc1dir
cc1=$cc1dir/cc1
if [ ! -x "$cc1" ]; then
	mkdir -p "$groot"
	gsrc=$(ls -d "$groot"/gcc-12.*/gcc 2>/dev/null | head -1 || true)
	if [ -z "$gsrc" ]; then
		ensure_sources
		# The source package holds the upstream tarball (gcc-12.*-dfsg.tar.xz)
		# inside its .orig.tar.gz; debian/rules is not needed here.
		(cd "$groot" && apt-get source --download-only -q gcc-12 2>&1 | tail -1) >&2
		(cd "$groot" && tar xzf gcc-12_*.orig.tar.gz --wildcards 'gcc-12-*/gcc-12*.tar.xz' &&
			tar xJf gcc-12-*/gcc-12*.tar.xz)
		gsrc=$(ls -d "$groot"/gcc-12.*/gcc | head -1)
	fi
	gsrc=$(dirname "$gsrc")
	[ "$(cat "$gsrc/gcc/BASE-VER")" = "$gver" ] ||
		{ log "source $(cat "$gsrc/gcc/BASE-VER") != driver $gver"; exit 1; }
	dpkg -s libmpc-dev libmpfr-dev libgmp-dev >/dev/null 2>&1 ||
		as_root apt-get install -y -q libmpc-dev libmpfr-dev libgmp-dev
	log "building cc1 of $(basename "$gsrc") with -O2 -Wl,--emit-relocs (make all-gcc; an hour or more on 2 cores)"
	rm -rf "$groot/build"
	mkdir -p "$groot/build"
	# Debian's triplet, prefix and multiarch: the new cc1 then looks for
	# headers where Debian's does (/usr/lib/gcc/x86_64-linux-gnu/12/include,
	# /usr/include/x86_64-linux-gnu). Nothing is installed.
	(cd "$groot/build" &&
		"$gsrc/configure" --prefix=/usr --with-gcc-major-version-only \
			--build=x86_64-linux-gnu --host=x86_64-linux-gnu --target=x86_64-linux-gnu \
			--enable-multiarch --disable-bootstrap --enable-languages=c --disable-lto \
			--disable-multilib --disable-nls --disable-libsanitizer --disable-plugin \
			--enable-checking=release --enable-default-pie --with-system-zlib --disable-werror \
			CFLAGS=-O2 CXXFLAGS=-O2 LDFLAGS=-Wl,--emit-relocs >configure.log 2>&1 &&
		make -j"$JOBS" all-gcc >make.log 2>&1) ||
		{ log "gcc build failed: see $groot/build"; exit 1; }
	mkdir -p "$cc1dir"
	cp "$groot/build/gcc/cc1" "$cc1.tmp" && mv "$cc1.tmp" "$cc1"
fi
case $(readelf -S "$cc1") in *.rela.text*.symtab*) ;; *) false ;; esac ||
	{ log "$cc1 lacks .rela.text or .symtab"; exit 1; }
# The compiler: Debian's driver, the new cc1 (-B: the driver looks there first).
cc="$driver -B$cc1dir/"
case $($cc -v -x c -c /dev/null -o /dev/null 2>&1) in *"
 $cc1 "*) ;; *) false ;; esac ||
	{ log "the driver does not run $cc1 with -B"; exit 1; }
# --- SQLite's split sources, as bam_tcc.sh prepares them ------------------
srcroot=$here/out/bam/src
mkdir -p "$srcroot"
sqsrc=$(ls -d "$srcroot"/sqlite3-3*/ 2>/dev/null | head -1 || true)
if [ -z "$sqsrc" ]; then
	ensure_sources
	(cd "$srcroot" && apt-get source -q sqlite3 2>&1 | tail -2) >&2
	sqsrc=$(ls -d "$srcroot"/sqlite3-3*/ | head -1)
fi
sqsrc=${sqsrc%/}
ts=$sqsrc/bld/tsrc
if [ ! -f "$sqsrc/bld/sqlite3.c" ]; then
	command -v tclsh >/dev/null || as_root apt-get install -y -q tcl
	log "generating SQLite's sources (configure; make sqlite3.c)"
	mkdir -p "$sqsrc/bld"
	(cd "$sqsrc/bld" && ../configure --disable-tcl >configure.log 2>&1 &&
		make -j"$JOBS" sqlite3.c >make.log 2>&1) ||
		{ log "SQLite generation failed: see $sqsrc/bld"; exit 1; }
fi
srcs=$(cd "$ts" && ls ./*.c | sed 's|^\./||; s/\.c$//' | grep -vE '^(fts1|fts2|tclsqlite|geopoly|icu$|fts3_icu)')
out=$here/out/bam/gcc.$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/build" "$out/ref" "$out/bin/ceil"
{
	echo "CFLAGS = -O2 -DSQLITE_CORE -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION" \
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
timed() { /usr/bin/time -f "%e %U %S" -o "$out/t.tmp" "$@"; }
jfield() { grep -o "\"$1\":[0-9]*" <<< "$2" | head -1 | cut -d: -f2; }
# build KIND REP CC [ocolos-bam options...]: one clean build, timed, checked.
# With options, under ocolos-bam with --cache "$cache".
build() {
	local kind=$1 rep=$2 cc=$3; shift 3
	rm -rf ./c[0-9]*
	# Untimed: what the previous step wrote (a restored 150 MB cache, a new
	# instrumented copy) reaches the disk now, not during this build (seen:
	# 50 % iowait under a build that followed a restore).
	sync
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
# wait_instr CACHE: the one entry's instrumented copy (or why not).
wait_instr() {
	local e; e=$(ls -d "$1"/e/* | head -1)
	while [ ! -e "$e/instrumented" ] && [ ! -e "$e/instrument-failed" ] && [ ! -e "$e/failed" ] &&
		[ ! -e "$e/optimized" ]; do
		# --instrument auto waits for memory while a session runs; none does here
		[ ! -e "$e/instrument-deferred" ] ||
			{ log "instrumentation deferred: $(head -1 "$e/instrument-deferred")"; exit 1; }
		sleep 1
	done
	[ -e "$e/instrumented" ] || [ -e "$e/optimized" ] ||
		{ log "no instrumented cc1 in $e: $(cat "$e"/*failed)"; exit 1; }
	[ ! -e "$e/instrumented" ] || log "instrumented cc1: $(du -h "$e/instrumented" | cut -f1)"
}
# profile_size ENTRY: what the entry's BOLT run was given.
profile_size() {
	if [ -e "$1/instrumented_runs" ]; then echo "$(cat "$1/instrumented_runs") instrumented runs"
	else echo "$(cat "$1/samples") samples"; fi
}
IOPTS=${INSTRUMENT:+--instrument $INSTRUMENT}
# wait_bolt CACHE: the one entry's BOLT outcome; prints the entry.
wait_bolt() {
	local e; e=$(ls -d "$1"/e/* | head -1)
	while [ ! -e "$e/optimized" ] && [ ! -e "$e/failed" ]; do sleep 1; done
	[ -e "$e/optimized" ] || { log "BOLT failed in $e: $(cat "$e/failed")"; exit 1; }
	grep -hE "BOLT-INFO: ([0-9]+ out of .* profile|basic block reordering|splitting separates)" \
		"$e"/bolt.log* | sed 's/^/    /' >&2 || true
	echo "$e"
}
build ref 0 "$cc"
c1=$(ls c1/*.o | wc -l)
(echo 'create virtual table t using fts5(x); insert into t values("hello world");' \
	"select * from t where t match 'hello'; select sqlite_version();" | c1/sqlite3) >&2
cache=$out/cache
# shellcheck disable=SC2086
build first 0 "$cc" --target "$cc1" ${FIRST_OPTS:-} $IOPTS
if [ -n "${INSTRUMENT:-}" ]; then
	t0=$(now)
	wait_instr "$cache"
	log "instrumented cc1 ready $(echo "$(now) - $t0" | bc)s after the first build ended"
	# FIRST2_DEFER=1: the user's BOLT lock held through first2, so that its
	# worker (the replay and BOLT) waits for the build's end: first2's CPU
	# is then the instrumented run's cost alone, without BOLT beside it.
	holder=
	if [ "${FIRST2_DEFER:-0}" = 1 ]; then
		flock "$cache/bolt.lock" sleep 100000 & holder=$!
	fi
	# shellcheck disable=SC2086
	[ -e "$(ls -d "$cache"/e/* | head -1)/optimized" ] ||
		build first2 0 "$cc" --target "$cc1" ${FIRST_OPTS:-} $IOPTS
	[ -z "$holder" ] || { pkill -P "$holder" sleep; wait "$holder" || true; }
fi
t0=$(now)
entry=$(wait_bolt "$cache")
first_samples=$(profile_size "$entry")
log "BOLT done $(echo "$(now) - $t0" | bc)s after the ${INSTRUMENT:+second }build ended; mode $(cat "$entry/mode"); $first_samples"
ninv=$(tail -1 "$results" | cut -f5)
log "$ninv cc1 runs per build ($c1 objects per copy, $COPIES copies)"
# The ceiling: the profile of all runs of a build, through the same pipeline
# (only when a kind uses it: with INSTRUMENT every run of that build is
# instrumented and replayed, tens of minutes for cc1).
cache=$out/cache-ceil
ceil_samples="none (no ceil kind)"
if [[ " ${kinds[*]} " != *" ceil "* ]]; then
	log "no ceiling (KINDS has no ceil)"
elif [ -n "${INSTRUMENT:-}" ]; then
	build allprof0 0 "$cc" --target "$cc1" --instrument "$ninv"
	wait_instr "$cache"
	[ -e "$(ls -d "$cache"/e/* | head -1)/optimized" ] ||
		build allprof 0 "$cc" --target "$cc1" --instrument "$ninv"
else
	build allprof 0 "$cc" --target "$cc1" --profile-runs "$ninv" --profile-samples 1000000000
fi
if [[ " ${kinds[*]} " == *" ceil "* ]]; then
	e=$(wait_bolt "$cache")
	ceil_samples=$(profile_size "$e")
	cp "$e/optimized" "$out/bin/ceil/cc1"
	log "ceiling: $ceil_samples from $ninv runs"
fi
# Kind first2 (INSTRUMENT only), repeated: the second build as a new user
# meets it, from the cache state `first` leaves (the instrumented cc1 made,
# no counts yet), restored for each repetition; the worker's replay and BOLT
# run beside the build as they would, and the script waits for them after
# it (untimed) so that they do not spill into the next build. The restore
# must use the same path: the instrumented cc1 holds its entry's path.
if [[ " ${kinds[*]} " == *" first2"* ]]; then
	cache=$out/cache-rep
	# shellcheck disable=SC2086
	build prep2 0 "$cc" --target "$cc1" ${FIRST_OPTS:-} $IOPTS
	wait_instr "$cache"
	e=$(ls -d "$cache"/e/* | head -1)
	flock "$e/bolt.lock" true # the instrumenting worker is done
	# The state to restore: the copy made, no run of it yet (the copy came
	# after prep2's last compilation), no worker started on counts.
	[ ! -e "$e/optimized" ] && [ ! -s "$e/iclaims" ] && [ -z "$(ls -A "$e/fdata")" ] ||
		{ log "prep2: the copy was ready during the build (runs instrumented): no clean snapshot"; exit 1; }
	cp -a "$cache" "$out/cache-snap"
fi
run_kind() { # run_kind KIND REP
	case $1 in
	first | firstalt)
		# The first build repeated, on a fresh cache each time: the
		# originals run while the worker makes the instrumented copy
		# (INSTRUMENT; sampled runs without it).
		cache=$out/cache-first
		rm -rf "$cache"
		local keep1=$bam
		[ "$1" = first ] || bam=$BAM_ALT/tools/ocolos-bam
		# shellcheck disable=SC2086
		build "$1" "$2" "$cc" --target "$cc1" ${FIRST_OPTS:-} $IOPTS
		bam=$keep1
		if [ -n "${INSTRUMENT:-}" ]; then
			wait_instr "$cache"
			flock "$(ls -d "$cache"/e/* | head -1)/bolt.lock" true
		else
			wait_bolt "$cache" >/dev/null
		fi ;;
	first2 | first2alt)
		cache=$out/cache-rep
		rm -rf "$cache"
		cp -a "$out/cache-snap" "$cache"
		local keep=$bam
		[ "$1" = first2 ] || bam=${BAM_ALT:?kind first2alt needs BAM_ALT}/tools/ocolos-bam
		# shellcheck disable=SC2086
		build "$1" "$2" "$cc" --target "$cc1" ${FIRST_OPTS:-} $IOPTS
		bam=$keep
		wait_bolt "$cache" >/dev/null ;;
	plain) build plain "$2" "$cc" ;;
	later)
		cache=$out/cache
		# shellcheck disable=SC2086
		build later "$2" "$cc" --target "$cc1" ${FIRST_OPTS:-} $IOPTS ;;
	ceil) build ceil "$2" "$driver -B$out/bin/ceil/" ;;
	ceil2) build ceil2 "$2" "$driver -B${CEIL2:?kind ceil2 needs CEIL2}/" ;;
	profile)
		cache=$out/cache-profile
		rm -rf "$cache"
		build profile "$2" "$cc" --target "$cc1" --profile-runs 100000000 \
			--profile-samples 1000000000000 ;;
	esac
}
# Each repetition runs every kind once, the order rotated by one each time.
for r in $(seq 1 "$REPS"); do
	for i in $(seq 0 $((${#kinds[@]} - 1))); do
		run_kind "${kinds[$(((i + r - 1) % ${#kinds[@]}))]}" "$r"
	done
done
{
	echo "cc1 runs per build: $ninv; first build's profile: $first_samples" \
		"(FIRST_OPTS: ${FIRST_OPTS:-none}; INSTRUMENT: ${INSTRUMENT:-none}); ceiling profile:" \
		"$ceil_samples (all runs)"
	[ -z "${CEIL2:-}" ] || echo "ceil2: $CEIL2/cc1"
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
for k in ("ref", "first", "firstalt", "first2", "first2alt", "allprof", "plain", "later", "ceil", "ceil2", "profile"):
    if k in cpu:
        print(f"{k:8s} n={len(cpu[k])} cpu median={m[k]:.2f}s all={' '.join(f'{x:.2f}' for x in cpu[k])};"
              f" wall median={mw[k]:.2f}s all={' '.join(f'{x:.1f}' for x in wall[k])}")
reps = sorted({r for k, r in by if k == "plain"}, key=int)
def pairs(k, i):
    v = [by[("plain", r)][i] / by[(k, r)][i] for r in reps if (k, r) in by]
    q = st.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return st.median(v), min(v), max(v), q[0], q[2]
for k in ("later", "ceil", "ceil2", "profile", "first", "firstalt", "first2", "first2alt"):
    if k in cpu and "plain" in cpu and any((k, r) in by for r in reps):
        c, w = pairs(k, 0), pairs(k, 1)
        print(f"plain/{k}: cpu median of pairs {c[0]:.3f}x (IQR {c[3]:.3f}-{c[4]:.3f},"
              f" range {c[1]:.3f}-{c[2]:.3f}), wall {w[0]:.3f}x (IQR {w[3]:.3f}-{w[4]:.3f});"
              f" medians {m['plain'] / st.median(by[(k, r)][0] for r in reps if (k, r) in by):.3f}x")
if "ceil" in cpu and "later" in cpu:
    g = pairs("ceil", 0)[0] - 1
    if g >= 0.02:
        print(f"later's gain / ceil's gain (cpu, median pairs): {(pairs('later', 0)[0] - 1) / g:.2f}")
    else:
        print(f"ceil: gain {g * 100:+.1f}% (under 2 %): later's share of it is not meaningful")
if "plain" in cpu:
    for k in ("first", "first2"):
        if (k, "0") in by: # the sequence's own (one build), not the repetitions
            c, w = by[(k, "0")]
            print(f"{k} build of the sequence vs plain median: cpu {(c / m['plain'] - 1) * 100:+.1f}%,"
                  f" wall {(w / mw['plain'] - 1) * 100:+.1f}%")
    for k in ("first", "firstalt", "first2", "first2alt"):
        if any((k, r) in by for r in reps):
            c, w = pairs(k, 0), pairs(k, 1)
            print(f"{k} repeated, its cost against plain (median of pairs): cpu {(1 / c[0] - 1) * 100:+.1f}%"
                  f" (range {(1 / c[2] - 1) * 100:+.1f} to {(1 / c[1] - 1) * 100:+.1f}%),"
                  f" wall {(1 / w[0] - 1) * 100:+.1f}% (range {(1 / w[2] - 1) * 100:+.1f} to {(1 / w[1] - 1) * 100:+.1f}%)")
    if "profile" in cpu:
        print(f"every run profiled (profile vs plain, median pairs): {(1 / pairs('profile', 0)[0] - 1) * 100:+.1f}% cpu")
EOF
log "results in $out"

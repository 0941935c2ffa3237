#!/usr/bin/env bash
# Method 3, online: callgrind's cache simulator on a live round.
#
# Builds the small generated front-end-bound program of cachesim_guard.sh
# (400 functions, 40 hot) linked with libocolos, runs it under
#   valgrind --tool=callgrind --cache-sim=yes --fair-sched=yes
# and lets it optimize itself (ocolos_optimize_self; under Valgrind the
# library samples with sigprof, because perf samples would point into
# Valgrind's translated code, and drops Valgrind's translations of every
# code byte it patches). After the round the program's worker parks and
# one thread runs the same OPS operations four times: C0 (revert), C1
# (reapply), C0, C1, each phase bracketed by CALLGRIND_ZERO_STATS and
# CALLGRIND_DUMP_STATS_AT (bench/frontend_main.c, --cg-ops). Each dump is
# split by object: the program's file (C0) and the anonymous mapping
# holding C1.
#
# Checks (exit 1 if one fails; numbers on stdout either way):
#   - the round succeeded under Valgrind and all four phases computed the
#     same result;
#   - repeatability: the two C0 phases agree, and so do the two C1 phases
#     (instructions within 0.5 %, I1 misses within 2 %);
#   - the switch is real: in C1 phases at least CG_MIN_C1 (default 60) %
#     of the program's instructions run in C1, in C0 phases none do. Not
#     more: a hot function with no sample stays in C0, and the sigprof
#     sampler gets 200-460 samples under Valgrind (fewer on a loaded
#     machine): 27-39 of the 40 hot functions move, 73-91 % run in C1;
#   - layout bound: I1 misses per 1000 instructions in C1 are at most
#     CG_MAX_RATIO (default 1.35) times those in C0. This is a bound
#     against regressions, not a speedup claim: under Valgrind the sigprof
#     sampler gets few samples (hundreds), and with so sparse a profile
#     BOLT splits executed blocks out as cold. The measured numbers are in
#     docs/benchmarks.md.
#
# usage: bench/callgrind_online.sh BUILD_DIR [WORKDIR]
# environment:
#   CG_PROFILE_MS  the round's sampling window (default 20000: Valgrind
#                  runs the program ~50x slower)
#   CG_OPS         operations per phase (default 20000)
#   CG_MAX_RATIO   layout bound (default 1.35)
#   CG_MIN_C1      least share of instructions in C1, in % (default 60)
#   CC             compiler (default gcc)
# exit status: 0 pass, 1 fail, 77 skipped (a tool or the library missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:?usage: callgrind_online.sh BUILD_DIR [WORKDIR]}
case $build in /*) ;; *) build="$PWD/$build" ;; esac
cc=${CC:-gcc}
profile_ms=${CG_PROFILE_MS:-20000}
ops=${CG_OPS:-20000}
max_ratio=${CG_MAX_RATIO:-1.35}
min_c1=${CG_MIN_C1:-60}

for t in valgrind python3 "$cc"; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "callgrind_online: SKIP: $t not found"
		exit 77
	fi
done
if [[ ! -f $build/libocolos.so ]]; then
	echo "callgrind_online: SKIP: no libocolos.so in $build"
	exit 77
fi
if [[ ! -f /usr/include/valgrind/callgrind.h ]]; then
	echo "callgrind_online: SKIP: valgrind/callgrind.h missing"
	exit 77
fi
work=${2:-$(mktemp -d /tmp/callgrind_online.XXXXXX)}
mkdir -p "$work/src"

python3 "$here/gen_frontend.py" --out "$work/src" --functions 400 --hot 40 \
	--tus 2 --seed 7 2>/dev/null
srcs=()
while read -r s; do srcs+=("$work/src/$s"); done <"$work/src/sources.txt"
"$cc" -O1 -fno-jump-tables -g0 -w -fno-pie -no-pie -pthread -DWITH_OCOLOS \
	-I"$root/include" -Wl,--emit-relocs -o "$work/fe" "${srcs[@]}" \
	-L"$build" -locolos -Wl,-rpath,"$build"

rm -f "$work"/cg.out*
# --fair-sched=yes: Valgrind runs one thread at a time, and with its
# default lock a spinning worker starves the thread running the round.
# --compress-strings=no: every dump names its objects in full.
# --dump-instr=yes: costs per instruction address. Callgrind names code
# without symbols by the first address it entered, so by function name the
# C1 code reached through a slot stub's jump is charged to the stub; by
# instruction address every cost lands where it ran.
valgrind --tool=callgrind --cache-sim=yes --fair-sched=yes --dump-instr=yes \
	--compress-strings=no --I1=32768,8,64 --D1=49152,12,64 \
	--LL=2097152,16,64 --callgrind-out-file="$work/cg.out" \
	"$work/fe" --duration 600 --threads 1 --online-after 1 \
	--cg-ops "$ops" --ocolos-profile-ms "$profile_ms" \
	>"$work/fe.out" 2>"$work/valgrind.log" || true

python3 - "$work" "$max_ratio" "$min_c1" <<'EOF'
import glob, os, re, sys
work, max_ratio, min_c1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) / 100
out = open(os.path.join(work, "fe.out")).read().splitlines()
fails = []
oc = next((l for l in out if l.startswith("ocolos ")), "")
if " rc=0 " not in oc + " ":
    print("callgrind_online: FAIL: the round did not succeed under valgrind:")
    print("  " + (oc or "(no ocolos line; see %s/valgrind.log)" % work))
    sys.exit(1)
kv = dict(x.split("=", 1) for x in oc.split()[1:] if "=" in x and '"' not in x)
phases = [l for l in out if l.startswith("cg phase=")]
sums = {re.search(r"sum=(\w+)", l).group(1) for l in phases if "sum=" in l}
if len(phases) != 4 or len(sums) != 1:
    fails.append("expected 4 phases with one result, got %d phases, %d results"
                 % (len(phases), len(sums)))

# Where each memfd of the library lies: Valgrind names such a mapping "???"
# (only a path it can open gets a name), so a function's address says
# whether it ran in a code version (ocolos-cN) or in the slot stubs, which
# are neither C0 nor C1: a jump each, to whichever is in use.
maps = []
for l in out:
    if l.startswith("cg map "):
        kv_ = dict(x.split("=", 1) for x in l.split()[2:])
        maps.append((int(kv_["lo"], 16), int(kv_["hi"], 16), kv_["name"]))

def place(ob, addr):
    if ob != "???":
        return ob
    return next((n for lo, hi, n in maps if lo <= addr < hi), ob)

def split_dump(path):
    """(label, {object: [Ir, I1mr]}) of one callgrind dump, placed by
    instruction address (positions: instr line; an address may be given
    relative to the previous cost line's)."""
    label, ob, ev, per, skip, pos = None, "?", None, {}, False, 0
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("desc: Trigger: Client Request: "):
            label = line.split(": ")[-1]
        elif line.startswith("events:"):
            ev = line.split()[1:]
        elif line.startswith("ob="):
            ob = line[3:].strip()
        elif line.startswith("calls="):
            skip = True  # the next cost line is the call's inclusive cost
        elif ev and line and line[0] in "0123456789+-*":
            f = line.split()
            tok = f[0]
            if tok == "*":
                addr = pos
            elif tok[0] in "+-":
                addr = pos + (1 if tok[0] == "+" else -1) * int(tok[1:], 0)
            else:
                addr = int(tok, 0)
            pos = addr
            if skip:
                skip = False
                continue
            vals = [int(x) for x in f[2:]]  # positions: instr line
            vals += [0] * (len(ev) - len(vals))
            c = per.setdefault(place(ob, addr), [0, 0])
            c[0] += vals[ev.index("Ir")]
            c[1] += vals[ev.index("I1mr")]
    return label, per

fe = os.path.join(work, "fe")
res = {}
for p in sorted(glob.glob(os.path.join(work, "cg.out.*"))):
    label, per = split_dump(p)
    if not label or not label.startswith("phase-"):
        continue
    tot = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
    c0 = per.get(fe, [0, 0])
    c1 = [sum(v[0] for o, v in per.items() if re.match(r"ocolos-c\d+$", o)),
          sum(v[1] for o, v in per.items() if re.match(r"ocolos-c\d+$", o))]
    res[label] = dict(ir=tot[0], i1=tot[1], c0_ir=c0[0], c1_ir=c1[0])
if not maps:
    fails.append("the program printed no 'cg map' line: no optimized code mapped?")
need = ["phase-c0-0", "phase-c1-0", "phase-c0-1", "phase-c1-1"]
missing = [n for n in need if n not in res]
if missing:
    print("callgrind_online: FAIL: missing dumps %s (see %s)" % (missing, work))
    sys.exit(1)
mpki = {n: 1000.0 * r["i1"] / r["ir"] for n, r in res.items()}
for n in need:
    r = res[n]
    prog = r["c0_ir"] + r["c1_ir"]
    share = r["c1_ir"] / prog if prog else 0
    print("  %-11s Ir %10d  I1 misses %8d  I1 MPKI %6.2f  in C1 %5.1f %%"
          % (n, r["ir"], r["i1"], mpki[n], 100 * share))
    if n.startswith("phase-c1") and share < min_c1:
        fails.append("%s: only %.1f %% of the program's instructions ran in C1"
                     % (n, 100 * share))
    if n.startswith("phase-c0") and r["c1_ir"]:
        fails.append("%s: %d instructions ran in C1 after the revert" % (n, r["c1_ir"]))
for a, b in (("phase-c0-0", "phase-c0-1"), ("phase-c1-0", "phase-c1-1")):
    dir_ = abs(res[a]["ir"] - res[b]["ir"]) / res[a]["ir"]
    dmiss = abs(res[a]["i1"] - res[b]["i1"]) / max(res[a]["i1"], 1)
    if dir_ > 0.005 or dmiss > 0.02:
        fails.append("%s vs %s not repeatable: instructions %.2f %%, I1 misses %.2f %%"
                     % (a, b, 100 * dir_, 100 * dmiss))
m0 = (mpki["phase-c0-0"] + mpki["phase-c0-1"]) / 2
m1 = (mpki["phase-c1-0"] + mpki["phase-c1-1"]) / 2
ratio = m1 / m0 if m0 else float("inf")
if ratio > max_ratio:
    fails.append("C1 I1 MPKI %.2f is %.2fx C0's %.2f (bound %.2fx)" % (m1, ratio, m0, max_ratio))
print("callgrind_online: %s samples=%s functions_moved=%s pause_ms=%.1f "
      "I1 MPKI C0 %.2f -> C1 %.2f (x%.3f, bound x%.2f)"
      % ("FAIL" if fails else "PASS", kv.get("samples"), kv.get("functions_moved"),
         int(kv.get("pause_ns", 0)) / 1e6, m0, m1, ratio, max_ratio))
for f in fails:
    print("  - " + f)
sys.exit(1 if fails else 0)
EOF

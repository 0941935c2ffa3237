#!/usr/bin/env python3
"""Benchmark driver: original vs offline BOLT vs online libocolos.

What this file is responsible for: running the workloads built by
bench/build_frontend.sh and bench/build_sqlite.sh, preparing the offline
BOLT variant (perf record -> bench/perf2pa.py -> llvm-bolt), running all
variants interleaved in one session, and reporting medians of paired ratios
with their IQR, plus pause, BOLT time and RSS growth of online rounds. It does
not build anything.

Subcommands (each writes JSON to bench/out/results/ and prints Markdown):
  run       interleaved baseline / offline BOLT / online, --reps repetitions
  curve     offline speedup vs number of IP samples (subsampled from one
            dense recording)
  cachesim  valgrind callgrind --cache-sim=yes: I1 misses per 1000
            instructions, original vs offline BOLT, on a short fixed run
  ab        method 1: one online round, then K pairs of C1/C0 windows in
            the same process (ocolos_revert_self / ocolos_reapply_self);
            median of the per-pair ratios C1/C0 with IQR
  pairs     method 2: original and offline-BOLTed run at the same time,
            one per core (taskset), cores swapped every round; median of
            the per-round ratios with IQR

Measurement (see docs/benchmarks.md for why):
  fe      throughput = median of the per-second `tput` lines after the
          warm-up (online: after the round finished + 1 s);
  sqlite  `speedtest1 --memdb --testset main,main,...`: the time of one pass
          of the `main` test set is the sum of its per-test times; throughput
          = 1 / median pass time, first pass dropped (online: passes that
          start after the round finished).
"""

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LLVM_BIN = "/usr/lib/llvm-22/bin"
BOLT = os.path.join(LLVM_BIN, "llvm-bolt")
# The library's options, minus --custom-allocation-vma (offline BOLT lets
# BOLT choose where the new code goes).
# Profile: `S` records (bench/perf2pa.py) aggregated by `llvm-bolt
# --aggregate-only --pa --ba` into fdata, then `llvm-bolt -data` (--bolt-profile
# fdata, the default): a single `llvm-bolt --pa --ba -p` call (--bolt-profile
# pa, what the library did first) leaves every basic block without a count
# with llvm-bolt 22 -- see docs/benchmarks.md, "BOLT option study".
BOLT_OPTS = ["--enable-bat", "--reorder-blocks=ext-tsp",
             "--reorder-functions=cdsort", "--split-functions", "--lite",
             "--jump-tables=move", "--no-huge-pages"]
TWOSTEP = os.path.join(HERE, "bolt_twostep.sh")
KV_RE = re.compile(r'(\w+)=("[^"]*"|\S+)')


def log(msg):
    print("driver: " + msg, file=sys.stderr, flush=True)


def kv(line):
    return {k: v.strip('"') for k, v in KV_RE.findall(line)}


def med_iqr(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[0], q[2]


def run_cmd(argv, env=None, timeout=None):
    """Run argv, return (stdout lines, stderr lines, wall seconds, rc)."""
    t0 = time.monotonic()
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(argv, env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, errors="replace",
                       timeout=timeout)
    return (p.stdout.splitlines(), p.stderr.splitlines(),
            time.monotonic() - t0, p.returncode)


# ---- workloads -------------------------------------------------------------

class Frontend:
    """The generated program (bench/gen_frontend.py)."""
    name = "fe"

    def __init__(self, a):
        self.a = a
        self.bin = a.bin or os.path.join(ROOT, "bench/out/fe/fe-nopie")
        self.online_bin = a.online_bin or self.bin + "-ocolos"

    def cmd(self, binary, secs):
        return [binary, "--duration", str(secs), "--threads",
                str(self.a.threads)]

    def online(self):
        if self.a.no_online or not os.path.exists(self.online_bin):
            return None
        return ([self.online_bin, "--duration", str(self.a.online_secs),
                 "--threads", str(self.a.threads), "--online-after",
                 str(self.a.warmup)], {})

    def fixed_cmd(self, binary):
        return [binary, "--ops", str(self.a.cachesim_ops), "--threads", "1",
                "--check", "0"]

    def parse(self, out, err, after):
        """Throughput (ops/s) of intervals ending after `after` + 1 s."""
        errors = []
        tputs = []
        for line in out:
            if line.startswith("tput "):
                d = kv(line)
                t = float(d["t"])
                if t > after + 1.0:
                    tputs.append(float(d["ops_per_s"]))
            elif line.startswith("check end=") and "ok=1" not in line:
                errors.append("checksum mismatch: " + line)
        self.last_series = tputs
        return (statistics.median(tputs) if tputs else None), errors

    def pre_post(self, out, oc):
        """Online run: throughput before the round and after it."""
        pre, post = [], []
        t0, t1 = float(oc.get("t_start", 0)), float(oc.get("t_done", 1e9))
        for line in out:
            if line.startswith("tput "):
                d = kv(line)
                t = float(d["t"])
                if 2.0 < t <= t0:
                    pre.append(float(d["ops_per_s"]))
                elif t > t1 + 1.0:
                    post.append(float(d["ops_per_s"]))
        return (statistics.median(pre) if pre else None,
                statistics.median(post) if post else None)


class Sqlite:
    """SQLite's speedtest1, repeated passes of the `main` test set."""
    name = "sqlite"
    TEST_RE = re.compile(r"^\s*(\d+) - .*?\s([\d.]+)s\s*$")

    def __init__(self, a):
        self.a = a
        self.bin = a.bin or os.path.join(ROOT,
                                         "bench/out/sqlite/speedtest1-nopie")
        self.preload = a.preload or os.path.join(os.path.dirname(self.bin),
                                                 "autoself.so")

    def _argv(self, binary, passes):
        return [binary, "--memdb", "--size", str(self.a.sq_size),
                "--testset", ",".join(["main"] * passes)]

    def cmd(self, binary, secs):
        return self._argv(binary, self.a.sq_passes)

    def online(self):
        if self.a.no_online or not os.path.exists(self.preload):
            return None
        return (self._argv(self.bin, self.a.sq_online_passes),
                {"LD_PRELOAD": self.preload,
                 "OCOLOS_AFTER": str(self.a.warmup)})

    def fixed_cmd(self, binary):
        return [binary, "--memdb", "--size", str(self.a.cachesim_sq_size),
                "--testset", "main"]

    def passes(self, out):
        """[(start_s, duration_s)] of each pass, from per-test times."""
        res, cur, t = [], None, 0.0
        for line in out:
            if "Begin testset" in line:
                if cur is not None:
                    res.append(cur)
                cur = [t, 0.0]
                continue
            m = self.TEST_RE.match(line)
            if m:
                dt = float(m.group(2))
                t += dt
                if cur is None:
                    cur = [0.0, 0.0]
                if m.group(1) != "999":  # the reset between passes
                    cur[1] += dt
        if cur is not None:
            res.append(cur)
        return res

    def parse(self, out, err, after):
        ps = [d for s, d in self.passes(out)[1:] if s > after]
        self.last_series = ps
        return (1.0 / statistics.median(ps) if ps else None), []

    def pre_post(self, out, oc):
        t0, t1 = float(oc.get("t_start", 0)), float(oc.get("t_done", 1e9))
        ps = self.passes(out)[1:]
        pre = [d for s, d in ps if s + d <= t0]
        post = [d for s, d in ps if s > t1]
        return (1.0 / statistics.median(pre) if pre else None,
                1.0 / statistics.median(post) if post else None)


WORKLOADS = {"fe": Frontend, "sqlite": Sqlite}


# ---- offline BOLT ----------------------------------------------------------

def stem(path):
    """Work-file prefix: parent directory and name, e.g. fe-t2.fe-nopie."""
    return "%s.%s" % (os.path.basename(os.path.dirname(os.path.abspath(
        path))), os.path.basename(path))


def profile(w, a, tag):
    """perf record the original; returns the perf.data path."""
    data = os.path.join(a.work, "%s.%s.perf.data" % (stem(w.bin),
                                                       tag))
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(a.hz),
            "-o", data, "--"] + w.cmd(w.bin, a.profile_secs)
    log("profiling: " + shlex.join(argv))
    out, err, _, rc = run_cmd(argv)
    if rc != 0:
        sys.exit("driver: perf record failed:\n" + "\n".join(err[-20:]))
    return data


def to_pa(w, a, data, max_samples, tag):
    pa = os.path.join(a.work, "%s.%s.pa" % (stem(w.bin), tag))
    argv = [sys.executable, os.path.join(HERE, "perf2pa.py"), "--perf-data",
            data, "--binary", w.bin, "--out", pa]
    if max_samples:
        argv += ["--max-samples", str(max_samples), "--seed", str(a.seed)]
    out, err, _, rc = run_cmd(argv)
    if rc != 0:
        sys.exit("driver: perf2pa failed:\n" + "\n".join(err[-20:]))
    stats = kv(err[-1]) if err else {}
    return pa, int(stats.get("written", 0))


def bolt(w, a, pa, tag):
    outbin = os.path.join(a.work, "%s.%s.bolt" % (stem(w.bin),
                                                   tag))
    opts = a.bolt_opts.split() if a.bolt_opts else BOLT_OPTS
    t0 = time.monotonic()
    if a.bolt_profile == "pa":
        argv = [BOLT, w.bin, "-o", outbin, "--pa", "--ba", "-p", pa] + opts
    else:
        fdata = pa + ".fdata"
        agg = [BOLT, w.bin, "--aggregate-only", "--pa", "--ba", "-p", pa,
               "-o", fdata]
        out, err, _, rc = run_cmd(agg, timeout=1800)
        if rc != 0:
            sys.exit("driver: llvm-bolt --aggregate-only failed:\n" +
                     "\n".join((out + err)[-20:]))
        argv = [BOLT, w.bin, "-o", outbin, "-data", fdata] + opts
    out, err, secs, rc = run_cmd(argv, timeout=1800)
    secs = time.monotonic() - t0
    with open(outbin + ".log", "w") as f:
        f.write(shlex.join(argv) + "\n" + "\n".join(out + err) + "\n")
    if rc != 0:
        sys.exit("driver: llvm-bolt failed, see %s.log" % outbin)
    moved = None
    for line in out + err:
        m = re.search(r"(\d+) out of \d+ functions in the binary .* have "
                      r"non-empty execution profile", line)
        if m:
            moved = int(m.group(1))
    log("BOLT %s: %.1f s, %s profiled functions -> %s" %
        (tag, secs, moved, outbin))
    return outbin, secs, moved


# ---- measurement -----------------------------------------------------------

def measure(w, a, binary):
    out, err, wall, rc = run_cmd(w.cmd(binary, a.secs),
                                 timeout=a.secs * 4 + 600)
    tput, errors = w.parse(out, err, a.warmup)
    if rc != 0:
        errors.append("exit code %d" % rc)
    return tput, errors


def measure_online(w, a):
    argv, env = w.online()
    out, err, wall, rc = run_cmd(argv, env=env, timeout=1800)
    oc = {}
    for line in out + err:
        if line.startswith("ocolos "):
            oc = kv(line)
    errors = []
    if rc != 0:
        errors.append("exit code %d" % rc)
    if not oc:
        errors.append("no 'ocolos' line (round did not finish?)")
        return None, None, None, oc, errors
    if oc.get("rc") != "0":
        errors.append("ocolos rc=%s %s %s" % (oc.get("rc"),
                                              oc.get("strerror", ""),
                                              oc.get("error", "")))
    _, errs = w.parse(out, err, 1e9)
    errors += errs
    pre, post = w.pre_post(out, oc)
    return post, pre, float(oc.get("t_done", 0)), oc, errors


def cmd_run(a):
    w = WORKLOADS[a.workload](a)
    os.makedirs(a.work, exist_ok=True)
    data = profile(w, a, "full")
    pa, nsamples = to_pa(w, a, data, 0, "full")
    bolted, bolt_s, nprof = bolt(w, a, pa, "full")
    online = w.online() is not None
    if not online:
        log("online variant not available (no libocolos build): skipped")
    variants = ["base", "bolt"] + (["online"] if online else [])
    reps = []
    for r in range(a.reps):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        rep = {"order": order}
        for v in order:
            if v == "base":
                rep["base"], e = measure(w, a, w.bin)
                rep["base_series"] = getattr(w, "last_series", None)
            elif v == "bolt":
                rep["bolt"], e = measure(w, a, bolted)
                rep["bolt_series"] = getattr(w, "last_series", None)
            else:
                post, pre, tdone, oc, e = measure_online(w, a)
                rep.update(online=post, online_pre=pre, ocolos=oc)
            if e:
                rep.setdefault("errors", []).extend("%s: %s" % (v, x)
                                                    for x in e)
        log("rep %d: %s" % (r + 1, {k: rep.get(k) for k in variants}))
        reps.append(rep)
    res = {"cmd": "run", "workload": w.name, "binary": w.bin,
           "samples": nsamples, "profiled_functions": nprof,
           "offline_bolt_s": bolt_s, "reps": reps}

    def ratio(k, base="base"):
        return [r[k] / r[base] for r in reps
                if r.get(k) and r.get(base)]

    res["bolt_ratio"] = med_iqr(ratio("bolt"))
    if online:
        res["online_ratio"] = med_iqr(ratio("online"))
        res["online_post_pre"] = med_iqr(ratio("online", "online_pre"))
        ocs = [r["ocolos"] for r in reps if r.get("ocolos", {}).get("rc")
               == "0"]
        res["online_rounds_ok"] = "%d/%d" % (len(ocs), a.reps)

        def field(name, scale=1.0):
            return med_iqr([float(o[name]) * scale for o in ocs
                            if name in o])
        res["pause_ms"] = field("pause_ns", 1e-6)
        res["bolt_ms"] = field("bolt_ns", 1e-6)
        res["round_ms"] = field("round_ns", 1e-6)
        res["online_samples"] = field("samples")
        res["functions_moved"] = field("functions_moved")
        res["rss_growth_kb"] = med_iqr([float(o["rss_after_kb"]) -
                                        float(o["rss_before_kb"])
                                        for o in ocs])
    save(a, res)
    report_run(a, res)


def cmd_curve(a):
    w = WORKLOADS[a.workload](a)
    os.makedirs(a.work, exist_ok=True)
    data = profile(w, a, "dense")
    points = []
    for n in [int(x) for x in a.samples.split(",")] + [0]:
        pa, written = to_pa(w, a, data, n, "s%d" % n if n else "all")
        if n and written < n:
            log("only %d samples recorded; %d skipped" % (written, n))
            continue
        binary, secs, nprof = bolt(w, a, pa, "s%d" % written)
        points.append({"samples": written, "bin": binary, "bolt_s": secs,
                       "profiled_functions": nprof, "ratios": []})
    for r in range(a.reps):
        for p in points:
            base, e1 = measure(w, a, w.bin)
            opt, e2 = measure(w, a, p["bin"])
            if base and opt and not e1 and not e2:
                p["ratios"].append(opt / base)
            else:
                p.setdefault("errors", []).extend(e1 + e2)
            log("rep %d samples %d: %.3f" % (r + 1, p["samples"],
                                              (opt or 0) / (base or 1)))
    for p in points:
        p["ratio"] = med_iqr(p["ratios"])
    res = {"cmd": "curve", "workload": w.name, "binary": w.bin,
           "hz": a.hz, "profile_secs": a.profile_secs, "points": points}
    save(a, res)
    report_curve(a, res)


CG_RE = re.compile(r"==\d+==\s+(I\s+refs|I1\s+misses|LLi\s+misses):\s+"
                   r"([\d,]+)")


def callgrind(w, a, binary):
    outf = os.path.join(a.work, stem(binary) + ".callgrind")
    argv = ["valgrind", "--tool=callgrind", "--cache-sim=yes",
            "--I1=%s" % a.i1, "--D1=%s" % a.d1, "--LL=%s" % a.ll,
            "--callgrind-out-file=" + outf] + w.fixed_cmd(binary)
    out, err, secs, rc = run_cmd(argv, timeout=3600)
    vals = {}
    for line in err:
        m = CG_RE.search(line)
        if m:
            vals[m.group(1).split()[0]] = int(m.group(2).replace(",", ""))
    if rc != 0 or "I" not in vals:
        sys.exit("driver: callgrind failed:\n" + "\n".join(err[-20:]))
    return {"instructions": vals["I"], "i1_misses": vals.get("I1"),
            "lli_misses": vals.get("LLi"),
            "i1_mpki": 1000.0 * vals.get("I1", 0) / vals["I"],
            "cmd": shlex.join(argv)}


def cmd_cachesim(a):
    w = WORKLOADS[a.workload](a)
    os.makedirs(a.work, exist_ok=True)
    bolted = a.bolted
    if not bolted:
        data = profile(w, a, "full")
        pa, _ = to_pa(w, a, data, 0, "full")
        bolted, _, _ = bolt(w, a, pa, "full")
    res = {"cmd": "cachesim", "workload": w.name, "binary": w.bin,
           "i1": a.i1, "orig": callgrind(w, a, w.bin),
           "bolt": callgrind(w, a, bolted), "bolted": bolted}
    save(a, res)
    report_cachesim(a, res)


AB_RE = re.compile(r"^ab pair=")


def cmd_ab(a):
    """Method 1: in-process A/B after one online round."""
    w = WORKLOADS[a.workload](a)
    runs = []
    for r in range(a.reps):
        if w.name == "fe":
            argv = [w.online_bin, "--duration", "100000", "--threads",
                    str(a.threads), "--online-after", str(a.warmup),
                    "--ab-pairs", str(a.ab_pairs), "--ab-secs",
                    str(a.ab_secs)]
            if a.twostep:
                argv += ["--ocolos-bolt", TWOSTEP]
            env = {}
        else:
            passes = a.sq_ab_passes
            argv = w._argv(w.bin, passes)
            env = {"LD_PRELOAD": w.preload, "OCOLOS_AFTER": str(a.warmup),
                   "OCOLOS_AB_PAIRS": str(a.ab_pairs),
                   "OCOLOS_AB_SECS": str(a.ab_secs)}
            if a.twostep:
                env["OCOLOS_BOLT"] = TWOSTEP
        if a.bolt_drop:
            env["BOLT_DROP"] = a.bolt_drop
        for kv_ in a.round_env or []:
            k_, _, v_ = kv_.partition("=")
            env[k_] = v_
        log("ab run %d: %s%s" % (r + 1, " ".join("%s=%s" % kv_ for kv_ in
                                                  env.items() if kv_[0] !=
                                                  "LD_PRELOAD") + " "
                                  if env else "", shlex.join(argv)))
        out, err, wall, rc = run_cmd(argv, env=env, timeout=3600)
        oc, ratios, pauses = {}, [], []
        for line in out + err:
            if line.startswith("ocolos "):
                oc = kv(line)
            elif AB_RE.match(line):
                d = kv(line)
                if "ratio" in d:
                    ratios.append(float(d["ratio"]))
                    pauses += [float(d[k]) / 1e6 for k in ("revert_ns",
                                                          "reapply_ns")
                               if float(d.get(k, 0)) > 0]
        if w.name == "sqlite":
            ratios, pauses = sqlite_ab_ratios(w, out, err)
        run = {"argv": shlex.join(argv), "env": {k: v for k, v in env.items()
                                                 if k != "LD_PRELOAD"},
               "rc": rc, "ocolos": oc, "ratios": ratios,
               "switch_pause_ms": pauses}
        if rc != 0 or oc.get("rc") != "0":
            run["error"] = "exit %d, ocolos rc=%s %s" % (
                rc, oc.get("rc"), oc.get("error", ""))
            log(run["error"])
        log("ab run %d: ratios %s" % (r + 1, ["%.3f" % x for x in ratios]))
        runs.append(run)
    allr = [x for rr in runs for x in rr["ratios"]]
    ocs = [rr["ocolos"] for rr in runs if rr["ocolos"].get("rc") == "0"]
    res = {"cmd": "ab", "workload": w.name, "binary": w.bin,
           "pairs": a.ab_pairs, "secs": a.ab_secs, "twostep": a.twostep,
           "runs": runs, "ratio": med_iqr(allr), "n": len(allr),
           "pause_ms": med_iqr([float(o["pause_ns"]) / 1e6 for o in ocs]),
           "bolt_ms": med_iqr([float(o["bolt_ns"]) / 1e6 for o in ocs]),
           "switch_pause_ms": med_iqr([p for rr in runs
                                       for p in rr["switch_pause_ms"]]),
           "rss_growth_kb": med_iqr([float(o["rss_after_kb"]) -
                                     float(o["rss_before_kb"]) for o in ocs]),
           "samples": med_iqr([float(o["samples_in_binary"]) for o in ocs]),
           "functions_moved": med_iqr([float(o["functions_moved"])
                                       for o in ocs])}
    save(a, res)
    print("### A/B in one process (method 1): %s, %d run(s) x %d pairs x "
          "%.1f s\n" % (w.name, a.reps, a.ab_pairs, a.ab_secs))
    print("command: `%s`\n" % res["argv"])
    print("C1/C0 throughput, median of %d paired ratios: %s×; round pause %s, "
          "revert/reapply pause %s, BOLT %s, samples %s, functions moved %s, "
          "RSS growth %s\n" %
          (len(allr), fmt(res["ratio"], 3), fmt(res["pause_ms"], 2, " ms"),
           fmt(res["switch_pause_ms"], 2, " ms"), fmt(res["bolt_ms"], 0,
                                                      " ms"),
           fmt(res["samples"], 0), fmt(res["functions_moved"], 0),
           fmt(res["rss_growth_kb"], 0, " kB")))


def sqlite_ab_ratios(w, out, err):
    """speedtest1 under autoself's A/B: attribute every pass lying entirely
    inside one window to that window's state (times: cumulative per-test
    times, which track time since start), then pair each C1 pass with the
    nearest C0 pass of the adjacent window: ratio = C0 time / C1 time."""
    wins, pauses = [], []
    for line in err:
        if line.startswith("ocolos-ab state="):
            d = kv(line)
            wins.append((float(d["t"]), d["state"]))
            if float(d.get("pause_ns", 0)) > 0:
                pauses.append(float(d["pause_ns"]) / 1e6)
    spans = [(wins[i][0], wins[i + 1][0], wins[i][1])
             for i in range(len(wins) - 1)]
    # Per-test times are CPU-bound work only; add the process start-up
    # offset: the first pass starts when the shim's clock reads ~0.
    ps = w.passes(out)[1:]
    cls = []
    for st, d in ps:
        for t0, t1, state in spans:
            if st >= t0 + 0.05 and st + d <= t1:
                cls.append((st, d, state, t0))
                break
    ratios = []
    by_win = {}
    for st, d, state, t0 in cls:
        by_win.setdefault((t0, state), []).append(d)
    keys = sorted(by_win)
    for i in range(len(keys) - 1):
        (ta, sa), (tb, sb) = keys[i], keys[i + 1]
        if {sa, sb} == {"c0", "c1"} and i % 2 == 0:
            c1 = statistics.median(by_win[keys[i] if sa == "c1"
                                          else keys[i + 1]])
            c0 = statistics.median(by_win[keys[i] if sa == "c0"
                                          else keys[i + 1]])
            ratios.append(c0 / c1)
    return ratios, pauses


def cmd_pairs(a):
    """Method 2: original and offline BOLT concurrently, cores swapped."""
    w = WORKLOADS[a.workload](a)
    os.makedirs(a.work, exist_ok=True)
    bolted = a.bolted
    nsamples = None
    if not bolted:
        data = profile(w, a, "full")
        pa, nsamples = to_pa(w, a, data, 0, "full")
        bolted, _, _ = bolt(w, a, pa, "full")
    ratios = []
    rounds = []
    for r in range(a.reps):
        cores = (0, 1) if r % 2 == 0 else (1, 0)
        procs = []
        for binary, core in ((w.bin, cores[0]), (bolted, cores[1])):
            argv = ["taskset", "-c", str(core)] + \
                w.cmd(binary, a.secs)
            if w.name == "fe":
                argv[argv.index("--threads") + 1] = "1"
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True,
                                          errors="replace"))
        res = []
        for p in procs:
            o, e = p.communicate(timeout=a.secs * 10 + 600)
            t, errs = w.parse(o.splitlines(), e.splitlines(), a.warmup)
            res.append(t)
        rnd = {"cores": cores, "base": res[0], "bolt": res[1]}
        if res[0] and res[1]:
            rnd["ratio"] = res[1] / res[0]
            ratios.append(rnd["ratio"])
        log("round %d cores %s: base %s bolt %s ratio %s" %
            (r + 1, cores, res[0], res[1], rnd.get("ratio")))
        rounds.append(rnd)
    out = {"cmd": "pairs", "workload": w.name, "binary": w.bin,
           "bolted": bolted, "samples": nsamples, "rounds": rounds,
           "ratio": med_iqr(ratios), "n": len(ratios)}
    save(a, out)
    print("### concurrent pairs (method 2): %s, %d rounds\n" % (w.name,
                                                               a.reps))
    print("command: `%s`\n" % out["argv"])
    print("offline BOLT / original, median of per-round ratios: %s× (n=%d)\n"
          % (fmt(out["ratio"], 3), len(ratios)))


# ---- reporting -------------------------------------------------------------

def save(a, res):
    res["argv"] = shlex.join([os.path.relpath(sys.argv[0], ROOT)] +
                             sys.argv[1:])
    res["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    d = os.path.join(ROOT, "bench/out/results")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "%s-%s-%s.json" % (
        res["cmd"], res["workload"],
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S")))
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    log("results: " + path)


def fmt(m, digits=2, suffix=""):
    if not m or m[0] is None:
        return "n/a"
    f = "%%.%df" % digits
    return (f + suffix + " (IQR " + f + "–" + f + ")") % tuple(m)


def report_run(a, res):
    print("### %s (%s), %d reps, %s\n" % (res["workload"], res["binary"],
                                          a.reps, res["date"]))
    print("command: `%s`\n" % res["argv"])
    print("| variant | speedup vs original (median of paired ratios) |")
    print("|---|---|")
    print("| offline BOLT (%d samples, BOLT %.1f s) | %s× |" %
          (res["samples"], res["offline_bolt_s"], fmt(res["bolt_ratio"])))
    if "online_ratio" in res:
        print("| online libocolos (rounds ok %s) | %s× |" %
              (res["online_rounds_ok"], fmt(res["online_ratio"])))
        print("| online, after/before round in the same run | %s× |" %
              fmt(res["online_post_pre"]))
        print("\npause %s, BOLT %s, round %s, samples %s, functions moved "
              "%s, RSS growth %s" %
              (fmt(res["pause_ms"], 1, " ms"), fmt(res["bolt_ms"], 0, " ms"),
               fmt(res["round_ms"], 0, " ms"),
               fmt(res["online_samples"], 0), fmt(res["functions_moved"], 0),
               fmt(res["rss_growth_kb"], 0, " kB")))
    errs = [e for r in res["reps"] for e in r.get("errors", [])]
    if errs:
        print("\nerrors:\n" + "\n".join("- " + e for e in errs))
    print()


def report_curve(a, res):
    print("### offline speedup vs samples: %s (%s)\n" % (res["workload"],
                                                         res["binary"]))
    print("command: `%s`\n" % res["argv"])
    print("| samples | profiled functions | speedup (median, IQR) | n |")
    print("|---|---|---|---|")
    for p in res["points"]:
        print("| %d | %s | %s× | %d |" % (p["samples"],
                                         p["profiled_functions"],
                                         fmt(p["ratio"]), len(p["ratios"])))
    print()


def report_cachesim(a, res):
    print("### callgrind I1 (%s): %s\n" % (res["i1"], res["workload"]))
    print("command: `%s`\n" % res["argv"])
    print("| binary | instructions | I1 misses | I1 misses / 1000 instr |")
    print("|---|---|---|---|")
    for k in ("orig", "bolt"):
        r = res[k]
        print("| %s | %d | %d | %.2f |" % (k, r["instructions"],
                                           r["i1_misses"], r["i1_mpki"]))
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cmd", choices=["run", "curve", "cachesim", "ab",
                                   "pairs"])
    p.add_argument("--workload", choices=list(WORKLOADS), default="fe")
    p.add_argument("--bin", help="original binary (default per workload)")
    p.add_argument("--online-bin", help="fe: binary built with libocolos "
                   "(default: BIN-ocolos)")
    p.add_argument("--preload", help="sqlite: autoself.so (default: next "
                   "to BIN)")
    p.add_argument("--no-online", action="store_true")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--secs", type=float, default=15,
                   help="fe: seconds per baseline/offline run")
    p.add_argument("--warmup", type=float, default=3,
                   help="seconds ignored at start; online: the round starts"
                   " then")
    p.add_argument("--online-secs", type=float, default=300,
                   help="fe: seconds of an online run (the default round "
                   "samples for 3-3.5 minutes on fe under its 2%% cost "
                   "limit)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hz", type=int, default=10000,
                   help="perf record -F for the offline profile")
    p.add_argument("--profile-secs", type=float, default=20,
                   help="fe: length of the offline profiling run")
    p.add_argument("--sq-size", type=int, default=50)
    p.add_argument("--sq-passes", type=int, default=6)
    p.add_argument("--sq-online-passes", type=int, default=80)
    p.add_argument("--samples", default="10000,30000,100000,300000",
                   help="curve: sample counts")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cachesim-ops", type=int, default=200000)
    p.add_argument("--cachesim-sq-size", type=int, default=5)
    p.add_argument("--bolted", help="cachesim: existing BOLTed binary")
    p.add_argument("--i1", default="32768,8,64")
    p.add_argument("--d1", default="49152,12,64")
    p.add_argument("--ll", default="2097152,16,64")
    p.add_argument("--work", default=os.path.join(ROOT, "bench/out/work"))
    p.add_argument("--bolt-profile", choices=["fdata", "pa"],
                   default="fdata", help="offline BOLT: aggregate S records "
                   "to fdata first (default), or one --pa --ba call")
    p.add_argument("--bolt-opts", help="offline BOLT layout options "
                   "(space-separated; default: BOLT_OPTS)")
    p.add_argument("--ab-pairs", type=int, default=10)
    p.add_argument("--ab-secs", type=float, default=2)
    p.add_argument("--sq-ab-passes", type=int, default=60)
    p.add_argument("--twostep", action="store_true",
                   help="ab: run the library's BOLT through "
                   "bench/bolt_twostep.sh (aggregate, then -data)")
    p.add_argument("--bolt-drop", help="ab with --twostep: llvm-bolt "
                   "arguments the wrapper removes (e.g. --split-functions)")
    p.add_argument("--round-env", action="append", metavar="KEY=VALUE",
                   help="ab: one more variable for the program's environment "
                   "(e.g. OCOLOS_PROFILE_MS=6000 for sqlite's autoself: a "
                   "fixed window); repeatable")
    a = p.parse_args()
    {"run": cmd_run, "curve": cmd_curve, "cachesim": cmd_cachesim,
     "ab": cmd_ab, "pairs": cmd_pairs}[a.cmd](a)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Phase-changing workload: one-shot vs continuous vs offline BOLT, by pid.

What this file is responsible for: measuring, on the generated front-end
program built with two hot sets (`bench/build_frontend.sh --phases 2`), the
throughput in phase 2 (hot set 1) of

  * one-shot:   one round of `ocolos-agent` in phase 1 (hot set 0), then the
                switch: phase 2 runs on C1 made for phase 1;
  * continuous: the same process, after the agent's next round (`--every`,
                generation 2) profiled phase 2 and retired C1;
  * offline:    the binary BOLTed offline with a `perf record` profile of
                phase 2 (the same BOLT options and two-step aggregation as
                bench/driver.py), run in phase 2;
  * original:   the unmodified binary in phase 2 (for reference).

It does not build anything (bench/build_frontend.sh does).

One repetition: one online process (phase 1, `ocolos-agent --pid P --every E
--rounds 2`; after the first round's JSON line SIGUSR1 switches the program
to set 1; the one-shot window is measured while the agent waits E seconds;
after the second round's line, the continuous window), and one process each
of the offline-BOLTed and the original binary in phase 2, back to back, the
order of the three rotating every repetition. A window is the median of the
program's `tput` intervals inside it. Ratios are taken within a repetition
(continuous/one-shot in the same process, adjacent windows; the others
between adjacent processes); the report gives the median of each ratio over
the repetitions, with the quartiles and the range. Every process must pass
its checksum (SIGUSR2 ends a run, then the program checks).

--concurrent (the method docs/benchmarks.md reports): each repetition runs
the four processes at once — continuous and one-shot start on set 0 with
their agents, offline and original on set 1 — switches the two online ones
after both first rounds, and measures all four in the same window after the
continuous process's second round. Besides ops per wall-clock second it
reports ops per CPU-second of each process (utime+stime read with every
`tput` line): on a loaded machine the share of the CPUs each process gets
varies far more than the speed of its code.

usage: bench/phase_bench.py [--bin bench/out/fe-ph/fe-nopie] [--reps 6] ...
Results: bench/out/results/phase-<time>.json and a summary on stdout.
"""

import argparse
import json
import os
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import driver  # noqa: E402  (BOLT options, perf2pa and two-step BOLT)

TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("phase_bench: " + msg, file=sys.stderr, flush=True)


def med_q(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q = statistics.quantiles(xs, n=4, method="inclusive")
        q1, q3 = q[0], q[2]
    return {"median": statistics.median(xs), "q1": q1, "q3": q3,
            "min": xs[0], "max": xs[-1], "n": len(xs)}


class Target:
    """A running fe process; its stdout lines arrive with wall-clock times."""

    def __init__(self, argv):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = []  # (monotonic arrival, line)
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def cpu_s(self):
        """utime + stime of the whole process, s (the workers' time: the
        main thread sleeps between ticks)."""
        try:
            with open("/proc/%d/stat" % self.p.pid) as f:
                st = f.read().rsplit(")", 1)[1].split()
            return (int(st[11]) + int(st[12])) / TICK
        except (OSError, IndexError, ValueError):
            return None

    def _read(self):
        for line in self.p.stdout:
            # With each tput line, the CPU time used so far: ops per
            # CPU-second do not depend on the share of the CPUs the process
            # got, which on a loaded machine varies far more than the speed
            # of the code.
            cpu = self.cpu_s() if line.startswith("tput ") else None
            with self.lock:
                self.lines.append((time.monotonic(), line.rstrip("\n"), cpu))

    def wait_line(self, prefix, after=0.0, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for t, l, _ in self.lines:
                    if t >= after and l.startswith(prefix):
                        return t, l
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        return None, None

    def tput(self, t0, t1):
        """Median ops/s of the tput lines that arrived in [t0, t1]."""
        with self.lock:
            xs = [float(driver.kv(l)["ops_per_s"]) for t, l, _ in self.lines
                  if t0 <= t <= t1 and l.startswith("tput ")]
        return (statistics.median(xs) if xs else None), len(xs)

    def per_cpu(self, t0, t1):
        """Operations per CPU-second over the tput lines that arrived in
        [t0, t1] (CPU time from the line before the first to the last)."""
        with self.lock:
            tp = [(t, l, c) for t, l, c in self.lines if l.startswith("tput ")]
        idx = [i for i, (t, _, _) in enumerate(tp) if t0 <= t <= t1]
        if len(idx) < 2 or idx[0] == 0:
            return None
        ops = sum(int(driver.kv(tp[i][1])["ops"]) for i in idx)
        c0, c1 = tp[idx[0] - 1][2], tp[idx[-1]][2]
        if c0 is None or c1 is None or c1 <= c0:
            return None
        return ops / (c1 - c0)

    def finish(self):  # noqa: D401
        """SIGUSR2, then the checksum line; returns (ok, lines)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGUSR2)
        try:
            self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(timeout=5)
        err = self.p.stderr.read()
        with self.lock:
            ok = any(l.startswith("check end=") and l.endswith("ok=1")
                     for _, l, _ in self.lines)
        return ok and self.p.returncode == 0, err


def window(tg, start, secs):
    """Wait until start + secs, return the median tput in that window."""
    end = start + secs
    while time.monotonic() < end + 0.05:
        time.sleep(0.05)
    return tg.tput(start, end + 0.05)


def fe_argv(a, binary, phase):
    return [binary, "--threads", str(a.threads), "--interval",
            str(a.interval), "--duration", "100000", "--phase", str(phase),
            "--check", str(a.check)]


def run_plain(a, binary, label):
    tg = Target(fe_argv(a, binary, 1))
    t, _ = tg.wait_line("tput ", timeout=120)
    if t is None:
        sys.exit("phase_bench: %s printed no tput line" % binary)
    start = time.monotonic() + a.settle
    v, n = window(tg, start, a.window)
    ok, err = tg.finish()
    log("%s: %.0f ops/s (%d intervals), checksum %s" %
        (label, v or 0, n, "ok" if ok else "FAILED"))
    return {"ops_per_s": v, "intervals": n, "check_ok": ok}


def agent_window_args(a):
    """The agent's sampling options: a fixed window (--profile) or, with
    --profile-max, a window that converges (the library's default in
    process; the agent's is fixed)."""
    argv = (["--profile-max", str(a.profile_max)] if a.profile_max
            else ["--profile", str(a.profile)])
    if a.hz:
        argv += ["--hz", str(a.hz)]
    return argv


def run_online(a):
    tg = Target(fe_argv(a, a.bin, 0))
    t, _ = tg.wait_line("tput ", timeout=120)
    if t is None:
        sys.exit("phase_bench: the target printed no tput line")
    time.sleep(a.warmup)
    every = a.settle + a.window + a.interval + 1.0
    argv = [a.agent, "--pid", str(tg.p.pid), "--every", "%.1f" % every,
            "--rounds", "2", "--json", "-q"] + agent_window_args(a)
    ag = subprocess.Popen(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    res = {"agent": shlex.join(argv), "rounds": []}
    q = queue.Queue()

    def rd():
        for line in ag.stdout:
            q.put((time.monotonic(), line))
        q.put((time.monotonic(), None))
    threading.Thread(target=rd, daemon=True).start()

    def next_round():
        while True:
            t, line = q.get(timeout=1800)
            if line is None:
                return t, None
            if line.startswith("{"):
                return t, json.loads(line)

    t1, r1 = next_round()
    res["rounds"].append(r1)
    if not r1 or not r1.get("ok"):
        ag.wait()
        tg.finish()
        res["error"] = "round 1: %s" % (r1,)
        return res
    # Phase 2 now: the one-shot state (C1 made for phase 1).
    tg.p.send_signal(signal.SIGUSR1)
    tp, _ = tg.wait_line("phase ", after=t1, timeout=30)
    start = (tp or time.monotonic()) + a.settle
    res["oneshot"], res["oneshot_n"] = window(tg, start, a.window)
    res["oneshot_window_end_before_round2"] = time.monotonic() < t1 + every
    t2, r2 = next_round()
    res["rounds"].append(r2)
    if not r2 or not r2.get("ok"):
        res["error"] = "round 2: %s" % (r2,)
    else:
        res["continuous"], res["continuous_n"] = window(
            tg, t2 + a.settle, a.window)
    ag.wait()
    res["agent_rc"] = ag.returncode
    ok, err = tg.finish()
    res["check_ok"] = ok
    log("online: one-shot %.0f, continuous %s ops/s; rounds gen %s; "
        "checksum %s" % (res["oneshot"] or 0, res.get("continuous"),
                         [r.get("generation") if r else None
                          for r in res["rounds"]], "ok" if ok else "FAILED"))
    return res


def run_concurrent(a, bolted):
    """One repetition of --concurrent: four processes at once, one window.

    continuous (C) and one-shot (S) start on set 0 with their agents
    (C: --every E --rounds 2, S: one round); after both first rounds, SIGUSR1
    to both; offline (F) and original (O) run set 1 from the start. After
    C's second round, all four are measured in the same window: the load of
    the machine is the same for all of them."""
    tg = {"C": Target(fe_argv(a, a.bin, 0)), "S": Target(fe_argv(a, a.bin, 0)),
          "F": Target(fe_argv(a, bolted, 1)), "O": Target(fe_argv(a, a.bin, 1))}
    for k, t in tg.items():
        if t.wait_line("tput ", timeout=120)[0] is None:
            sys.exit("phase_bench: %s printed no tput line" % k)
    time.sleep(a.warmup)
    every = a.settle + a.window + a.interval + 1.0
    res = {"rounds": {}}
    agents, queues = {}, {}
    for k, extra in (("C", ["--every", "%.1f" % every, "--rounds", "2"]),
                     ("S", [])):
        argv = [a.agent, "--pid", str(tg[k].p.pid), "--json",
                "-q"] + agent_window_args(a) + extra
        res["agent_" + k] = shlex.join(argv)
        agents[k] = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        q = queue.Queue()
        queues[k] = q

        def rd(p=agents[k], q=q):
            for line in p.stdout:
                q.put((time.monotonic(), line))
            q.put((time.monotonic(), None))
        threading.Thread(target=rd, daemon=True).start()
        res["rounds"][k] = []

    def next_round(k):
        while True:
            t, line = queues[k].get(timeout=1800)
            if line is None:
                return t, None
            if line.startswith("{"):
                r = json.loads(line)
                res["rounds"][k].append(r)
                return t, r
    ok = True
    for k in ("C", "S"):
        t, r = next_round(k)
        ok = ok and bool(r and r.get("ok"))
        if k == "C":
            t_c1 = t
    # C waits `every` after its first round: switch both now.
    for k in ("C", "S"):
        tg[k].p.send_signal(signal.SIGUSR1)
    res["switch_after_c_round1_s"] = time.monotonic() - t_c1
    if ok:
        t2, r2 = next_round("C")
        ok = bool(r2 and r2.get("ok"))
    if ok:
        start = time.monotonic() + a.settle
        end = start + a.window
        while time.monotonic() < end + 0.05:
            time.sleep(0.05)
        for k in tg:
            res[k], res[k + "_n"] = tg[k].tput(start, end + 0.05)
            res[k + "_cpu"] = tg[k].per_cpu(start, end + 0.05)
    else:
        res["error"] = "a round failed"
    for p in agents.values():
        p.wait()
    res["checks"] = {k: t.finish()[0] for k, t in tg.items()}
    log("concurrent: C %s S %s F %s O %s ops/s; per CPU-s C %s S %s F %s O "
        "%s; checksums %s" % (
            res.get("C"), res.get("S"), res.get("F"), res.get("O"),
            res.get("C_cpu"), res.get("S_cpu"), res.get("F_cpu"),
            res.get("O_cpu"), res["checks"]))
    return res


def offline_bolt(a):
    """perf record of phase 2 -> perf2pa -> two-step llvm-bolt."""
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, "phase2.perf.data")
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(a.bolt_hz),
            "-o", data, "--"] + [a.bin, "--threads", str(a.threads),
                                 "--duration", str(a.profile_secs),
                                 "--phase", "1"]
    log("profiling phase 2: " + shlex.join(argv))
    r = subprocess.run(argv, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("phase_bench: perf record failed: " + r.stderr[-2000:])

    class W:
        bin = a.bin
    ns = argparse.Namespace(work=a.work, seed=1, bolt_opts=None,
                            bolt_profile="fdata")
    pa, nsamp = driver.to_pa(W, ns, data, 0, "phase2")
    out, secs, moved = driver.bolt(W, ns, pa, "phase2")
    return out, {"samples": nsamp, "bolt_s": secs, "profiled_functions":
                 moved, "perf": shlex.join(argv)}


def concurrent_main(a, res):
    res["mode"] = "concurrent"
    for i in range(a.reps):
        rep = run_concurrent(a, res["bolted"])
        C, S, F, O = (rep.get(k + "_cpu") for k in "CSFO")
        rep["ratios_cpu"] = {
            "continuous/oneshot": C / S if C and S else None,
            "continuous/offline": C / F if C and F else None,
            "oneshot/original": S / O if S and O else None,
            "offline/original": F / O if F and O else None,
            "continuous/original": C / O if C and O else None,
        }
        C, S, F, O = (rep.get(k) for k in "CSFO")
        rep["ratios"] = {
            "continuous/oneshot": C / S if C and S else None,
            "continuous/offline": C / F if C and F else None,
            "oneshot/original": S / O if S and O else None,
            "offline/original": F / O if F and O else None,
            "continuous/original": C / O if C and O else None,
        }
        log("rep %d: wall %s; per CPU-s %s" % (i + 1, ", ".join(
            "%s %.3f" % (k, v) for k, v in rep["ratios"].items()
            if v is not None), ", ".join(
            "%s %.3f" % (k, v) for k, v in rep["ratios_cpu"].items()
            if v is not None)))
        res["reps"].append(rep)
    res["load_end"] = open("/proc/loadavg").read().split()[:3]
    summ = {k: med_q([r["ratios"][k] for r in res["reps"]])
            for k in res["reps"][0]["ratios"]}
    summ_cpu = {k: med_q([r["ratios_cpu"][k] for r in res["reps"]])
                for k in res["reps"][0]["ratios_cpu"]}
    res["summary"] = summ
    res["summary_cpu"] = summ_cpu
    res["checks_ok"] = all(all(r["checks"].values()) for r in res["reps"])
    res["rounds_ok"] = all(len(r["rounds"]["C"]) == 2 and
                           len(r["rounds"]["S"]) == 1 and
                           all(x.get("ok") for x in r["rounds"]["C"] +
                               r["rounds"]["S"]) for r in res["reps"])
    os.makedirs(os.path.join(ROOT, "bench/out/results"), exist_ok=True)
    path = os.path.join(ROOT, "bench/out/results", "phase-conc-%s.json" %
                        time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print("phase_bench --concurrent: %s, %d reps, window %.1f s, agent "
          "%s; checksums %s, all rounds ok %s; load %s -> %s" %
          (os.path.basename(a.bin), a.reps, a.window,
           " ".join(agent_window_args(a)),
           "ok" if res["checks_ok"] else "FAILED", res["rounds_ok"],
           " ".join(res["load_start"]), " ".join(res["load_end"])))
    for title, sm in (("ops per wall-clock second", summ),
                      ("ops per CPU-second of the process", summ_cpu)):
        print(" " + title + ":")
        for k, m in sm.items():
            if m:
                print("  %-20s median %.3f  IQR %.3f-%.3f  range %.3f-%.3f  "
                      "n=%d" % (k, m["median"], m["q1"], m["q3"], m["min"],
                                m["max"], m["n"]))
    for r in res["reps"]:
        for k in ("C", "S"):
            print("  %s rounds: " % k + "; ".join(
                "gen %s moved %s c1_bytes %s samples_in_binary %s pause %.1f ms "
                "bolt %.0f ms versions_mapped %s retired %s" % (
                    x.get("generation"), x.get("functions_moved"),
                    x.get("c1_bytes"), x.get("samples_in_binary"),
                    x.get("pause_ms", 0), x.get("bolt_ms", 0),
                    x.get("versions_mapped"), x.get("versions_retired"))
                for x in r["rounds"][k]))
    print("  results: " + path)
    return 0 if res["checks_ok"] and res["rounds_ok"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(ROOT, "bench/out/fe-ph/fe-nopie"))
    p.add_argument("--agent", default=os.path.join(ROOT, "build/tools/ocolos-agent"))
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--window", type=float, default=4.0,
                   help="measurement window, s")
    p.add_argument("--settle", type=float, default=1.0,
                   help="skipped after a switch, round or start, s")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--profile", type=float, default=4.0,
                   help="agent sampling window of each round, s")
    p.add_argument("--profile-max", type=float, default=0,
                   help="agent --profile-max: a converging window of at "
                   "most this many s at the asked rate instead of --profile "
                   "(under the agent's default 2%% cost limit a lowered rate "
                   "makes it up to 16x as long)")
    p.add_argument("--hz", type=int, default=0, help="agent --hz (0: default)")
    p.add_argument("--check", type=int, default=2000)
    p.add_argument("--profile-secs", type=float, default=10,
                   help="offline: perf record of phase 2, s")
    p.add_argument("--bolt-hz", type=int, default=10000)
    p.add_argument("--bolted", help="reuse this offline-BOLTed binary")
    p.add_argument("--work", default=os.path.join(ROOT, "bench/out/phase"))
    p.add_argument("--concurrent", action="store_true",
                   help="each repetition: continuous, one-shot, offline and "
                   "original processes at once, measured in one window")
    a = p.parse_args()
    a.bin = os.path.abspath(a.bin)
    res = {"argv": sys.argv, "date": time.strftime("%FT%TZ", time.gmtime()),
           "load_start": open("/proc/loadavg").read().split()[:3],
           "reps": []}
    if a.bolted:
        bolted = a.bolted
    else:
        bolted, res["offline"] = offline_bolt(a)
    res["bolted"] = bolted
    if a.concurrent:
        return concurrent_main(a, res)
    kinds = ["online", "offline", "original"]
    for i in range(a.reps):
        order = kinds[i % 3:] + kinds[:i % 3]
        rep = {"order": order}
        for k in order:
            if k == "online":
                rep["online"] = run_online(a)
            elif k == "offline":
                rep["offline"] = run_plain(a, bolted, "offline")
            else:
                rep["original"] = run_plain(a, a.bin, "original")
        on = rep["online"]
        c, o1 = on.get("continuous"), on.get("oneshot")
        off, orig = rep["offline"]["ops_per_s"], rep["original"]["ops_per_s"]
        rep["ratios"] = {
            "continuous/oneshot": c / o1 if c and o1 else None,
            "continuous/offline": c / off if c and off else None,
            "oneshot/original": o1 / orig if o1 and orig else None,
            "offline/original": off / orig if off and orig else None,
            "continuous/original": c / orig if c and orig else None,
        }
        log("rep %d (%s): %s" % (i + 1, ",".join(order), ", ".join(
            "%s %.3f" % (k, v) for k, v in rep["ratios"].items()
            if v is not None)))
        res["reps"].append(rep)
    res["load_end"] = open("/proc/loadavg").read().split()[:3]
    summ = {}
    for k in res["reps"][0]["ratios"]:
        summ[k] = med_q([r["ratios"][k] for r in res["reps"]])
    res["summary"] = summ
    res["checks_ok"] = all(r["online"].get("check_ok") and
                           r["offline"]["check_ok"] and
                           r["original"]["check_ok"] for r in res["reps"])
    res["rounds_ok"] = all(len(r["online"]["rounds"]) == 2 and
                           all(x and x.get("ok") for x in
                               r["online"]["rounds"]) for r in res["reps"])
    os.makedirs(os.path.join(ROOT, "bench/out/results"), exist_ok=True)
    path = os.path.join(ROOT, "bench/out/results",
                        "phase-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print("phase_bench: %s, %d reps, window %.1f s, agent %s; "
          "checksums %s, all rounds ok %s; load %s -> %s" %
          (os.path.basename(a.bin), a.reps, a.window,
           " ".join(agent_window_args(a)),
           "ok" if res["checks_ok"] else "FAILED", res["rounds_ok"],
           " ".join(res["load_start"]), " ".join(res["load_end"])))
    for k, m in summ.items():
        if m:
            print("  %-20s median %.3f  IQR %.3f-%.3f  range %.3f-%.3f  n=%d"
                  % (k, m["median"], m["q1"], m["q3"], m["min"], m["max"],
                     m["n"]))
    for r in res["reps"]:
        rs = [x for x in r["online"]["rounds"] if x]
        print("  rounds: " + "; ".join(
            "gen %s moved %s c1_bytes %s pause %.1f ms bolt %.0f ms "
            "versions_mapped %s retired %s" % (
                x.get("generation"), x.get("functions_moved"),
                x.get("c1_bytes"), x.get("pause_ms", 0), x.get("bolt_ms", 0),
                x.get("versions_mapped"), x.get("versions_retired"))
            for x in rs))
    print("  results: " + path)
    return 0 if res["checks_ok"] and res["rounds_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Memory of continuous optimization: N rounds vs one round, by pid.

What this file is responsible for: running the generated two-phase
front-end program (`bench/build_frontend.sh --phases 2`) twice, one process
after the other — process A gets one `ocolos-agent` round, process B
`ocolos-agent --every E --rounds N` while the program switches hot set every
--toggle seconds (SIGUSR1), so successive rounds see different hot code —
and comparing, after the last round and with the agent gone:

  * RSS (VmRSS of /proc/PID/status) and its anonymous part (RssAnon);
  * the code mappings the library made: every /proc/PID/maps line naming
    `ocolos` (code versions /memfd:ocolos-cN, unwind tables, veneers, stubs,
    the state record), their total size and their Rss from smaps;
  * the newest version's size (its /memfd:ocolos-cN mapping, and the round's
    c1_bytes).

Target (issue 11): B - A <= 1.25 x newest C's size + 16 MiB, for RSS and for
the code mappings. After every round of B it also records RSS and the code
mappings, to show whether they grow with the rounds.

It does not build anything. usage: bench/continuous_memory.py [--rounds 50]
Results: bench/out/results/memory-<time>.json and a summary on stdout.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1 << 20


def log(msg):
    print("continuous_memory: " + msg, file=sys.stderr, flush=True)


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def ocolos_maps(pid):
    """Every mapping naming ocolos: (name, size, rss) in bytes."""
    out, cur = [], None
    hdr = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = hdr.match(line)
            if m:
                cur = None
                if "ocolos" in m.group(3):
                    cur = [m.group(3), int(m.group(2), 16) - int(m.group(1), 16), 0]
                    out.append(cur)
            elif cur is not None and line.startswith("Rss:"):
                cur[2] = int(line.split()[1]) * 1024
    return [tuple(x) for x in out]


def snapshot(pid):
    maps = ocolos_maps(pid)
    gens = {}
    for name, size, rss in maps:
        m = re.search(r"ocolos-c(\d+)", name)
        if m:
            gens.setdefault(int(m.group(1)), 0)
            gens[int(m.group(1))] += size
    newest = max(gens) if gens else None
    return {
        "vmrss": status_kb(pid, "VmRSS") * 1024,
        "rss_anon": status_kb(pid, "RssAnon") * 1024,
        "rss_file": status_kb(pid, "RssFile") * 1024,
        "rss_shmem": status_kb(pid, "RssShmem") * 1024,
        "ocolos_mappings": len(maps),
        "ocolos_size": sum(s for _, s, _ in maps),
        "ocolos_rss": sum(r for _, _, r in maps),
        "code_versions": sorted(gens),
        "newest_gen": newest,
        "newest_size": gens.get(newest, 0) if newest else 0,
        "maps": maps,
    }


def run(a, rounds):
    argv = [a.bin, "--threads", str(a.threads), "--duration", "100000",
            "--interval", "1", "--check", "500"]
    tg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    lines = []
    rt = threading.Thread(target=lambda: lines.extend(tg.stdout), daemon=True)
    rt.start()
    time.sleep(a.warmup)
    base = snapshot(tg.pid)
    ag_argv = [a.agent, "--pid", str(tg.pid), "--profile", str(a.profile),
               "--json", "-q"]
    if rounds > 1:
        ag_argv += ["--every", str(a.every), "--rounds", str(rounds)]
    log("target %d: %s; agent: %s" % (tg.pid, " ".join(argv), " ".join(ag_argv)))
    ag = subprocess.Popen(ag_argv, stdout=subprocess.PIPE, text=True)
    stop = threading.Event()

    def toggler():
        while not stop.wait(a.toggle):
            if tg.poll() is None:
                tg.send_signal(signal.SIGUSR1)
    tt = None
    if rounds > 1 and a.toggle > 0:
        tt = threading.Thread(target=toggler, daemon=True)
        tt.start()
    per_round = []
    for line in ag.stdout:
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        s = snapshot(tg.pid)
        s.pop("maps")
        s["round"] = r.get("round")
        s["ok"] = r.get("ok")
        s["generation"] = r.get("generation")
        s["versions_mapped"] = r.get("versions_mapped")
        s["versions_retired"] = r.get("versions_retired")
        s["bytes_retired"] = r.get("bytes_retired")
        s["c1_bytes"] = r.get("c1_bytes")
        per_round.append(s)
        if not r.get("ok"):
            log("round %s failed: %s" % (r.get("round"), line.strip()[:400]))
        elif len(per_round) % 5 == 0 or rounds == 1:
            log("round %d: gen %s, VmRSS %.1f MiB, ocolos mappings %.1f MiB "
                "(%d), versions %s" % (len(per_round), s["generation"],
                                       s["vmrss"] / MIB, s["ocolos_size"] / MIB,
                                       s["ocolos_mappings"], s["code_versions"]))
    ag.wait()
    stop.set()
    time.sleep(a.settle)
    final = snapshot(tg.pid)
    final["last_c1_bytes"] = per_round[-1]["c1_bytes"] if per_round else None
    tg.send_signal(signal.SIGUSR2)
    tg.wait(timeout=120)
    rt.join(timeout=5)
    ok = any(l.startswith("check end=") and "ok=1" in l for l in lines)
    return {"argv": argv, "agent": ag_argv, "agent_rc": ag.returncode,
            "before": {k: v for k, v in base.items() if k != "maps"},
            "final": final, "per_round": per_round, "check_ok": ok,
            "rounds_ok": sum(1 for r in per_round if r["ok"])}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(ROOT, "bench/out/fe-ph/fe-nopie"))
    p.add_argument("--agent", default=os.path.join(ROOT, "build/tools/ocolos-agent"))
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--profile", type=float, default=1.0)
    p.add_argument("--every", type=float, default=0.5)
    p.add_argument("--toggle", type=float, default=20.0,
                   help="SIGUSR1 (switch hot set) every SEC in process B")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--settle", type=float, default=1.0)
    a = p.parse_args()
    res = {"argv": sys.argv, "date": time.strftime("%FT%TZ", time.gmtime())}
    res["one"] = run(a, 1)
    res["many"] = run(a, a.rounds)
    A, B = res["one"]["final"], res["many"]["final"]
    newest = B["newest_size"]
    allow = 1.25 * newest + 16 * MIB
    res["allowance"] = allow
    d_rss, d_code = B["vmrss"] - A["vmrss"], B["ocolos_size"] - A["ocolos_size"]
    res["delta_rss"], res["delta_code"] = d_rss, d_code
    res["met_rss"], res["met_code"] = d_rss <= allow, d_code <= allow
    os.makedirs(os.path.join(ROOT, "bench/out/results"), exist_ok=True)
    path = os.path.join(ROOT, "bench/out/results",
                        "memory-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(res, f, indent=1)

    def row(tag, s, run_):
        return ("  %-9s VmRSS %7.1f MiB (anon %6.1f, file %6.1f); ocolos "
                "mappings %2d, %6.2f MiB mapped, %6.2f MiB resident; versions "
                "%s, newest %.2f MiB; rounds ok %d, checksum %s" % (
                    tag, s["vmrss"] / MIB, s["rss_anon"] / MIB,
                    s["rss_file"] / MIB, s["ocolos_mappings"],
                    s["ocolos_size"] / MIB, s["ocolos_rss"] / MIB,
                    s["code_versions"], s["newest_size"] / MIB,
                    run_["rounds_ok"], "ok" if run_["check_ok"] else "FAILED"))
    print("continuous_memory: %s, %d rounds (profile %.1f s, every %.1f s, "
          "hot set switched every %.0f s) vs 1 round" % (
              os.path.basename(a.bin), a.rounds, a.profile, a.every, a.toggle))
    print("  before the agent: A VmRSS %.1f MiB, B VmRSS %.1f MiB" % (
        res["one"]["before"]["vmrss"] / MIB, res["many"]["before"]["vmrss"] / MIB))
    print(row("1 round", A, res["one"]))
    print(row("%d rounds" % a.rounds, B, res["many"]))
    print("  B - A: VmRSS %+.2f MiB, ocolos mappings %+.2f MiB; allowance "
          "1.25 x %.2f MiB + 16 MiB = %.2f MiB -> RSS %s, mappings %s" % (
              d_rss / MIB, d_code / MIB, newest / MIB, allow / MIB,
              "met" if res["met_rss"] else "NOT met",
              "met" if res["met_code"] else "NOT met"))
    pr = res["many"]["per_round"]
    if pr:
        vm = [r["vmrss"] / MIB for r in pr]
        oc = [r["ocolos_size"] / MIB for r in pr]
        print("  B per round: VmRSS min %.1f / max %.1f / last %.1f MiB; "
              "ocolos mappings min %.2f / max %.2f / last %.2f MiB; "
              "versions_mapped max %d; last line: generation %s, retired %s "
              "(%s bytes)" % (min(vm), max(vm), vm[-1], min(oc), max(oc), oc[-1],
                              max(r["versions_mapped"] or 0 for r in pr),
                              pr[-1]["generation"], pr[-1]["versions_retired"],
                              pr[-1]["bytes_retired"]))
    for name, size, rss in B["maps"]:
        print("    B map %-40s %9d bytes, rss %9d" % (name, size, rss))
    print("  results: " + path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

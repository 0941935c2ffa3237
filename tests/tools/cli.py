#!/usr/bin/env python3
"""The command-line contract of ocolos-agent and ocolos-supervise
(docs/tools.md), checked from outside, as a user or a script sees it; for
ocolos-bam (docs/bam.md), its man page and its install.

  cli.py args AGENT SUPERVISE        every bad argument: the documented exit
                                     status and a message naming the option;
                                     --help / --version; text on a terminal,
                                     JSON on a pipe
  cli.py json AGENT TARGET SCHEMA    real reports (a round, a failed round, a
                                     process that cannot be opened) parse and
                                     follow docs/tools.schema.json
  cli.py man SRC AGENT SUPERVISE     the man pages render without a warning;
                                     every option of --help is in its man page
                                     (ocolos-bam's too: found beside AGENT),
                                     every function of the 0.2 API in
                                     libocolos(3)
  cli.py install CMAKE BUILD_DIR     cmake --install puts the tools and man
                                     pages under the prefix, and they run
  cli.py profiles AGENT TARGET       --export-profile on one process, then
                                     --profile-from on another of the same
                                     build (and two files merged); another
                                     build's, truncated and malformed files
                                     refused with OCOLOS_EBADPROFILE
  cli.py artifacts AGENT PIE NOPIE   --artifact-out on one process, then
                                     --artifact-in on another of the same
                                     build (PIE and not): same offset from
                                     the load bias, no BOLT run, output as
                                     without a round; another build's,
                                     altered, truncated, group/other-writable
                                     files and a taken range refused by name

Exit 0 pass, 1 fail, 77 skip. In a sanitizer build the tools need the ASan
runtime (OCOLOS_TEST_PRELOAD), the targets must not have it.
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# toolenv.py lies beside this script (sys.path[0]); no __pycache__ left there
sys.dont_write_bytecode = True
from toolenv import kernel_thread, target_env, tool_env  # noqa: E402

SKIP = 77
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, file=sys.stderr)
    return cond


def run(argv, timeout=30):
    p = subprocess.run(argv, env=tool_env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def long_options(help_text):
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text)))


# A pid no process has: PID_MAX_LIMIT itself (pid_max is below it unless
# raised to the limit, and then this pid is taken last).
NO_PID = "4194304"

# (arguments, option the message must name, what it must say). Each is
# refused before anything is done.
AGENT_BAD = [
    (["--pid", "12abc"], "--pid", "not a whole number"),
    (["--pid", "-1"], "--pid", "negative"),
    (["--pid", "0"], "--pid", "zero"),
    (["--pid", "4194305"], "--pid", "out of range"),
    (["--pid", "99999999999999999999999999"], "--pid", "out of range"),
    (["--pid", ""], "--pid", "not a whole number"),
    (["--pid", " 5"], "--pid", "not a whole number"),
    (["--pid", "+5"], "--pid", "not a whole number"),
    (["--pid", "0x10"], "--pid", "not a whole number"),
    (["-p", "7x"], "--pid", "not a whole number"),
    (["--pid", "5", "--profile", "-1"], "--profile", "negative"),
    (["--pid", "5", "--profile", "0"], "--profile", "zero"),
    (["--pid", "5", "--profile", "0.000"], "--profile", "zero"),
    (["--pid", "5", "--profile", "12abc"], "--profile", "not a number of seconds"),
    (["--pid", "5", "--profile", "1e3"], "--profile", "not a number of seconds"),
    (["--pid", "5", "--profile", "inf"], "--profile", "not a number of seconds"),
    (["--pid", "5", "--profile", "nan"], "--profile", "not a number of seconds"),
    (["--pid", "5", "--profile", "."], "--profile", "not a number of seconds"),
    (["--pid", "5", "--profile", "1.2.3"], "--profile", "not a number of seconds"),
    (["--pid", "5", "--profile", "0.0001"], "--profile", "finer than a millisecond"),
    (["--pid", "5", "--profile", "3601"], "--profile", "out of range"),
    (["--pid", "5", "--profile", "4294967296"], "--profile", "out of range"),
    (["--pid", "5", "-P", "-2"], "--profile", "negative"),
    (["--pid", "5", "--every", "0"], "--every", "zero"),
    (["--pid", "5", "--every", "-1"], "--every", "negative"),
    (["--pid", "5", "--every", "86401"], "--every", "out of range"),
    (["--pid", "5", "--rounds", "0"], "--rounds", "zero"),
    (["--pid", "5", "--rounds", "-3"], "--rounds", "negative"),
    (["--pid", "5", "--rounds", "-"], "--rounds", "not a whole number"),
    (["--pid", "5", "--every", "-.5"], "--every", "negative"),
    (["--pid", "5", "--rounds", "1.5"], "--rounds", "not a whole number"),
    (["--pid", "5", "--hz", "0"], "--hz", "zero"),
    (["--pid", "5", "--hz", "100001"], "--hz", "out of range"),
    (["--pid", "5", "--bolt-timeout", "0"], "--bolt-timeout", "zero"),
    (["--pid", "5", "--bolt-timeout", "-5"], "--bolt-timeout", "negative"),
    (["--pid", "5", "--sampler", "bogus"], "--sampler", "not a sampler"),
    (["--pid", "5", "--sampler", "sigprof"], "--sampler", "not a pid"),
    (["--pid", "5", "--bolt", ""], "--bolt", "empty path"),
    (["--pid", "5", "--binary", ""], "--binary", "empty path"),
    (["--pid", "5", "--tmp-dir", ""], "--tmp-dir", "empty path"),
    (["--pid", "5", "--bogus"], "--bogus", "unrecognized"),
    (["--pid", "5", "-x"], "'x'", "invalid option"),
    (["--pid"], "--pid", "requires an argument"),
    ([], "--pid", "required"),
    (["--profile", "1"], "--pid", "required"),
    (["--pid", "5", "extra"], "extra", "unexpected argument"),
    (["--pid", "5", "--revert", "--every", "1"], "--revert", "--every"),
    (["--pid", "5", "--revert", "--rounds", "2"], "--revert", "--rounds"),
    (["--pid", "5", "--artifact-in", ""], "--artifact-in", "empty path"),
    (["--pid", "5", "--artifact-out", ""], "--artifact-out", "empty path"),
    (["--pid", "5", "--artifact-in", "a", "--artifact-out", "b"], "--artifact-in", "does not take"),
    (["--pid", "5", "--artifact-in", "a", "--profile-from", "b"], "--artifact-in", "does not take"),
    (["--pid", "5", "--artifact-out", "a", "--revert"], "--revert", "--artifact-out"),
    (["--pid", "5", "--profile", "1", "--profile-max", "2"], "--profile-max", "choose one"),
    (["--pid", "5", "--profile-max", "2", "--profile", "1"], "--profile-max", "choose one"),
    (["--pid", "5", "--profile-max", "0"], "--profile-max", "zero"),
    (["--pid", "5", "--max-overhead", "0.01"], "--max-overhead", "out of range"),
    (["--pid", "5", "--max-overhead", "101"], "--max-overhead", "out of range"),
    (["--pid", "5", "--work-cmd", "true", "--benefit-pairs", "0"], "--benefit-pairs", "zero"),
    (["--pid", "5", "--work-cmd", "true", "--benefit-pairs", "101"], "--benefit-pairs",
     "out of range"),
    (["--pid", "5", "--work-cmd", "true", "--benefit-window", "61"], "--benefit-window",
     "out of range"),
    (["--pid", "5", "--benefit-pairs", "3"], "--benefit-pairs", "needs --work-cmd"),
    (["--pid", "5", "--benefit-min", "1.1"], "--benefit-min", "needs --work-cmd"),
]

SUPERVISE_BAD = [
    (["--after", "-1"], "--after", "negative"),
    (["--after", "12abc"], "--after", "not a number of seconds"),
    (["--after", "86401"], "--after", "out of range"),
    (["--profile", "-1"], "--profile", "negative"),
    (["--profile", "0"], "--profile", "zero"),
    (["--every", "0"], "--every", "zero"),
    (["--rounds", "0"], "--rounds", "zero"),
    (["--hz", "x"], "--hz", "not a whole number"),
    (["--sampler", "sigprof"], "--sampler", "not a pid"),
    (["--bogus"], "--bogus", "unrecognized"),
    (["--benefit-window", "2"], "--benefit-window", "needs --work-cmd"),
    # getopt takes the "--" that follows as the value.
    (["--after"], "--after", "'--' is not a number of seconds"),
]


def mode_args(agent, supervise):
    for args, option, why in AGENT_BAD:
        rc, out, err = run([agent] + args)
        check(rc == 2, "ocolos-agent %s: exit %d, want 2" % (args, rc))
        check(option in err and why in err,
              "ocolos-agent %s: the message does not name %s (%s): %r" % (args, option, why, err))
        check(out == "", "ocolos-agent %s: wrote to stdout: %r" % (args, out))
    with tempfile.TemporaryDirectory() as tmp:
        flag = os.path.join(tmp, "ran")
        for args, option, why in SUPERVISE_BAD:
            # CMD would leave a file: a refused command line must not run it.
            rc, out, err = run([supervise] + args + ["--", "touch", flag])
            check(rc == 125, "ocolos-supervise %s: exit %d, want 125" % (args, rc))
            check(option in err and why in err,
                  "ocolos-supervise %s: the message does not name %s (%s): %r"
                  % (args, option, why, err))
            check(not os.path.exists(flag), "ocolos-supervise %s: CMD ran" % args)
        rc, out, err = run([supervise])
        check(rc == 125 and "no command" in err, "ocolos-supervise without CMD: %d %r" % (rc, err))
        # CMD's own options are CMD's; its status is the supervisor's.
        rc, out, err = run([supervise, "--after", "0.5", "-q", "--", "sh", "-c", "exit 7", "--bogus"])
        check(rc == 7, "ocolos-supervise -- sh -c 'exit 7': exit %d, want 7" % rc)
        rc, out, err = run([supervise, "--", "/nonexistent/cmd"])
        check(rc == 127, "ocolos-supervise -- /nonexistent/cmd: exit %d, want 127" % rc)

    # Accepted values reach the library: a pid nobody has fails to open
    # (exit 1, one report), whatever the valid options around it.
    for extra in (["--profile", ".5"], ["--profile", "1."], ["--profile", "3600"],
                  ["-P", "0.001", "-e", "86400", "-n", "1000000"],
                  ["--hz", "100000", "--bolt-timeout", "1", "--sampler", "perf-ip"],
                  ["--profile", "1", "--profile", "2"], ["--revert"]):
        rc, out, err = run([agent, "--pid", NO_PID, "--json"] + extra)
        check(rc == 1, "ocolos-agent --pid %s %s: exit %d, want 1 (%r)" % (NO_PID, extra, rc, err))
        check(out.startswith('{"pid":%s,"round":0,"ok":false' % NO_PID),
              "ocolos-agent %s: no open-failure report: %r" % (extra, out))

    for tool, name, own in ((agent, "ocolos-agent", ["--pid"]), (supervise, "ocolos-supervise",
                                                                 ["--after"])):
        for h in ("--help", "-h"):
            rc, out, err = run([tool, h])
            check(rc == 0 and err == "", "%s %s: exit %d, stderr %r" % (name, h, rc, err))
            for word in own + ["--profile", "--every", "--rounds", "--sampler", "--hz", "--bolt",
                               "--bolt-timeout", "--binary", "--tmp-dir", "--keep-work-dir",
                               "--json", "--text", "--quiet", "--verbose", "--help",
                               "--version", "default", "Exit status", "Output", "SIGINT"]:
                check(word in out, "%s --help does not mention %s" % (name, word))
        for v in ("--version", "-V"):
            rc, out, err = run([tool, v])
            check(rc == 0 and out.startswith(name + " ") and "libocolos 0.2." in out,
                  "%s %s: exit %d: %r" % (name, v, rc, out))

    # No --json/--text: text on a terminal, JSON on a pipe (above).
    pid, fd = pty.fork()
    if pid == 0:
        env = tool_env()
        os.execve(agent, [agent, "--pid", NO_PID, "-q"], env)
    text = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], 20)
            chunk = os.read(fd, 4096) if r else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        text += chunk
    _, st = os.waitpid(pid, 0)
    text = text.decode(errors="replace")
    check(os.waitstatus_to_exitcode(st) == 1, "on a terminal: status %d" % st)
    check("cannot be optimized" in text and "{" not in text,
          "on a terminal the report is not the text summary: %r" % text)


# ---- the JSON schema, the subset docs/tools.schema.json uses -------------------

TYPES = {"integer": int, "number": (int, float), "string": str, "boolean": bool,
         "null": type(None), "object": dict}


def type_ok(value, t):
    if t in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, TYPES[t])


def validate(obj, schema, where):
    ok = True
    for key in schema.get("required", []):
        ok &= check(key in obj, "%s: no key %r" % (where, key))
    props = schema.get("properties")
    for key, value in (obj.items() if props is not None else ()):
        if not check(key in props, "%s: key %r is not in the schema" % (where, key)):
            ok = False
            continue
        p = props[key]
        t = p.get("type")
        if t is not None:
            ts = t if isinstance(t, list) else [t]
            ok &= check(any(type_ok(value, x) for x in ts),
                        "%s: %s=%r is not %s" % (where, key, value, t))
        if "enum" in p:
            ok &= check(value in p["enum"], "%s: %s=%r not in %s" % (where, key, value, p["enum"]))
        if "const" in p:
            ok &= check(value == p["const"], "%s: %s=%r, want %r" % (where, key, value, p["const"]))
        if "pattern" in p and isinstance(value, str):
            ok &= check(re.search(p["pattern"], value) is not None,
                        "%s: %s=%r does not match %s" % (where, key, value, p["pattern"]))
        if "minimum" in p and isinstance(value, (int, float)):
            ok &= check(value >= p["minimum"], "%s: %s=%r < %r" % (where, key, value, p["minimum"]))
        if "maximum" in p and isinstance(value, (int, float)):
            ok &= check(value <= p["maximum"], "%s: %s=%r > %r" % (where, key, value, p["maximum"]))
    for sub in schema.get("allOf", []):
        cond = sub["if"]["properties"]
        if all(k in obj and obj[k] == v.get("const") for k, v in cond.items()):
            validate(obj, sub["then"], where)
    return ok


def reports(out, where):
    lines = [l for l in out.splitlines() if l.strip()]
    objs = []
    for l in lines:
        check(l.startswith('{"pid":'), "%s: a line does not start with {\"pid\": %r" % (where, l))
        try:
            objs.append(json.loads(l))
        except ValueError as e:
            check(False, "%s: not JSON (%s): %r" % (where, e, l))
    return objs


def mode_json(agent, target, schema_path):
    with open(schema_path) as f:
        schema = json.load(f)
    # Keys of the first versions that scripts read: never renamed.
    for key in ("pid", "round", "ok", "error", "message", "pause_ms", "functions_moved",
                "c1_bytes", "call_sites_patched", "pointer_slots_patched", "bolt_ms", "samples",
                "samples_in_binary", "threads_stopped"):
        check(key in schema["properties"], "the schema lost the key %r" % key)
    t = subprocess.Popen([target], env=target_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        # A round that succeeds (needs perf_event and BOLT).
        rc, out, err = run([agent, "--json", "--pid", str(t.pid), "--profile", "1"], timeout=120)
        sys.stderr.write(err)
        if rc != 0 and ("EPERF" in out or "perf_event" in err):
            print("SKIP: no perf_event access", file=sys.stderr)
            return SKIP
        check(rc == 0, "a round failed: %d %s" % (rc, out))
        objs = reports(out, "round")
        check(len(objs) == 1, "want 1 report, got %d" % len(objs))
        for o in objs:
            validate(o, schema, "round")
            check(o.get("ok") is True and o.get("error_code") == 0 and o.get("stage") == "replace"
                  and o.get("functions_moved", 0) > 0 and o.get("pid") == t.pid,
                  "the round's report: %r" % o)
            check(os.path.realpath(o.get("binary") or "") == os.path.realpath(target),
                  "binary %r, want %s" % (o.get("binary"), target))
            ro = subprocess.run(["readelf", "-n", target], capture_output=True, text=True)
            m = re.search(r"Build ID: ([0-9a-f]+)", ro.stdout)
            if m:
                check(o.get("build_id") == m.group(1), "build_id %r, readelf says %s"
                      % (o.get("build_id"), m.group(1)))
            check(o.get("generation") == 1 and o.get("versions_mapped") == 1,
                  "first round: generation %r, %r versions mapped" % (o.get("generation"),
                                                                     o.get("versions_mapped")))
        # A second agent continues from what the first left: generation 2.
        rc, out, err = run([agent, "--json", "-q", "--pid", str(t.pid), "--profile", "1"],
                           timeout=120)
        check(rc == 0, "a second agent's round failed: %d %s" % (rc, out))
        for o in reports(out, "second agent"):
            validate(o, schema, "second agent")
            check(o.get("ok") is True and o.get("generation") == 2 and
                  o.get("versions_mapped", 9) <= 2,
                  "second agent: %r" % o)
        # A window that ends when the profile converges, its cost limited:
        # the report says why it ended and what sampling cost. Under a
        # limit the 4 s maximum counts time at the asked rate (at a
        # lowered rate up to 16 x as long in wall time).
        rc, out, err = run([agent, "--json", "-q", "--pid", str(t.pid), "--profile-max", "4",
                            "--max-overhead", "5"], timeout=180)
        check(rc == 0, "--profile-max: %d %s" % (rc, out))
        for o in reports(out, "profile-max"):
            validate(o, schema, "profile-max")
            hz = o.get("sample_hz_final", 0)
            check(o.get("ok") is True and o.get("profile_stop") in ("converged", "max") and
                  o.get("profile_ms", 99999) <= 16 * 4000 + 500 and 0 < hz <= 10000 and
                  "profile_distance_ppm" in o, "--profile-max: %r" % o)
        # --revert: back to the original code, one report.
        rc, out, err = run([agent, "--json", "-q", "--pid", str(t.pid), "--revert"], timeout=120)
        check(rc == 0, "--revert failed: %d %s" % (rc, out))
        for o in reports(out, "revert"):
            validate(o, schema, "revert")
            check(o.get("ok") is True and o.get("stage") == "revert" and
                  o.get("call_sites_patched", 0) + o.get("entries_patched", 0) > 0,
                  "--revert: %r" % o)
        # The benefit check with a ratio no code reaches: the round makes
        # the next generation, measures, goes back to the original code
        # and fails with OCOLOS_ENOGAIN (the work counter: CPU ticks).
        work = "awk '{print $14 + $15}' /proc/%d/stat" % t.pid
        rc, out, err = run([agent, "--json", "-q", "--pid", str(t.pid), "--profile", "1",
                            "--work-cmd", work, "--benefit-min", "50", "--benefit-pairs", "3",
                            "--benefit-window", "0.2"], timeout=180)
        check(rc == 1, "--benefit-min 50: exit %d, want 1: %s" % (rc, out))
        for o in reports(out, "benefit check"):
            validate(o, schema, "benefit check")
            check(o.get("ok") is False and o.get("error_code") == -23 and
                  o.get("stage") == "check" and o.get("benefit_pairs") == 3 and
                  0 < o.get("benefit_ratio", 0) < 50 and "OCOLOS_ENOGAIN" in o.get("error", ""),
                  "benefit check: %r" % o)
        # A round that fails (no BOLT): found before anything is done.
        rc, out, err = run([agent, "--json", "-q", "--pid", str(t.pid), "--bolt",
                            "/nonexistent/llvm-bolt"])
        check(rc == 1, "no BOLT: exit %d, want 1" % rc)
        for o in reports(out, "no BOLT"):
            validate(o, schema, "no BOLT")
            check(o.get("ok") is False and o.get("error_code") == -10 and
                  "OCOLOS_ENOBOLT" in o.get("error", "") and o.get("stage") == "profile" and
                  "/nonexistent/llvm-bolt" in o.get("message", ""), "no BOLT: %r" % o)
        rc, out, err = run([agent, "--text", "-q", "--pid", str(t.pid), "--bolt",
                            "/nonexistent/llvm-bolt"])
        check(rc == 1 and "failed in profile" in out and "OCOLOS_ENOBOLT" in out,
              "no BOLT, --text: %d %r" % (rc, out))
    finally:
        t.kill()
        t.wait()
    # A process that cannot be opened: round 0, stage open.
    rc, out, err = run([agent, "--json", "-q", "--pid", NO_PID])
    check(rc == 1, "no such pid: exit %d" % rc)
    for o in reports(out, "open"):
        validate(o, schema, "open")
        check(o.get("round") == 0 and o.get("stage") == "open" and o.get("error_code") == -19,
              "open failure: %r" % o)
    # A kernel thread (issue 13: it was reported as a kernel forbidding
    # /proc/PID/mem writes). None is visible in a PID namespace: skipped.
    kt = kernel_thread()
    if kt:
        rc, out, err = run([agent, "--json", "-q", "--pid", str(kt)])
        check(rc == 1, "kernel thread %d: exit %d" % (kt, rc))
        for o in reports(out, "kernel thread"):
            validate(o, schema, "kernel thread")
            check(o.get("error_code") == -1 and "kernel thread" in o.get("message", "") and
                  "forbids" not in o.get("message", ""), "kernel thread: %r" % o)
    return 0


def mode_man(src, agent, supervise):
    groff = shutil.which("groff")
    if not groff:
        print("SKIP: no groff (apt-get install groff-base)", file=sys.stderr)
        return SKIP
    pages = {name: os.path.join(src, "docs", "man", name)
             for name in ("ocolos-agent.1", "ocolos-supervise.1", "ocolos-bam.1", "libocolos.3")}
    for name, path in pages.items():
        # -ww: every warning; also at the 80 columns man(1) renders in.
        for width in ([], ["-rLL=78n"]):
            p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"] + width + [path],
                               capture_output=True, text=True)
            check(p.returncode == 0 and p.stderr == "",
                  "groff %s %s: %d %r" % (name, width, p.returncode, p.stderr))
        if shutil.which("man"):
            env = dict(os.environ, MANWIDTH="80")
            p = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                               env=env)
            check(p.returncode == 0 and p.stderr == "" and name.split(".")[0].upper() in p.stdout,
                  "man -l %s: %d %r" % (name, p.returncode, p.stderr))
    bam = os.path.join(os.path.dirname(agent), "ocolos-bam")
    for tool, name in ((agent, "ocolos-agent.1"), (supervise, "ocolos-supervise.1"),
                       (bam, "ocolos-bam.1")):
        rc, out, err = run([tool, "--help"])
        with open(pages[name]) as f:
            man = f.read().replace("\\-", "-")
        for opt in long_options(out):
            check(opt in man, "%s documents no %s (it is in --help)" % (name, opt))
        for status in re.findall(r"^  (\d+) ", out, re.M):
            check(status in man, "%s documents no exit status %s" % (name, status))
    with open(pages["libocolos.3"]) as f:
        man3 = f.read()
    with open(os.path.join(src, "lib", "libocolos.map")) as f:
        mapfile = f.read()
    node = mapfile[re.search(r"^OCOLOS_0\.2 \{", mapfile, re.M).start():]
    for fn in re.findall(r"^\s+(ocolos_\w+);", node, re.M):
        check(fn in man3, "libocolos(3) does not document %s" % fn)
    for code in re.findall(r"(OCOLOS_E[A-Z]+) =", open(os.path.join(
            src, "include", "ocolos", "ocolos.h")).read()):
        check(code in man3, "libocolos(3) does not list %s" % code)
    return 0


def mode_install(cmake, build):
    with tempfile.TemporaryDirectory() as prefix:
        p = subprocess.run([cmake, "--install", build, "--prefix", prefix], capture_output=True,
                           text=True)
        check(p.returncode == 0, "cmake --install: %r" % p.stderr)
        for rel in ("bin/ocolos-agent", "bin/ocolos-supervise", "bin/ocolos-bam",
                    "share/man/man1/ocolos-agent.1", "share/man/man1/ocolos-supervise.1",
                    "share/man/man1/ocolos-bam.1", "share/man/man3/libocolos.3"):
            check(os.path.isfile(os.path.join(prefix, rel)), "not installed: %s" % rel)
        for tool in ("ocolos-agent", "ocolos-supervise"):
            # No LD_LIBRARY_PATH: the installed tools find the installed library.
            rc, out, err = run([os.path.join(prefix, "bin", tool), "--version"])
            check(rc == 0 and out.startswith(tool), "installed %s --version: %d %r %r"
                  % (tool, rc, out, err))
    return 0


def gzip_with_comment(data, comment):
    """A gzip member with FCOMMENT set (Python's gzip module writes none)."""
    import struct
    import zlib
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = co.compress(data) + co.flush()
    return (b"\x1f\x8b\x08\x10\0\0\0\0\x00\x03" + comment.encode() + b"\0" + body +
            struct.pack("<II", zlib.crc32(data) & 0xffffffff, len(data) & 0xffffffff))


def gzip_comment(blob):
    """The FCOMMENT of a gzip member written without FEXTRA/FNAME."""
    if len(blob) < 10 or blob[:2] != b"\x1f\x8b" or not blob[3] & 0x10:
        return None
    end = blob.index(b"\0", 10)
    return blob[10:end].decode()


def mode_profiles(agent, target):
    import gzip
    import tempfile
    work = tempfile.mkdtemp(prefix="ocolos-profiles.")
    exported = os.path.join(work, "one.prof.gz")
    procs = []
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([target], env=target_env(), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL))
        time.sleep(1)
        a, b = procs
        rc, out, err = run([agent, "--json", "-q", "--pid", str(a.pid), "--profile", "1",
                            "--export-profile", exported], timeout=120)
        if rc != 0 and ("EPERF" in out or "perf_event" in err):
            print("SKIP: no perf_event access", file=sys.stderr)
            return SKIP
        check(rc == 0 and os.path.exists(exported), "export: %d %s" % (rc, out))
        blob = open(exported, "rb").read()
        comment = gzip_comment(blob) or ""
        ro = subprocess.run(["readelf", "-n", target], capture_output=True, text=True)
        m = re.search(r"Build ID: ([0-9a-f]+)", ro.stdout)
        check(m and comment.startswith("ocolos-profile 1 build-id=%s " % m.group(1)),
              "header %r, build-id %s" % (comment, m and m.group(1)))
        text = gzip.decompress(blob).decode()
        lines = text.splitlines()
        check(lines and all(re.match(r"^[BF] \S+ \S+ \d+( \d+)?$", l) for l in lines),
              "not BOLT's pre-aggregated branch records: %r" % lines[:3])
        check("records=%d" % len(lines) in comment, "records in %r, %d lines"
              % (comment, len(lines)))
        fdata_pipeline(target, text, work)
        # Another process of the same build: no sampling, the same profile.
        rc, out, err = run([agent, "--json", "-q", "--pid", str(b.pid), "--profile-from",
                            exported, "--profile-from", exported], timeout=120)
        check(rc == 0, "import (two files merged): %d %s" % (rc, out))
        for o in reports(out, "import"):
            check(o.get("ok") is True and o.get("sampler") == "imported" and
                  o.get("samples_in_binary") == 2 * len(lines) and
                  o.get("functions_moved", 0) > 0, "import: %r" % o)
        bad = {
            "truncated": (blob[:len(blob) // 2], "gzip"),
            "another build": (gzip_with_comment(text.encode(), "ocolos-profile 1 build-id="
                                                "00112233 records=%d" % len(lines)),
                              "another build"),
            "no header": (gzip.compress(text.encode()), "header"),
            "malformed": (gzip_with_comment(b"B 401000 zz 1 0\n", comment), "line 1"),
            "absurd count": (gzip_with_comment(b"B 401000 401010 99999999999999999 0\n",
                                               comment), "plausible"),
        }
        for name, (data, word) in sorted(bad.items()):
            path = os.path.join(work, name.replace(" ", "_") + ".gz")
            with open(path, "wb") as f:
                f.write(data)
            rc, out, err = run([agent, "--json", "-q", "--pid", str(b.pid), "--profile-from",
                                path], timeout=60)
            check(rc == 1, "%s: exit %d, want 1" % (name, rc))
            for o in reports(out, name):
                check(o.get("error_code") == -24 and o.get("stage") == "profile" and
                      word in o.get("message", "") and path in o.get("message", ""),
                      "%s: %r" % (name, o))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def fdata_pipeline(target, text, work):
    """BOLT's own tools on an exported profile (docs/tools.md, "Profiles
    with BOLT's tools"): llvm-bolt --aggregate-only turns the pre-aggregated
    records into fdata, merge-fdata merges two of them (every count
    doubles), and llvm-bolt optimizes the binary from the merged file."""
    bindir = "/usr/lib/llvm-22/bin"
    bolt, merge = os.path.join(bindir, "llvm-bolt"), os.path.join(bindir, "merge-fdata")
    pa, fd = os.path.join(work, "one.pa"), os.path.join(work, "one.fdata")
    with open(pa, "w") as f:
        f.write(text)
    r = subprocess.run([bolt, target, "--pa", "-p", pa, "--aggregate-only", "-o", fd],
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 0 and os.path.exists(fd), "llvm-bolt --aggregate-only: %d %s"
          % (r.returncode, r.stderr[-500:]))
    rows = [l.split() for l in open(fd).read().splitlines()]
    # "<is_sym> <name> <offset> <is_sym> <name> <offset> <mispreds> <count>"
    # (is_sym 0: "[unknown]", a source outside any function)
    check(rows and all(len(x) == 8 and x[0] in "01" and x[3] in "01" for x in rows),
          "not fdata branch records: %r" % rows[:3])
    r = subprocess.run([merge, fd, fd], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "merge-fdata: %d %s" % (r.returncode, r.stderr[-500:]))
    once = sum(int(x[7]) for x in rows)
    merged = [l.split() for l in r.stdout.splitlines()]
    twice = sum(int(x[7]) for x in merged if len(x) == 8 and x[0] in "01")
    check(once > 0 and twice == 2 * once, "merge-fdata of the file with itself: %d counts, "
          "the file %d" % (twice, once))
    mf = os.path.join(work, "merged.fdata")
    with open(mf, "w") as f:
        f.write(r.stdout)
    out = os.path.join(work, "merged.bolt")
    r = subprocess.run([bolt, target, "-o", out, "-data", mf, "--reorder-blocks=ext-tsp",
                        "--reorder-functions=cdsort"], capture_output=True, text=True,
                       timeout=300)
    m = re.search(r"(\d+) out of \d+ functions in the binary .* have non-empty execution "
                  "profile", r.stdout + r.stderr)
    check(r.returncode == 0 and m and int(m.group(1)) > 0,
          "llvm-bolt -data merged: %d %s" % (r.returncode, (r.stdout + r.stderr)[-500:]))


def load_start(pid, exe):
    """The first mapping of `exe` in process `pid` (its load bias + its
    lowest p_vaddr, page-aligned down)."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            if line.rstrip().endswith(exe):
                return int(line.split("-")[0], 16)
    return None


def artifact_parts(blob):
    """(header fields, digest input, recorded digest) of an artifact."""
    end = blob.index(b"\n\n")
    head = blob[:end + 1].decode()
    dig = head.index("\nsha256=") + 1
    fields = dict(l.split("=", 1) for l in head.splitlines()[1:])
    return fields, blob[:dig] + blob[end + 2:], fields.get("sha256")


def start_target(target, *args):
    return subprocess.Popen([target] + list(args), env=target_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def stop_target(p, what):
    """SIGTERM, then its output: every lap checked ("ok"), exit 0."""
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    check(p.returncode == 0 and out.rstrip().endswith("ok"),
          "%s: exit %s, output %r" % (what, p.returncode, out))
    return out


def artifact_round(agent, target, work, name):
    """An --artifact-out round on one process, --artifact-in on a second
    one of the same binary; returns the artifact's path and bytes."""
    import hashlib
    art = os.path.join(work, name)
    a, b = start_target(target), start_target(target)
    try:
        time.sleep(1)
        rc, out, err = run([agent, "--json", "-q", "--pid", str(a.pid), "--profile", "1",
                            "--artifact-out", art], timeout=180)
        if rc != 0 and ("EPERF" in out or "perf_event" in err):
            return None, None
        ra = reports(out, "artifact-out %s" % name)
        check(rc == 0 and os.path.exists(art) and ra and ra[0].get("ok") is True,
              "artifact-out %s: %d %s %s" % (name, rc, out, err))
        blob = open(art, "rb").read()
        fields, signed, digest = artifact_parts(blob)
        ro = subprocess.run(["readelf", "-n", target], capture_output=True, text=True)
        m = re.search(r"Build ID: ([0-9a-f]+)", ro.stdout)
        check(blob.startswith(b"ocolos-artifact 1\n") and m and
              fields.get("build-id") == m.group(1), "header of %s: %r" % (name, fields))
        check(digest == hashlib.sha256(signed).hexdigest(),
              "%s: recorded digest %s, sha256 of the content %s"
              % (name, digest, hashlib.sha256(signed).hexdigest()))
        check("--custom-allocation-vma=%s" % fields.get("vma") in fields.get("bolt-args", "")
              and "LLVM version" in fields.get("bolt", ""), "%s: BOLT record %r" % (name, fields))
        # The second process: no sampling, no BOLT (a BOLT that does not
        # exist would fail the round), its code at the same offset.
        rc, out, err = run([agent, "--json", "-q", "--pid", str(b.pid), "--artifact-in", art,
                            "--bolt", "/nonexistent/llvm-bolt"], timeout=120)
        rb = reports(out, "artifact-in %s" % name)
        check(rc == 0 and rb and rb[0].get("ok") is True, "artifact-in %s: %d %s %s"
              % (name, rc, out, err))
        if ra and rb and rb[0].get("ok"):
            oa, ob = ra[0], rb[0]
            check(ob.get("sampler") == "artifact" and ob.get("bolt_ms") == 0 and
                  ob.get("samples") == 0 and ob.get("functions_moved") == oa.get("functions_moved")
                  and ob.get("call_sites_patched") == oa.get("call_sites_patched")
                  and ob.get("entries_patched", 0) > 0,
                  "artifact-in %s: %r (out: %r)" % (name, ob, oa))
            offa = int(oa["c1_addr"], 16) - load_start(a.pid, target)
            offb = int(ob["c1_addr"], 16) - load_start(b.pid, target)
            check(offa == offb, "%s: C1 at image + 0x%x in the first process, + 0x%x in the "
                  "second" % (name, offa, offb))
        # First round only: a process with optimized code mapped refuses it.
        rc, out, err = run([agent, "--json", "-q", "--pid", str(b.pid), "--artifact-in", art],
                           timeout=60)
        for o in reports(out, "second artifact-in %s" % name):
            check(rc == 1 and o.get("error_code") == -7 and "first round" in o.get("message", ""),
                  "second artifact-in %s: %r" % (name, o))
    finally:
        outs = [stop_target(p, "%s %s" % (name, w)) for p, w in ((a, "artifact-out"),
                                                                  (b, "artifact-in"))]
    check(outs[0] == outs[1], "%s: the two processes printed different results: %r"
          % (name, outs))
    return art, blob


def mode_artifacts(agent, pie, nopie):
    work = tempfile.mkdtemp(prefix="ocolos-artifacts.")
    os.chmod(work, 0o700)
    procs = []
    try:
        art, blob = artifact_round(agent, pie, work, "pie.art")
        if art is None:
            print("SKIP: no perf_event access", file=sys.stderr)
            return SKIP
        nopie_art, _ = artifact_round(agent, nopie, work, "nopie.art")
        fields, _, _ = artifact_parts(blob)
        c = start_target(nopie)
        procs.append(c)
        end = blob.index(b"\n\n") + 2
        flipped = bytearray(blob)
        flipped[end + (len(blob) - end) // 2] ^= 0x01
        header = blob.replace(b"vma=" + fields["vma"].encode(), b"vma=0x%x" % (int(fields["vma"],
                                                                                16) + 4096), 1)
        bad = {
            "another build": (blob, "another build"),
            "flipped byte": (bytes(flipped), "digest"),
            "header altered": (header, "digest"),
            "truncated": (blob[:len(blob) - 100], "truncated"),
            "not an artifact": (b"hello\n", "not an artifact"),
        }
        time.sleep(0.5)
        for name, (data, word) in sorted(bad.items()):
            path = os.path.join(work, name.replace(" ", "_"))
            with open(path, "wb") as f:
                f.write(data)
            rc, out, err = run([agent, "--json", "-q", "--pid", str(c.pid), "--artifact-in",
                                path], timeout=60)
            check(rc == 1, "%s: exit %d, want 1" % (name, rc))
            for o in reports(out, name):
                check(o.get("error_code") == -25 and o.get("stage") == "profile" and
                      word in o.get("message", "") and path in o.get("message", ""),
                      "%s: %r" % (name, o))
        # Code from a file others could have written: refused unread.
        for name, chmod in (("file o+w", lambda: os.chmod(art, 0o646)),
                            ("file g+w", lambda: os.chmod(art, 0o664)),
                            ("directory o+w", lambda: os.chmod(work, 0o707))):
            chmod()
            rc, out, err = run([agent, "--json", "-q", "--pid", str(c.pid), "--artifact-in", art],
                               timeout=60)
            os.chmod(art, 0o644)
            os.chmod(work, 0o700)
            for o in reports(out, name):
                check(rc == 1 and o.get("error_code") == -27 and "writable" in o.get("message", ""),
                      "%s: %r" % (name, o))
        # After all that, the right artifact: the first round applies it, the
        # second is an ordinary round on top of it (the next generation).
        rc, out, err = run([agent, "--json", "-q", "--pid", str(c.pid), "--artifact-in",
                            nopie_art, "--rounds", "2", "--profile", "1"], timeout=180)
        objs = reports(out, "artifact-in, then a local round")
        check(rc == 0 and len(objs) == 2, "artifact-in --rounds 2: %d %s %s" % (rc, out, err))
        if len(objs) == 2:
            check(objs[0].get("ok") is True and objs[0].get("sampler") == "artifact" and
                  objs[0].get("generation") == 1, "round 1 of 2: %r" % objs[0])
            check(objs[1].get("ok") is True and objs[1].get("sampler") != "artifact" and
                  objs[1].get("bolt_ms", 0) > 0 and objs[1].get("generation") == 2,
                  "round 2 of 2: %r" % objs[1])
        stop_target(c, "the process given bad artifacts")
        procs.remove(c)
        # Its range taken: OCOLOS_ETAKEN, then the agent's own local round.
        d = start_target(pie, "--block-at", fields["vma"][2:])
        procs.append(d)
        # Until it has blocked the range (a loaded machine may take a while).
        for _ in range(200):
            start = load_start(d.pid, pie)
            if start and subprocess.run(["grep", "-q", "^%x-" % (start + int(fields["vma"], 16)),
                                         "/proc/%d/maps" % d.pid]).returncode == 0:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        rc, out, err = run([agent, "--json", "--pid", str(d.pid), "--profile", "1",
                            "--artifact-in", art], timeout=180)
        check("OCOLOS_ETAKEN" in err and "running a local round instead" in err and
              fields["vma"][2:] in err, "taken range: no fallback message: %r" % err)
        for o in reports(out, "taken range"):
            check(rc == 0 and o.get("ok") is True and o.get("sampler") != "artifact" and
                  o.get("bolt_ms", 0) > 0, "taken range, local round: %r" % o)
        stop_target(d, "the process whose range was taken")
        procs.remove(d)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv):
    modes = {"args": (mode_args, 2), "json": (mode_json, 3), "man": (mode_man, 3),
             "install": (mode_install, 2), "profiles": (mode_profiles, 2),
             "artifacts": (mode_artifacts, 3)}
    if len(argv) < 2 or argv[1] not in modes or len(argv) != 2 + modes[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 1
    rc = modes[argv[1]][0](*argv[2:])
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    if rc == 0:
        print("ok %s" % argv[1])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Every bad input of ocolos-agent --pid, one table (issue 13 item 3).

  bad_inputs.py AGENT PIE NOPIE NORELOCS IDLE FAKE_FAIL FAKE_HANG BOLT STRIP

AGENT the real ocolos-agent; PIE, NOPIE, NORELOCS the pid targets
(tests/pid/pid_target.c built three ways); IDLE tests/tools/idle_target.c;
FAKE_FAIL, FAKE_HANG the stand-ins for llvm-bolt (tests/fake-bolt-*.sh.in);
BOLT the real llvm-bolt (probes of the fakes go there); STRIP strip(1).

Each row starts a real process (or names one), runs the agent on it with
--json, and checks the report's "error_code" (numeric, include/ocolos/
ocolos.h), that its "message" contains a keyword (what a user needs: the
cause or the fix), and the exit status 1. Where the target is a live
program it must come out of the failed round as it went in: alive, not
traced, its code bytes (the r-x mappings of its binary, read through
/proc/PID/mem) unchanged, no anonymous executable mapping, and then its
output after SIGTERM equal to an untouched run's (pid_target checks its own
laps; idle_target must still answer SIGUSR1).

Prints the table (row, expected, got) on stdout. Exit 0 all rows as
expected, 1 a row differs, 77 nothing can run (no BOLT, no perf_event
access). Rows that cannot run here (another user's process when not root;
no kernel thread visible) are printed as skipped with the reason. In a
sanitizer build the agent gets the ASan runtime (OCOLOS_TEST_PRELOAD), the
targets never do.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# toolenv.py lies beside this script (sys.path[0]); no __pycache__ left there
sys.dont_write_bytecode = True
from toolenv import kernel_thread, target_env, tool_env  # noqa: E402

SKIP = 77

# include/ocolos/ocolos.h
CODES = {
    0: "OK", -1: "EINVAL", -2: "ENOMEM", -3: "EIO", -4: "EELF", -5: "ENORELOCS",
    -6: "ENOSYMS", -7: "ENOTSUP", -8: "EPERF", -9: "ENOPROFILE", -10: "ENOBOLT",
    -11: "EBOLT", -12: "ETIMEDOUT", -13: "ERESERVE", -14: "EBUSY", -15: "ESTOP",
    -16: "EPATCH", -17: "ENOTHOT", -18: "EATTACH", -19: "ENOPROC", -20: "ESTALE",
    -21: "ECANCELED", -22: "ESTATE", -23: "ENOGAIN", -24: "EBADPROFILE",
}
NAMES = {v: k for k, v in CODES.items()}

# BOLT and STRIP may be empty (not found at configure time).
(AGENT, PIE, NOPIE, NORELOCS, IDLE, FAKE_FAIL, FAKE_HANG, BOLT, STRIP) = (sys.argv[1:] + [""] * 9)[:9]
tmp = tempfile.mkdtemp(prefix="ocolos-badin.")
os.chmod(tmp, 0o755)


def agent(pid, *extra, prefix=(), timeout=40):
    """Run the agent; return (exit status, the report or None, stderr)."""
    argv = list(prefix) + [AGENT, "--json", "--pid", str(pid), "--tmp-dir", tmp] + list(extra)
    p = subprocess.run(argv, env=tool_env(), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    rep = None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                rep = json.loads(line)
            except ValueError:
                pass
    return p.returncode, rep, p.stderr


class Target:
    """A pid test target (or idle_target) with stdout in a file."""

    def __init__(self, path, *args, reap_thread=False):
        self.out = os.path.join(tmp, "out.%d" % time.monotonic_ns())
        with open(self.out, "w") as f:
            self.p = subprocess.Popen([path] + list(args), env=target_env(),
                                      stdin=subprocess.DEVNULL, stdout=f,
                                      stderr=subprocess.DEVNULL)
        self.pid = self.p.pid
        self.status = None
        # A parent that reaps at once (as an agent's target's parent does):
        # /proc/PID goes away when it exits.
        self.reaper = None
        if reap_thread:
            self.reaper = threading.Thread(target=self._reap, daemon=True)
            self.reaper.start()

    def _reap(self):
        self.status = self.p.wait()

    def alive(self):
        return self.status is None and self.p.poll() is None

    def stop(self, timeout=20):
        if self.reaper:
            self.reaper.join(timeout)
            return self.status
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()

    def output(self):
        with open(self.out) as f:
            return f.read()


def wait_for(cond, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def exe_path(pid):
    p = os.readlink("/proc/%d/exe" % pid)
    return p[:-len(" (deleted)")] if p.endswith(" (deleted)") else p


def code_state(pid):
    """(hash of the binary's r-x bytes, anonymous executable mappings)."""
    exe = exe_path(pid)
    h = hashlib.sha256()
    anon_x = 0
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split(None, 5)
            path = f[5].strip() if len(f) > 5 else ""
            if "x" not in f[1]:
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if path.endswith(" (deleted)"):
                path = path[:-len(" (deleted)")]
            if path == exe:
                mem.seek(lo)
                h.update(mem.read(hi - lo))
            elif not path:
                anon_x += 1
    return h.hexdigest(), anon_x


def tracer(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return -1


def reference(path):
    """The output of an untouched run (timing-free: see pid_target.c)."""
    t = Target(path, "--exit-after", "100")
    t.p.wait(30)
    return t.output()


# ---- the rows ---------------------------------------------------------------
# Each returns (rc, report, stderr, problems): problems lists what was
# wrong with the target afterwards. A row may raise Skip(reason).


class Skip(Exception):
    pass


def after(t, before, ref, problems):
    """The target as it went in: alive, untraced, same code, same output."""
    if not t.alive():
        problems.append("target died")
    else:
        if tracer(t.pid):
            problems.append("target still traced by %d" % tracer(t.pid))
        h, anon = code_state(t.pid)
        if h != before[0]:
            problems.append("its code bytes changed")
        if anon != before[1]:
            problems.append("%d anonymous executable mapping(s) left" % (anon - before[1]))
    st = t.stop()
    if st != 0:
        problems.append("target exit status %s" % st)
    out = t.output()
    if ref is not None and out != ref:
        problems.append("output differs: %r" % out[:200])
    return problems


def live_row(path, extra, ref, target_args=(), setup=None, warm=0.3):
    t = Target(path, *target_args)
    try:
        time.sleep(warm)
        if setup:
            setup(t)
        before = code_state(t.pid)
        rc, rep, err = agent(t.pid, *extra)
        return rc, rep, err, after(t, before, ref, [])
    finally:
        if t.p.poll() is None:
            t.p.kill()
            t.p.wait()


def row_nonexistent():
    p = subprocess.Popen(["true"])
    p.wait()  # reaped: the pid is free (and stays so for the moment)
    rc, rep, err = agent(p.pid)
    return rc, rep, err, []


def row_kernel_thread():
    pid = kernel_thread()
    if pid is None:
        raise Skip("no kernel thread visible in this pid namespace")
    rc, rep, err = agent(pid)
    return rc, rep, err, []


def row_zombie():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        def is_zombie():
            with open("/proc/%d/stat" % pid) as f:
                s = f.read()
            return s[s.rindex(")") + 2] == "Z"
        if not wait_for(is_zombie, 5):
            return None, None, "", ["the child did not become a zombie"]
        rc, rep, err = agent(pid)
        problems = []
        if not is_zombie():
            problems.append("the zombie changed state")
        return rc, rep, err, problems
    finally:
        _, st = os.waitpid(pid, 0)


def row_other_user(ref):
    if os.geteuid() != 0:
        raise Skip("not root: cannot run the agent as another user")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise Skip("no setpriv(1)")
    t = Target(PIE)
    try:
        time.sleep(0.3)
        before = code_state(t.pid)
        # setpriv keeps the environment (LD_PRELOAD of a sanitizer build).
        rc, rep, err = agent(t.pid, prefix=(setpriv, "--reuid=nobody", "--regid=nogroup",
                                            "--clear-groups"))
        return rc, rep, err, after(t, before, ref, [])
    finally:
        if t.p.poll() is None:
            t.p.kill()
            t.p.wait()


def row_stripped(ref):
    if not STRIP:
        raise Skip("no strip(1) (CMAKE_STRIP)")
    path = os.path.join(tmp, "stripped")
    subprocess.run([STRIP, "--strip-all", "-o", path, PIE], check=True)
    return live_row(path, [], ref)


def row_replaced(ref):
    # A running executable cannot be rewritten (ETXTBSY): "replaced" is
    # deleted and recreated under the same name, as package upgrades do.
    # /proc/PID/exe still opens the running file; --binary names the new one.
    path = os.path.join(tmp, "prog")
    shutil.copy(PIE, path)

    def replace(t):
        os.unlink(path)
        shutil.copy(NOPIE, path)
    return live_row(path, ["--binary", path], ref, setup=replace)


def row_idle():
    t = Target(IDLE)
    try:
        if not wait_for(lambda: "ready" in t.output(), 5):
            return None, None, "", ["idle_target did not start"]
        before = code_state(t.pid)
        rc, rep, err = agent(t.pid, "--profile", "0.5")
        problems = []
        if t.alive():
            t.p.send_signal(signal.SIGUSR1)
            if not wait_for(lambda: "pong 1" in t.output(), 5):
                problems.append("it no longer answers SIGUSR1")
        return rc, rep, err, after(t, before, "ready\npong 1\nbye 1\n", problems)
    finally:
        if t.p.poll() is None:
            t.p.kill()
            t.p.wait()


def row_exiting(ref):
    # Exits 1.5 s into a 4 s window; its parent (a thread here) reaps it at
    # once, so /proc/PID disappears mid-round.
    t = Target(PIE, "--exit-after", "1500", reap_thread=True)
    time.sleep(0.3)
    rc, rep, err = agent(t.pid, "--profile", "4")
    problems = []
    st = t.stop()
    if st != 0:
        problems.append("target exit status %s" % st)
    if t.output() != ref:
        problems.append("output differs: %r" % t.output()[:200])
    return rc, rep, err, problems


def crash_bolt():
    """A llvm-bolt that dies of SIGSEGV on the optimizing run."""
    path = os.path.join(tmp, "fake-bolt-crash")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nfor a in \"$@\"; do case $a in -o|-o=*) kill -SEGV $$ ;; esac; done\n"
                "exec '%s' \"$@\"\n" % BOLT)
    os.chmod(path, 0o755)
    return path


def main():
    if not all(os.access(p, os.X_OK) for p in (AGENT, PIE, NOPIE, NORELOCS, IDLE)):
        print("usage: bad_inputs.py AGENT PIE NOPIE NORELOCS IDLE FAKE_FAIL FAKE_HANG BOLT STRIP",
              file=sys.stderr)
        return 1
    if not BOLT or not os.access(BOLT, os.X_OK):
        print("SKIP: no llvm-bolt (%s)" % BOLT, file=sys.stderr)
        return SKIP
    ref = reference(PIE)
    if not ref.endswith("ok\n"):
        print("FAIL: pid_target's reference run: %r" % ref, file=sys.stderr)
        return 1
    # (name, expected code, keyword of the message, run)
    rows = [
        ("nonexistent pid", -19, "does not exist", row_nonexistent),
        ("kernel thread", -1, "kernel thread", row_kernel_thread),
        ("zombie", -19, "zombie", row_zombie),
        ("other user's process", -18, "ptrace", lambda: row_other_user(ref)),
        ("stripped binary", -6, "strip", lambda: row_stripped(ref)),
        ("no relocations", -5, "--emit-relocs", lambda: live_row(NORELOCS, [], ref)),
        ("no BOLT", -10, "--bolt",
         lambda: live_row(PIE, ["--bolt", "/nonexistent/llvm-bolt"], ref)),
        ("BOLT failing", -11, "simulated BOLT failure",
         lambda: live_row(PIE, ["--bolt", FAKE_FAIL, "--profile", "0.5"], ref)),
        ("BOLT crashing", -11, "signal 11",
         lambda: live_row(PIE, ["--bolt", crash_bolt(), "--profile", "0.5"], ref)),
        ("BOLT hanging", -12, "--bolt-timeout",
         lambda: live_row(PIE, ["--bolt", FAKE_HANG, "--bolt-timeout", "1", "--profile", "0.5"],
                          ref)),
        ("empty profile", -9, "no sample at all", row_idle),
        ("binary replaced", -20, "replaced", lambda: row_replaced(ref)),
        ("no room to reserve", -13, "no free",
         lambda: live_row(PIE, ["--profile", "0.5"], ref, target_args=("--block-reserve",),
                          warm=0.5)),
        ("target exiting", -19, "exited", lambda: row_exiting(ref)),
    ]
    only = os.environ.get("BAD_INPUTS_ONLY")
    results = []
    bad = 0
    t_all = time.monotonic()
    for name, want, keyword, fn in rows:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            rc, rep, err, problems = fn()
        except Skip as e:
            results.append((name, "%d %s" % (want, CODES[want]), "-", keyword,
                            "skipped: %s" % e))
            print("%-22s skipped: %s" % (name, e), file=sys.stderr)
            continue
        except subprocess.TimeoutExpired:
            rc, rep, err, problems = None, None, "", ["the agent did not finish"]
        got = rep.get("error_code") if rep else None
        msg = rep.get("message", "") if rep else ""
        if got == -8 and want != -8:
            print("SKIP: no perf_event access: %s" % msg, file=sys.stderr)
            return SKIP
        if got != want:
            problems.insert(0, "error_code %s, want %d" % (got, want))
        has_kw = keyword.lower() in msg.lower()
        if not has_kw:
            problems.append("message lacks %r" % keyword)
        if rc != 1:
            problems.append("agent exit status %s, want 1" % rc)
        verdict = "ok" if not problems else "FAIL"
        bad += bool(problems)
        results.append((name, "%d %s" % (want, CODES[want]),
                        "%s %s" % (got, CODES.get(got, "?")),
                        keyword + ("" if has_kw else " (missing)"), verdict))
        print("%-22s %.1f s  %s" % (name, time.monotonic() - t0, msg), file=sys.stderr)
        for p in problems:
            print("  FAIL: %s: %s" % (name, p), file=sys.stderr)
        if problems and err:
            sys.stderr.write("  agent stderr:\n" + "".join("    " + l + "\n"
                                                          for l in err.splitlines()[-15:]))
    fmt = "%-22s %-14s %-14s %-26s %s"
    print(fmt % ("row", "expected", "got", "message keyword", "verdict"))
    for r in results:
        print(fmt % r)
    print("%d row(s) failed, %.1f s" % (bad, time.monotonic() - t_all))
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

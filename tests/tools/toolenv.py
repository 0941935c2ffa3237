"""What cli.py and bad_inputs.py share: the environments of the processes
they start, and a kernel thread to point the agent at.

In a sanitizer build the tools link the instrumented library and need the
ASan runtime preloaded (OCOLOS_TEST_PRELOAD); a target must never get it,
or it would no longer be the plain program the agent is tested on.
"""
import os


def tool_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if os.environ.get("OCOLOS_TEST_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["OCOLOS_TEST_PRELOAD"]
    return env


def target_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def kernel_thread():
    """The pid of a kernel thread (PF_KTHREAD in /proc/PID/stat), or None."""
    for d in sorted(os.listdir("/proc"), key=lambda x: (len(x), x)):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 6 and int(fields[6]) & 0x00200000:
            return int(d)
    return None

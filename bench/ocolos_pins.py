#!/usr/bin/env python3
"""Which words of a process point into its older optimized code versions.

What this file is responsible for: a diagnostic for versions that stay
mapped (`versions_mapped` > 1 after a round): it reads /proc/PID/maps for
the code versions (`/memfd:ocolos-cN`), takes every one but the newest, and
scans each readable and writable mapping of the process (through
/proc/PID/mem; root or ptrace rights needed) for 8-byte words inside them,
printing the address, the mapping, and the words around each hit in the
heap or another data mapping (a malloc'ed structure shows its size field and
neighbours, each named by the mapping it points into). It changes
nothing in the process and stops no thread (so a moving stack may be seen
half-old). Not responsible for deciding anything: the library's own rule is
in docs/guide.md.

usage: bench/ocolos_pins.py PID
"""
import re
import struct
import sys

MAP_RE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)")


def describe(w, maps, old):
    """A neighbour word, and where it points when it points into a mapping
    (the heap structure around a hit is named by what its words point at)."""
    for k, (lo, hi) in old.items():
        if lo <= w < hi:
            return "%#x(C%d+%#x)" % (w, k, w - lo)
    for a, b, perm, name in maps:
        if a <= w < b and name:
            return "%#x(%s+%#x)" % (w, name.split("/")[-1], w - a)
    return "%#x" % w


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("usage: ")[1])
    pid = int(sys.argv[1])
    maps = []
    for line in open("/proc/%d/maps" % pid).read().splitlines():
        m = MAP_RE.match(line)
        maps.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4)))
    vers = {}
    for a, b, perm, name in maps:
        g = re.search(r"ocolos-c(\d+) ", name + " ")
        if g and "x" in perm:
            vers[int(g.group(1))] = (a, b)
    if len(vers) < 2:
        print("ocolos_pins: %d code version(s) mapped; nothing older to explain" % len(vers))
        return 0
    newest = max(vers)
    old = {k: v for k, v in vers.items() if k != newest}
    print("newest C%d; older: %s" % (newest, ", ".join(
        "C%d %#x-%#x" % (k, a, b) for k, (a, b) in sorted(old.items()))))
    mem = open("/proc/%d/mem" % pid, "rb")
    hits = 0
    for a, b, perm, name in maps:
        if "r" not in perm or "w" not in perm:
            continue
        try:
            mem.seek(a)
            data = mem.read(b - a)
        except OSError:
            continue
        for off in range(0, len(data) - 7, 8):
            w = struct.unpack_from("<Q", data, off)[0]
            for k, (lo, hi) in old.items():
                if lo <= w < hi:
                    hits += 1
                    print("C%d+%#x at %#x in %s (+%#x)" % (k, w - lo, a + off,
                                                          name or "[anon]", off))
                    if not name.startswith("[stack") and off >= 64 and off + 64 <= len(data):
                        ws = struct.unpack_from("<16Q", data, off - 64)
                        print("    words from -64: " + " ".join(
                            describe(x, maps, old) for x in ws))
    print("ocolos_pins: %d word(s)" % hits)
    return 0


if __name__ == "__main__":
    sys.exit(main())

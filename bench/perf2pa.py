#!/usr/bin/env python3
"""Convert `perf record -e cpu-clock` IP samples to BOLT's pre-aggregated form.

What this file is responsible for: turning the IP samples that fell in one
binary into `S <hexaddr> <count>` lines, where <hexaddr> is the binary's
link-time virtual address (for PIE the load bias is removed using the
binary's MMAP2 record and its program headers). This is the same input the
library hands to `llvm-bolt --pa -p FILE --ba`, so offline BOLT in the
benchmark sees the same kind of profile as online BOLT.

It can also keep only a random subset of the samples (--max-samples,
seeded), which is how bench/driver.py draws the samples-vs-speedup curve
from one dense recording: statistically the same as recording at a lower
rate, without re-running the workload.

usage: perf2pa.py --perf-data perf.data --binary BIN --out FILE
                  [--max-samples N] [--seed S]
Prints `perf2pa samples=<in perf.data> in_binary=<n> written=<n>
addresses=<n>` on stderr.
"""

import argparse
import collections
import os
import random
import re
import struct
import subprocess
import sys

MMAP_RE = re.compile(
    r"PERF_RECORD_MMAP2?\s+(\d+)/\d+:\s+\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\)"
    r"\s+@\s+(0x[0-9a-f]+|0)\b.*\]:\s+(\S+)\s+(.*)$")


def load_segments(path):
    """PT_LOAD (p_offset, p_vaddr, p_filesz) of a 64-bit little-endian ELF."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2 or ehdr[5] != 1:
            sys.exit("perf2pa: %s is not a 64-bit little-endian ELF" % path)
        e_phoff, = struct.unpack_from("<Q", ehdr, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(e_phoff)
        ph = f.read(e_phentsize * e_phnum)
    segs = []
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = \
            struct.unpack_from("<IIQQQQ", ph, i * e_phentsize)
        if p_type == 1:
            segs.append((p_offset, p_vaddr, p_filesz))
    return segs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--perf-data", required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-samples", type=int, default=0,
                   help="keep a random subset of this many in-binary samples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--perf", default="perf")
    a = p.parse_args()

    binary = os.path.realpath(a.binary)
    segs = load_segments(binary)
    maps = []  # (start, end, pgoff) of the binary's executable mappings
    ips = []
    total = 0
    cmd = [a.perf, "script", "-i", a.perf_data, "--show-mmap-events",
           "-F", "ip,dso"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            errors="replace")
    for line in proc.stdout:
        if "PERF_RECORD_MMAP" in line:
            m = MMAP_RE.search(line)
            if m and os.path.realpath(m.group(6).strip()) == binary \
                    and "x" in m.group(5):
                start, length = int(m.group(2), 16), int(m.group(3), 16)
                maps.append((start, start + length, int(m.group(4), 16)))
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            ip = int(parts[0], 16)
        except ValueError:
            continue
        total += 1
        ips.append(ip)
    if proc.wait() != 0:
        sys.exit("perf2pa: '%s' failed" % " ".join(cmd))
    if not maps:
        sys.exit("perf2pa: no executable mapping of %s in %s" %
                 (binary, a.perf_data))

    def to_vaddr(ip):
        for start, end, pgoff in maps:
            if start <= ip < end:
                off = ip - start + pgoff
                for p_offset, p_vaddr, p_filesz in segs:
                    if p_offset <= off < p_offset + p_filesz:
                        return off - p_offset + p_vaddr
        return None

    addrs = [v for v in map(to_vaddr, ips) if v is not None]
    in_binary = len(addrs)
    if a.max_samples and a.max_samples < len(addrs):
        addrs = random.Random(a.seed).sample(addrs, a.max_samples)
    counts = collections.Counter(addrs)
    with open(a.out, "w") as f:
        for addr in sorted(counts):
            f.write("S %x %d\n" % (addr, counts[addr]))
    print("perf2pa samples=%d in_binary=%d written=%d addresses=%d" %
          (total, in_binary, len(addrs), len(counts)), file=sys.stderr)


if __name__ == "__main__":
    main()

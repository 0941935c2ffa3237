#!/usr/bin/env python3
"""Turn a callgrind instruction-level profile into BOLT's pre-aggregated form.

What this file is responsible for: a *deterministic, dense* profile for the
benchmarks' option studies and for bench/cachesim_guard.sh. Callgrind
(`valgrind --tool=callgrind --dump-instr=yes`) counts every executed
instruction; this script writes one `S <hexaddr> <count>` record per
executed instruction of the given binary (count = executions, optionally
divided by --scale), which is what an IP sampler would converge to with
unlimited samples (minus sampling skid). Same input format as
bench/perf2pa.py, so the rest of the pipeline (`llvm-bolt --aggregate-only
--pa --ba`, then `llvm-bolt -data`) does not change.

Only non-PIE binaries (or PIE binaries run at a known base) make sense here:
addresses are taken as callgrind reports them. The binary's own instructions
are selected by the `ob=` (object file) records of the callgrind output.

usage: cg2pa.py --callgrind FILE --binary BIN --out FILE [--scale N]
Prints `cg2pa instructions=<n> executed_addresses=<n> written=<n>` on stderr.
"""

import argparse
import os
import re
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--callgrind", required=True,
                   help="callgrind.out file made with --dump-instr=yes")
    p.add_argument("--binary", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=int, default=1,
                   help="divide counts by this (rounding up), to keep the "
                   "numbers in the range real samples have")
    a = p.parse_args()
    want = os.path.realpath(a.binary)

    counts = {}
    names = {}        # compressed ob=(id) names
    cur_ob = None     # object of the current cost lines
    pos = 0           # current instruction address (relative compression)
    skip_next = False  # the line after calls= is an inclusive call cost
    positions = "line"
    ir_index = 0
    with open(a.callgrind) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if line.startswith("positions:"):
                positions = line.split(":", 1)[1].split()
                continue
            if line.startswith("events:"):
                ev = line.split(":", 1)[1].split()
                ir_index = ev.index("Ir")
                continue
            if line.startswith("ob="):
                m = re.match(r"ob=(?:\((\d+)\))?\s*(.*)", line)
                oid, name = m.group(1), m.group(2)
                if oid and name:
                    names[oid] = name
                elif oid:
                    name = names.get(oid, "")
                cur_ob = os.path.realpath(name) if name else None
                continue
            if line.startswith("cob="):
                m = re.match(r"cob=\((\d+)\)\s*(.*)", line)
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if c.isdigit() or c in "+-*" or line.startswith("0x"):
                parts = line.split()
                npos = len(positions) if isinstance(positions, list) else 1
                tok = parts[0]
                if tok == "*":
                    addr = pos
                elif tok[0] in "+-":
                    addr = pos + int(tok, 0) if not tok[1:].startswith("0x") \
                        else pos + (1 if tok[0] == "+" else -1) * \
                        int(tok[1:], 16)
                else:
                    addr = int(tok, 0)
                pos = addr
                if skip_next:
                    skip_next = False
                    continue
                costs = parts[npos:]
                if cur_ob == want and len(costs) > ir_index:
                    ir = int(costs[ir_index])
                    if ir:
                        counts[addr] = counts.get(addr, 0) + ir
                continue
            # fl=, fn=, cfn=, cob=, jump=, jcnd= ... : nothing to do,
            # except that jump/jcnd lines carry no cost line semantics.
    if not counts:
        sys.exit("cg2pa: no instruction of %s in %s (was callgrind run with "
                 "--dump-instr=yes on this binary?)" % (want, a.callgrind))
    written = 0
    with open(a.out, "w") as f:
        for addr in sorted(counts):
            n = (counts[addr] + a.scale - 1) // a.scale
            f.write("S %x %d\n" % (addr, n))
            written += n
    print("cg2pa instructions=%d executed_addresses=%d written=%d" %
          (sum(counts.values()), len(counts), written), file=sys.stderr)


if __name__ == "__main__":
    main()

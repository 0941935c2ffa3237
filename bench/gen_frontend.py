#!/usr/bin/env python3
"""Generate a front-end-bound C program for benchmarking libocolos.

What this file is responsible for: writing the C sources of a synthetic
workload whose speed is limited by instruction fetch (i-cache, i-TLB), the
kind of program BOLT's layout optimizations help most. It does not build
anything (bench/build_frontend.sh does) and does not measure anything
(bench/driver.py does).

The program (deterministic for a given --seed):
  * --functions N functions `uint64_t fK(uint64_t x, int d)`, split over
    --tus translation units; the --hot H hot ones are scattered at random
    among the cold ones, so the hot code is spread over the whole .text;
  * every function has rare ("cold") blocks inline between its hot blocks,
    guarded by a test against a run-time mask the compiler cannot see
    (taken about once in 2^20 executions);
  * hot functions call one more hot function (while the depth d > 0):
    directly (two fixed callees), indirectly through a writable
    function-pointer table (.data), or "virtually" through const
    struct-of-function-pointer tables placed in .data.rel.ro (v-table-like);
  * cold blocks call cold functions directly and through a cold v-table, so
    the binary also has call sites and pointer slots that stay cold;
  * with --phases 2 the hot functions form two disjoint sets, each calling
    only its own set (directly, and through its half of the pointer table
    and the v-tables); main() runs set 0, then set 1 (--phase2-after SEC,
    SIGUSR1, or --phase 1 from the start): a workload whose hot code changes;
  * main() runs a worker loop in --threads threads for --duration seconds and
    prints `tput t=<sec> ops=<n> ops_per_s=<x>` every --interval seconds;
    optionally (built with -DWITH_OCOLOS, linked with libocolos) it calls
    ocolos_optimize_self(NULL, &stats) after --online-after seconds from a
    separate thread and prints one `ocolos rc=<rc> ...` line.

Build flags it is meant for: -O1 -fno-jump-tables -Wl,--emit-relocs, with
-no-pie or -fPIE -pie.
"""

import argparse
import os
import random
import sys

MASK64 = (1 << 64) - 1

# Average sizes at -O1 (x86-64, gcc 12), used only for the size estimate
# printed at the end; the real size is whatever the compiler makes.
HOT_OP_BYTES = 11
COLD_OP_BYTES = 14


def c_hex(v):
    return "0x%016xULL" % (v & MASK64)


class Gen:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        n = a.functions
        self.hot = sorted(self.rng.sample(range(n), a.hot))
        self.hot_set = set(self.hot)
        self.cold = [i for i in range(n) if i not in self.hot_set]
        # --phases 2: the hot functions split at random into two disjoint
        # sets (own RNG: the default program's functions and tables stay
        # identical); a hot
        # function calls only functions of its own set, directly or through
        # its set's half of each table.
        self.phases = a.phases
        self.set_of = {}
        self.sets = [self.hot]
        if a.phases == 2:
            srng = random.Random(a.seed * 1000003 + 2)
            shuffled = list(self.hot)
            srng.shuffle(shuffled)
            half = len(shuffled) // 2
            self.sets = [sorted(shuffled[:half]), sorted(shuffled[half:])]
            for k, st in enumerate(self.sets):
                for i in st:
                    self.set_of[i] = k

    # ---- code fragments -------------------------------------------------

    def mix_ops(self, var, count):
        """`count` cheap dependent integer operations on `var`."""
        r = self.rng
        out = []
        for _ in range(count):
            k = r.randrange(4)
            c = r.getrandbits(64) | 1
            if k == 0:
                out.append("%s = %s * %s;" % (var, var, c_hex(c)))
            elif k == 1:
                out.append("%s ^= %s >> %d;" % (var, var, r.randrange(7, 41)))
            elif k == 2:
                out.append("%s += %s;" % (var, c_hex(c)))
            else:
                s = r.randrange(5, 59)
                out.append("%s = (%s << %d) | (%s >> %d);" %
                           (var, var, s, var, 64 - s))
        return out

    def ilp_ops(self, count):
        """`count` cheap 1-cycle operations spread round-robin over four
        independent variables (y, a, b, c): plenty of instruction-level
        parallelism, so the core could retire them fast if it could fetch
        them -- the speed is then limited by instruction fetch, not by a
        chain of dependent multiplies."""
        r = self.rng
        out = []
        for i in range(count):
            v = "yabc"[(self.ilp_next + i) % 4]
            k = r.randrange(3)
            if k == 0:
                out.append("%s += 0x%08xU;" % (v, r.getrandbits(31)))
            elif k == 1:
                out.append("%s ^= 0x%08xU;" % (v, r.getrandbits(31)))
            else:
                sh = r.randrange(5, 59)
                out.append("%s = (%s << %d) | (%s >> %d);" %
                           (v, v, sh, v, 64 - sh))
        self.ilp_next = (self.ilp_next + count) % 4
        return out

    def cold_block(self, var, calls_cold):
        """A rare block: many operations, sometimes a call to cold code."""
        r = self.rng
        cond = "(%s & fe_rare_mask) == %s" % (var, c_hex(r.getrandbits(20)))
        if self.a.cold_layout == "inline":
            # Tell the compiler the rare block is likely: it then places
            # the rare block as the fall-through, inline between the hot
            # blocks, and the hot path jumps over it -- the layout a
            # compiler without a profile produces whenever its static
            # guess is wrong, and the one BOLT is meant to repair.
            cond = "__builtin_expect(%s, 1)" % cond
        lines = ["if (%s) {" % cond]
        lines += ["\t" + s for s in self.mix_ops(var, self.a.cold_ops +
                                                 r.randrange(-4, 5))]
        if calls_cold and self.cold:
            if r.random() < 0.5:
                lines.append("\t%s += f%d(%s, 0);" %
                             (var, r.choice(self.cold), var))
            else:
                lines.append("\t%s += fe_cold_vt[%d]->m[%s & 3](%s, 0);" %
                             (var, r.randrange(self.a.cold_vtables), var, var))
        lines.append("}")
        return lines

    def function(self, idx):
        a, r = self.a, self.rng
        is_hot = idx in self.hot_set
        body = ["uint64_t f%d(uint64_t x, int d)" % idx, "{",
                "\tuint64_t y = x ^ %s;" % c_hex(r.getrandbits(64))]
        if a.hot_style == "ilp":
            self.ilp_next = 0
            body += ["\tuint64_t a = x >> 7, b = x << 3, c = ~x;"]
        nblocks = a.cold_blocks
        for b in range(nblocks):
            if a.hot_style == "ilp":
                body += ["\t" + s for s in self.ilp_ops(a.hot_ops)]
            else:
                body += ["\t" + s for s in self.mix_ops("y", a.hot_ops)]
            body += ["\t" + s for s in self.cold_block("y", True)]
        if is_hot and self.phases == 2:
            k = self.set_of[idx]
            own = self.sets[k]
            da, db = r.choice(own), r.choice(own)
            fh, vh = a.fptab // 2, a.vtables // 2
            body += [
                "\tif (d > 0) {",
                "\t\tunsigned s = (unsigned)(y >> 61);",
                "\t\tif (s < 2)",
                "\t\t\ty += f%d(y, d - 1);" % da,
                "\t\telse if (s < 4)",
                "\t\t\ty += f%d(y, d - 1);" % db,
                "\t\telse if (s < 6)",
                "\t\t\ty += fe_fptab[%d + (y >> 20) %% %d](y, d - 1);" %
                (k * fh, fh),
                "\t\telse",
                "\t\t\ty += fe_vt[%d + (y >> 20) %% %d]->m[(y >> 40) & 3]"
                "(y, d - 1);" % (k * vh, vh),
                "\t}",
            ]
        elif is_hot:
            da, db = r.choice(self.hot), r.choice(self.hot)
            body += [
                "\tif (d > 0) {",
                "\t\tunsigned s = (unsigned)(y >> 61);",
                "\t\tif (s < 2)",
                "\t\t\ty += f%d(y, d - 1);" % da,
                "\t\telse if (s < 4)",
                "\t\t\ty += f%d(y, d - 1);" % db,
                "\t\telse if (s < 6)",
                "\t\t\ty += fe_fptab[(y >> 20) %% %d](y, d - 1);" %
                a.fptab,
                "\t\telse",
                "\t\t\ty += fe_vt[(y >> 20) %% %d]->m[(y >> 40) & 3]"
                "(y, d - 1);" % a.vtables,
                "\t}",
            ]
        else:
            # Cold functions look the same but only ever reach cold code.
            body += [
                "\tif (d > 0)",
                "\t\ty += f%d(y, d - 1);" % r.choice(self.cold),
            ]
        if a.hot_style == "ilp":
            body += ["\treturn y + (a ^ b ^ c);", "}", ""]
        else:
            body += ["\t" + s for s in self.mix_ops("y", a.hot_ops)]
            body += ["\treturn y;", "}", ""]
        return body

    # ---- files ----------------------------------------------------------

    def header(self):
        a = self.a
        out = [
            "/* Generated by bench/gen_frontend.py; do not edit. */",
            "#ifndef FE_H",
            "#define FE_H",
            "#include <stdint.h>",
            "typedef uint64_t (*fe_fn)(uint64_t, int);",
            "/* A v-table-like struct of function pointers. */",
            "struct fe_vtable { fe_fn m[4]; };",
            "extern uint64_t fe_rare_mask;",
            "extern fe_fn fe_fptab[%d];" % a.fptab,
            "extern const struct fe_vtable *const fe_vt[%d];" % a.vtables,
            "extern const struct fe_vtable *const fe_cold_vt[%d];" %
            a.cold_vtables,
            "extern fe_fn fe_roots[%d];" % len(self.hot),
            "#define FE_NROOTS %d" % len(self.hot),
            "#define FE_NFUNCS %d" % a.functions,
            "#define FE_SEED %d" % a.seed,
            "/* --phases 2: fe_roots[0, FE_NROOTS0) is hot set 0, the rest",
            "   hot set 1 (disjoint call trees); 1: all roots, one set. */",
            "#define FE_NPHASES %d" % a.phases,
            "#define FE_NROOTS0 %d" % len(self.sets[0]),
        ]
        for i in range(a.functions):
            out.append("uint64_t f%d(uint64_t x, int d);" % i)
        out += ["#endif", ""]
        return out

    def tables(self):
        a, r = self.a, self.rng
        # Const tables of pointers need run-time relocations under PIE and
        # land in .data.rel.ro there; under -no-pie gcc would put them in
        # .rodata, so place them explicitly to get the same layout both ways.
        ro = '__attribute__((section(".data.rel.ro")))'
        out = ["/* Generated by bench/gen_frontend.py; do not edit. */",
               '#include "fe.h"', ""]
        out.append("/* Writable function-pointer table (.data). */")
        out.append("fe_fn fe_fptab[%d] = {" % a.fptab)
        if self.phases == 2:
            fh = a.fptab // 2
            out += ["\tf%d," % r.choice(self.sets[0 if j < fh else 1])
                    for j in range(a.fptab)]
        else:
            out += ["\tf%d," % r.choice(self.hot) for _ in range(a.fptab)]
        out += ["};", ""]
        out.append("/* Entry points of the worker loop (.data). */")
        out.append("fe_fn fe_roots[%d] = {" % len(self.hot))
        if self.phases == 2:
            roots = []
            for st in self.sets:
                part = list(st)
                r.shuffle(part)
                roots += part
        else:
            roots = list(self.hot)
            r.shuffle(roots)
        out += ["\tf%d," % i for i in roots]
        out += ["};", ""]
        for v in range(a.vtables):
            pool = self.hot
            if self.phases == 2:
                pool = self.sets[0 if v < a.vtables // 2 else 1]
            ms = ", ".join("f%d" % r.choice(pool) for _ in range(4))
            out.append("static const struct fe_vtable vt%d %s = { { %s } };"
                       % (v, ro, ms))
        out.append("const struct fe_vtable *const fe_vt[%d] %s = {" %
                   (a.vtables, ro))
        out += ["\t&vt%d," % v for v in range(a.vtables)]
        out += ["};", ""]
        pool = self.cold or self.hot
        for v in range(a.cold_vtables):
            ms = ", ".join("f%d" % r.choice(pool) for _ in range(4))
            out.append("static const struct fe_vtable cvt%d %s = { { %s } };"
                       % (v, ro, ms))
        out.append("const struct fe_vtable *const fe_cold_vt[%d] %s = {" %
                   (a.cold_vtables, ro))
        out += ["\t&cvt%d," % v for v in range(a.cold_vtables)]
        out += ["};", ""]
        return out

    def write(self):
        a = self.a
        os.makedirs(a.out, exist_ok=True)
        files = {}
        files["fe.h"] = self.header()
        # Tables first: they draw from the same RNG as the function bodies,
        # and the order must stay fixed for determinism.
        files["fe_tables.c"] = self.tables()
        n = a.functions
        per = (n + a.tus - 1) // a.tus
        for t in range(a.tus):
            lines = ["/* Generated by bench/gen_frontend.py; do not edit. */",
                     '#include "fe.h"', ""]
            for i in range(t * per, min(n, (t + 1) * per)):
                lines += self.function(i)
            files["fe_%03d.c" % t] = lines
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "frontend_main.c")) as f:
            files["fe_main.c"] = [f.read()]
        for name, lines in files.items():
            path = os.path.join(a.out, name)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write("\n".join(lines))
            # Keep mtimes of unchanged files so make-style rebuilds are cheap.
            if os.path.exists(path):
                with open(path) as f1, open(tmp) as f2:
                    if f1.read() == f2.read():
                        os.unlink(tmp)
                        continue
            os.replace(tmp, path)
        est = n * (a.cold_blocks * (a.hot_ops * HOT_OP_BYTES +
                                    a.cold_ops * COLD_OP_BYTES) +
                   a.hot_ops * HOT_OP_BYTES + 60)
        srcs = sorted(k for k in files if k.endswith(".c"))
        with open(os.path.join(a.out, "sources.txt"), "w") as f:
            f.write("\n".join(srcs) + "\n")
        print("gen_frontend: %d functions (%d hot) in %d TUs -> %s; "
              "estimated text %.1f MiB" %
              (n, len(self.hot), a.tus, a.out, est / 2**20), file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--functions", type=int, default=10000)
    p.add_argument("--hot", type=int, default=None,
                   help="hot functions (default: 15%% of --functions)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tus", type=int, default=None,
                   help="translation units (default: functions/1000, >= 2)")
    p.add_argument("--hot-ops", type=int, default=4,
                   help="operations per hot block")
    p.add_argument("--cold-ops", type=int, default=25,
                   help="operations per cold block (average)")
    p.add_argument("--cold-blocks", type=int, default=6,
                   help="cold blocks per function")
    p.add_argument("--hot-style", choices=["ilp", "chain"], default="ilp",
                   help="ilp: hot operations are 1-cycle and spread over four "
                   "independent variables, so fetch limits speed (default); "
                   "chain: one dependent chain with 64-bit multiplies (the "
                   "first version, limited by multiply latency)")
    p.add_argument("--cold-layout", choices=["inline", "outline"],
                   default="inline",
                   help="inline: rare blocks marked likely, so the compiler "
                   "places them between the hot blocks (default); outline: "
                   "no hint, gcc -O1 moves them to the end of the function")
    p.add_argument("--fptab", type=int, default=512,
                   help="entries of the function-pointer table")
    p.add_argument("--vtables", type=int, default=128)
    p.add_argument("--cold-vtables", type=int, default=64)
    p.add_argument("--phases", type=int, choices=[1, 2], default=1,
                   help="2: two disjoint hot sets (each calls only itself, "
                   "half of each table each); the program runs set 0, then "
                   "set 1 after --phase2-after SEC or SIGUSR1")
    a = p.parse_args()
    if a.hot is None:
        a.hot = max(2, a.functions * 15 // 100)
    if a.tus is None:
        a.tus = max(2, a.functions // 1000)
    if not (2 <= a.hot <= a.functions):
        p.error("--hot must be in [2, --functions]")
    if a.phases == 2 and (a.hot < 4 or a.fptab < 2 or a.vtables < 2):
        p.error("--phases 2 needs --hot >= 4, --fptab >= 2, --vtables >= 2")
    Gen(a).write()


if __name__ == "__main__":
    main()

# gdb command `ocolos-symbols`: symbols for the optimized code libocolos
# mapped into a process it optimized by pid (ocolos_open_pid, ocolos-agent,
# ocolos-supervise).
#
#   (gdb) source /usr/share/ocolos/gdb/ocolos_gdb.py
#   (gdb) ocolos-symbols          # the current inferior
#   (gdb) ocolos-symbols PID      # another process's perf map and mappings
#
# Why a command: a process that links libocolos and optimizes itself hands
# gdb its code versions through gdb's JIT interface, and gdb finds them by
# itself. A process optimized from outside knows nothing of libocolos, so
# there is no JIT descriptor in it; what describes its code versions is the
# perf map the library wrote, /tmp/perf-PID.map ("START SIZE name [ocolos
# CN]", one line per function and fragment). The command finds the code
# versions in /proc/PID/maps — mappings named "ocolos-c<N>", or, where the
# kernel or library version gives them no name, the anonymous executable
# mappings the perf map describes — writes a small ELF object of each
# version's symbols (a SHT_NOBITS .text at the version's address: the code
# itself stays in the process) and loads it with add-symbol-file. Run it
# again after a later round: the objects it loaded before are replaced.
#
# Names are the functions' own (cold fragments "f.cold.0", as BOLT names
# them), so `bt` shows them and `break f` also gets a location in each
# version. Slot stubs (the jumps redirected function pointers go through)
# are named "f [ocolos stub]": a stub is not the function, and `break f`
# must not stop there too. Nothing here writes to the process.

import os
import re
import struct
import tempfile

import gdb

_MAP_LINE = re.compile(r"^([0-9a-fA-F]+) ([0-9a-fA-F]+) (.*)$")
_TAG = re.compile(r"^(.*) \[ocolos (C\d+|stub)\]$")
_loaded = {}  # pid -> [file names loaded by the last run]
_tmpdir = None


def _read_perf_map(pid):
    """(start, size, name, tag) of each line, the newest line winning
    where lines overlap (libocolos rewrites the file so that none do, but
    a map written by something else may)."""
    path = "/tmp/perf-%d.map" % pid
    lines = []
    with open(path) as f:
        for text in f:
            m = _MAP_LINE.match(text.rstrip("\n"))
            if not m:
                continue
            start, size, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            t = _TAG.match(name)
            lines.append((start, max(size, 1), t.group(1) if t else name,
                          t.group(2) if t else None))
    kept, taken = [], []
    for start, size, name, tag in reversed(lines):
        if any(start < e and start + size > s for s, e in taken):
            continue
        taken.append((start, start + size))
        kept.append((start, size, name, tag))
    return path, sorted(kept)


def _code_mappings(pid):
    """Executable mappings that may hold a code version: (start, end, label)."""
    out = []
    with open("/proc/%d/maps" % pid) as f:
        for text in f:
            parts = text.split(None, 5)
            if len(parts) < 5 or "x" not in parts[1]:
                continue
            name = parts[5].strip() if len(parts) > 5 else ""
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            m = re.search(r"ocolos-c(\d+)", name)
            if m:
                out.append((lo, hi, "C" + m.group(1)))
            elif name == "":
                out.append((lo, hi, None))
    return out


def _elf_object(machine, text_addr, text_size, syms):
    """An ET_REL ELF64 object: NOBITS .text at text_addr, symbols as offsets
    into it (the layout libocolos's elf/symfile.c writes for gdb's JIT
    interface)."""
    shstr = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    strtab = bytearray(b"\0")
    symtab = bytearray(24)  # the null symbol
    for start, size, name in syms:
        off = len(strtab)
        strtab += name.encode("utf-8", "replace") + b"\0"
        # st_name, st_info (GLOBAL FUNC), st_other, st_shndx (.text), st_value, st_size
        symtab += struct.pack("<IBBHQQ", off, 0x12, 0, 1, start - text_addr, size)
    ehsize, shentsize = 64, 64
    off_sym = ehsize
    off_str = off_sym + len(symtab)
    off_shstr = off_str + len(strtab)
    off_sh = (off_shstr + len(shstr) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh = ident + struct.pack("<HHIQQQIHHHHHH", 1, machine, 1, 0, 0, off_sh, 0, ehsize, 0, 0,
                             shentsize, 5, 4)

    def sh(name, typ, flags, addr, off, size, link=0, info=0, align=1, entsize=0):
        return struct.pack("<IIQQQQIIQQ", name, typ, flags, addr, off, size, link, info, align,
                           entsize)

    shdrs = (bytes(64) +
             sh(1, 8, 0x6, text_addr, off_sym, text_size, align=16) +          # .text NOBITS AX
             sh(7, 2, 0, 0, off_sym, len(symtab), 3, 1, 8, 24) +               # .symtab
             sh(15, 3, 0, 0, off_str, len(strtab)) +                            # .strtab
             sh(23, 3, 0, 0, off_shstr, len(shstr)))                            # .shstrtab
    body = eh + bytes(symtab) + bytes(strtab) + shstr
    return body + bytes(off_sh - len(body)) + shdrs


def _machine():
    arch = gdb.selected_inferior().architecture().name()
    return 183 if "aarch64" in arch else 62  # EM_AARCH64, EM_X86_64


class OcolosSymbols(gdb.Command):
    """Load symbols for libocolos's optimized code in a process optimized by pid.
Usage: ocolos-symbols [PID]   (default: the current inferior)
Reads /proc/PID/maps and /tmp/perf-PID.map; see the comment at the top of
ocolos_gdb.py."""

    def __init__(self):
        super().__init__("ocolos-symbols", gdb.COMMAND_FILES)

    def invoke(self, arg, from_tty):
        global _tmpdir
        pid = int(arg) if arg.strip() else gdb.selected_inferior().pid
        if not pid:
            raise gdb.GdbError("ocolos-symbols: no process; attach first or give a PID")
        try:
            path, lines = _read_perf_map(pid)
        except OSError as e:
            raise gdb.GdbError("ocolos-symbols: cannot read the perf map of process %d (%s): "
                               "libocolos writes it after each round" % (pid, e))
        if _tmpdir is None:
            _tmpdir = tempfile.TemporaryDirectory(prefix="ocolos-gdb-")
        for old in _loaded.pop(pid, []):
            try:
                gdb.execute("remove-symbol-file %s" % old, to_string=True)
            except gdb.error:
                pass
        loaded = []
        machine = _machine()
        confirm = gdb.parameter("confirm")
        gdb.execute("set confirm off")
        try:
            for lo, hi, label in _code_mappings(pid):
                syms = [(s, z, n + " [ocolos stub]" if tag == "stub" else n)
                        for s, z, n, tag in lines if lo <= s < hi]
                if not syms:
                    continue
                tags = [tag for s, z, n, tag in lines if lo <= s < hi and tag]
                tags = [t for t in tags if t != "stub"] or tags
                label = label or (max(set(tags), key=tags.count) if tags else "?")
                fname = os.path.join(_tmpdir.name, "ocolos-%d-%s-%x.o" % (pid, label, lo))
                with open(fname, "wb") as f:
                    f.write(_elf_object(machine, lo, hi - lo, syms))
                gdb.execute("add-symbol-file %s -s .text 0x%x" % (fname, lo), to_string=True)
                loaded.append(fname)
                print("ocolos: %s at 0x%x-0x%x: %d symbols" % (label, lo, hi, len(syms)))
        finally:
            gdb.execute("set confirm %s" % ("on" if confirm else "off"))
        _loaded[pid] = loaded
        if not loaded:
            print("ocolos: no optimized code of process %d found (%s describes none of its "
                  "executable mappings)" % (pid, path))


OcolosSymbols()

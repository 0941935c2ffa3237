#!/usr/bin/env bash
# Installs everything libocolos needs to build, test and run, from Debian 12's
# own archive (bookworm + bookworm-security, where bolt-22 lives). Run as root.
set -euo pipefail
# gcc-aarch64-linux-gnu: cross-compiles the AArch64 decoder's test inputs.
# libunwind8: libunwind-ptrace, loaded at run time to walk a target's stacks.
# valgrind: its header (client requests: a round under callgrind) and the
#   callgrind cache-simulation guard test.
# groff-base: tools.man renders the man pages (docs/man) and fails on a warning.
# linux-perf, gdb: the debuginfo tests (tests/debug) run perf report and gdb
#   on optimized code.
# clang, libclang-rt-dev: libFuzzer and its sanitizers for the fuzz targets
#   (tests/fuzz, docs/fuzzing.md).
# dpkg-dev: dpkg-shlibdeps, with which CPack's Debian packages get their
#   dependencies (the package tests).
# AArch64 build (cmake/aarch64-toolchain.cmake) and its tests under qemu-user:
# the cross compilers, qemu-aarch64, bolt-19 (the BOLT that handles AArch64
# inputs), and the arm64 libraries the library links (multiarch, below;
# libstdc++6:arm64 for the C++ test, which runs on the multiarch loader).
# The AArch64 guest (scripts/a64vm.sh): qemu-system-arm, cpio, xz-utils; the
# guest's own packages are arm64 .debs it downloads itself.
pkgs=(build-essential cmake pkg-config libelf-dev libzydis-dev libpfm4-dev zlib1g-dev bolt-22
      python3 gcc-aarch64-linux-gnu libunwind8 valgrind groff-base
      linux-perf gdb clang libclang-rt-dev dpkg-dev
      g++-aarch64-linux-gnu qemu-user bolt-19 qemu-system-arm cpio xz-utils
      libelf-dev:arm64 zlib1g-dev:arm64 libpfm4-dev:arm64 libstdc++6:arm64)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

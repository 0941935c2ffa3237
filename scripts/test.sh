#!/usr/bin/env bash
# The whole test suite: install dependencies, then build and run ctest three
# times: x86-64 as released, x86-64 under AddressSanitizer + UBSan, and an
# AArch64 cross build under qemu-user. Tests that run rounds hold a ctest
# resource lock, so -j2 never runs two rounds at once.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
jobs=$(nproc)
status=0
for variant in release asan; do
  dir=build-test-$variant
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON)
  [ "$variant" = asan ] && flags+=(-DOCOLOS_SANITIZE=ON)
  cmake -S . -B "$dir" "${flags[@]}" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "== ctest ($variant) =="
  (cd "$dir" && ctest -j2 --output-on-failure --timeout 300) || status=1
done
# AArch64: cross build, every test under qemu-aarch64 (4 KiB and 64 KiB pages).
dir=build-test-aarch64
cmake -S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON >/dev/null
cmake --build "$dir" -j"$jobs"
echo "== ctest (aarch64, qemu-user) =="
(cd "$dir" && ctest -j2 --output-on-failure --timeout 400) || status=1
exit $status

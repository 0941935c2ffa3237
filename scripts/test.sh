#!/usr/bin/env bash
# The whole test suite: install dependencies, then build and run ctest twice,
# once as released and once under AddressSanitizer + UBSan.
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
  (cd "$dir" && ctest --output-on-failure --timeout 300) || status=1
done
exit $status

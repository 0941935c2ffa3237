#!/usr/bin/env bash
# The main job: install dependencies, build libocolos, and run a program that
# optimizes itself while it works, printing throughput before/after and the pause.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)"
echo "== examples/self_tuning_server: a key-value request loop on 2 threads =="
./build/examples/self_tuning_server 2 2 3

#!/bin/bash
# Online A/B on the generated workload: hybrid edges (1) vs BOLT's own
# inference from bare samples (2), at three sampling windows. Needs
# bench/out/fe/fe-nopie-ocolos (FE_PIE=nopie bench/build_frontend.sh build).
for ms in 500 2000 8000; do
  for e in 1 2; do
    out=$(timeout 300 /work/main/bench/out/fe/fe-nopie-ocolos --duration 200 --online-after 4 --ocolos-profile-ms $ms --ocolos-edges $e --ab-pairs 6 --ab-secs 1.5 2>&1)
    samples=$(echo "$out" | grep -o 'samples_in_binary=[0-9]*' | head -1)
    pause=$(echo "$out" | grep -o 'pause_ns=[0-9]*' | head -1)
    ab=$(echo "$out" | grep '^ab done')
    ok=$(echo "$out" | grep -o 'ok=[01]' | tail -1)
    echo "profile_ms=$ms edges=$e $samples $pause $ab $ok"
  done
done

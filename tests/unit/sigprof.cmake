# sigprof sampler backend (lib/sample/sigprof.c): in-process CPU-time timers.
ocolos_unit_test(sigprof test_sigprof TIMEOUT 60)

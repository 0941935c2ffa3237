# sigprof sampler backend (lib/sample/sigprof.c): in-process CPU-time timers.
ocolos_unit(test_sigprof)
add_test(NAME unit.sigprof COMMAND test_sigprof)
set_tests_properties(unit.sigprof PROPERTIES LABELS unit TIMEOUT 60)

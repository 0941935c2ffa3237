# perf-lbr backend and LBR profile writer (lib/sample/perf_lbr.c,
# lib/infer/lbr_writer.c): record parsing from generated ring-buffer
# contents, BOLT reading the written profile back, the probe.
ocolos_unit(test_lbr)
add_test(NAME unit.lbr COMMAND test_lbr $<TARGET_FILE:unit_fixture>
  ${OCOLOS_TEST_BOLT})
set_tests_properties(unit.lbr PROPERTIES LABELS unit TIMEOUT 300)

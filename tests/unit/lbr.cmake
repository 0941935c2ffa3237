# perf-lbr backend and LBR profile writer (lib/sample/perf_lbr.c,
# lib/infer/lbr_writer.c): record parsing from generated ring-buffer
# contents, BOLT reading the written profile back, the probe.
ocolos_unit_test(lbr test_lbr TIMEOUT 300 ARGS $<TARGET_FILE:unit_fixture> ${OCOLOS_TEST_BOLT})

# elf/bat.c: BOLT address translation read back from real BOLT output and
# checked against our CFGs and BOLT's own perf2bolt (test_bat.c), the
# reader's edge cases on hand-made notes (test_bat_parse.c), and the sample
# rewriting a round does with it, infer/bat_translate.c (test_bat_translate.c).

add_executable(bat_fixture bat_fixture.c)
target_compile_options(bat_fixture PRIVATE -O2 -fno-jump-tables -fPIE)
target_link_options(bat_fixture PRIVATE -pie -Wl,--emit-relocs)

# BOLT 22 with --custom-allocation-vma, as x86-64 rounds run it.
ocolos_unit_test(bat test_bat TIMEOUT 180 SKIP_RETURN_CODE 77
  ARGS $<TARGET_FILE:bat_fixture> ${OCOLOS_TEST_BOLT} ${OCOLOS_TEST_PERF2BOLT} custom)
# BOLT 19 on the same input, placing new code itself (AArch64 rounds' BOLT).
ocolos_unit_test(bat_bolt19 test_bat TIMEOUT 180 SKIP_RETURN_CODE 77
  ARGS $<TARGET_FILE:bat_fixture> ${OCOLOS_TEST_BOLT19} ${OCOLOS_TEST_PERF2BOLT19} placed)

# AArch64: the fixture cross-compiled, BOLT 19 (the one that handles
# AArch64 inputs). Skipped (77) without a cross compiler or BOLT 19.
find_program(OCOLOS_AARCH64_CC aarch64-linux-gnu-gcc)
if(OCOLOS_AARCH64_CC)
  set(_bat64 ${CMAKE_CURRENT_BINARY_DIR}/bat_fixture_aarch64)
  add_custom_command(OUTPUT ${_bat64}
    COMMAND ${OCOLOS_AARCH64_CC} -O2 -fno-jump-tables -Wl,--emit-relocs
      -o ${_bat64} ${CMAKE_CURRENT_SOURCE_DIR}/bat_fixture.c
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/bat_fixture.c
    COMMENT "Cross-compiling bat_fixture for AArch64")
  add_custom_target(bat_fixture_aarch64 ALL DEPENDS ${_bat64})
else()
  message(STATUS "aarch64-linux-gnu-gcc not found: unit.bat_a64 will be skipped")
  set(_bat64 ${CMAKE_CURRENT_BINARY_DIR}/no-aarch64-cross-compiler)
endif()
ocolos_unit_test(bat_a64 test_bat TIMEOUT 180 SKIP_RETURN_CODE 77
  ARGS ${_bat64} ${OCOLOS_TEST_BOLT19} ${OCOLOS_TEST_PERF2BOLT19} placed)

ocolos_unit_test(bat_parse test_bat_parse TIMEOUT 60)

# infer/bat_translate.c: a sample set from optimized code, back to C0.
ocolos_unit_test(bat_translate test_bat_translate TIMEOUT 60)

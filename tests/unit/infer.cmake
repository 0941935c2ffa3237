# infer/: CFG building (x86-64, AArch64), the hybrid estimator, the hybrid
# profile writer end to end with the real llvm-bolt.

# Functions with known control flow, only read as files by the CFG tests.
add_executable(cfg_sample cfg_sample.c)
target_compile_options(cfg_sample PRIVATE -O2 -fno-jump-tables -fPIE)
target_link_options(cfg_sample PRIVATE -pie -Wl,--emit-relocs)

ocolos_unit(test_hybrid)
add_test(NAME unit.hybrid COMMAND test_hybrid)

ocolos_unit(test_cfg_x86)
target_include_directories(test_cfg_x86 PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit.cfg_x86 COMMAND test_cfg_x86 $<TARGET_FILE:cfg_sample>
  $<TARGET_FILE:unit_fixture>)

ocolos_unit(test_hybrid_bolt)
add_test(NAME unit.hybrid_bolt COMMAND test_hybrid_bolt $<TARGET_FILE:unit_fixture>
  ${OCOLOS_TEST_BOLT})

set_tests_properties(unit.hybrid unit.cfg_x86 unit.hybrid_bolt PROPERTIES LABELS unit
  TIMEOUT 120)

# AArch64: the same sample cross-compiled, when a cross compiler is installed
# (Debian: gcc-aarch64-linux-gnu).
find_program(OCOLOS_AARCH64_CC aarch64-linux-gnu-gcc)
if(OCOLOS_AARCH64_CC)
  set(_cs64 ${CMAKE_CURRENT_BINARY_DIR}/cfg_sample_aarch64)
  add_custom_command(OUTPUT ${_cs64}
    COMMAND ${OCOLOS_AARCH64_CC} -O2 -fno-jump-tables -Wl,--emit-relocs
      -o ${_cs64} ${CMAKE_CURRENT_SOURCE_DIR}/cfg_sample.c
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cfg_sample.c
    COMMENT "Cross-compiling cfg_sample for AArch64")
  add_custom_target(cfg_sample_aarch64 ALL DEPENDS ${_cs64})
  ocolos_unit(test_cfg_aarch64)
  target_include_directories(test_cfg_aarch64 PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME unit.cfg_aarch64 COMMAND test_cfg_aarch64 ${_cs64})
  set_tests_properties(unit.cfg_aarch64 PROPERTIES LABELS unit TIMEOUT 60)
else()
  message(STATUS "aarch64-linux-gnu-gcc not found: unit.cfg_aarch64 skipped")
endif()

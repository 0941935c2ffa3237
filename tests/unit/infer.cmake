# infer/: CFG building (x86-64, AArch64), the hybrid estimator, the hybrid
# profile writer end to end with the real llvm-bolt.

# Functions with known control flow, only read as files by the CFG tests.
add_executable(cfg_sample cfg_sample.c)
target_compile_options(cfg_sample PRIVATE -O2 -fno-jump-tables -fPIE)
target_link_options(cfg_sample PRIVATE -pie -Wl,--emit-relocs)

ocolos_unit_test(hybrid test_hybrid)
ocolos_unit_test(cfg_x86 test_cfg_x86 ARGS $<TARGET_FILE:cfg_sample> $<TARGET_FILE:unit_fixture>)
target_include_directories(test_cfg_x86 PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
ocolos_unit_test(hybrid_bolt test_hybrid_bolt ARGS $<TARGET_FILE:unit_fixture> ${OCOLOS_TEST_BOLT})

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
  ocolos_unit_test(cfg_aarch64 test_cfg_aarch64 TIMEOUT 60 ARGS ${_cs64})
  target_include_directories(test_cfg_aarch64 PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
else()
  message(STATUS "aarch64-linux-gnu-gcc not found: unit.cfg_aarch64 skipped")
endif()

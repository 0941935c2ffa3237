# ocolos-bam's memory check (tools/bam/memory.c): MemAvailable and the
# memory cgroups' limits, read from fixture trees of /proc and /sys.
if(OCOLOS_BUILD_TOOLS)
  add_executable(test_bam_memory test_bam_memory.c fixture_tree.c ${PROJECT_SOURCE_DIR}/tools/bam/memory.c
    ${PROJECT_SOURCE_DIR}/tools/bam/cgroup.c)
  target_include_directories(test_bam_memory PRIVATE ${PROJECT_SOURCE_DIR}/tools)
  target_compile_options(test_bam_memory PRIVATE ${_unit_flags})
  target_compile_definitions(test_bam_memory PRIVATE _GNU_SOURCE)
  target_link_libraries(test_bam_memory PRIVATE ocolos_test_check)
  add_test(NAME unit.bam_memory COMMAND test_bam_memory)
  set_tests_properties(unit.bam_memory PROPERTIES LABELS unit TIMEOUT 30)
endif()

# ocolos-bam's idle-CPU check (tools/bam/cpu.c): /proc/stat over our own
# CPUs and the cgroup v2 CPU quotas, read from fixture trees.
if(OCOLOS_BUILD_TOOLS)
  add_executable(test_bam_cpu test_bam_cpu.c fixture_tree.c ${PROJECT_SOURCE_DIR}/tools/bam/cpu.c
    ${PROJECT_SOURCE_DIR}/tools/bam/cgroup.c)
  target_include_directories(test_bam_cpu PRIVATE ${PROJECT_SOURCE_DIR}/tools)
  target_compile_options(test_bam_cpu PRIVATE ${_unit_flags})
  target_compile_definitions(test_bam_cpu PRIVATE _GNU_SOURCE)
  target_link_libraries(test_bam_cpu PRIVATE ocolos_test_check)
  add_test(NAME unit.bam_cpu COMMAND test_bam_cpu)
  set_tests_properties(unit.bam_cpu PROPERTIES LABELS unit TIMEOUT 30)
endif()

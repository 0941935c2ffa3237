# Debian packages with CPack: `cpack -G DEB` in a build directory gives
#   libocolos0     the shared library                       (component lib)
#   libocolos-dev  header, libocolos.so, libocolos.a, CMake config,
#                  pkg-config, libocolos(3)                 (component dev)
#   ocolos-tools   ocolos-agent, ocolos-supervise, their man pages, gdb's
#                  ocolos-symbols                           (component tools)
# Configure with -DCMAKE_INSTALL_PREFIX=/usr so that GNUInstallDirs picks
# Debian's multiarch library directory (lib/x86_64-linux-gnu); the packages
# install under /usr in any case. Dependencies: shared libraries through
# dpkg-shlibdeps (dpkg-dev), the rest declared here. What a program
# linking the static archive also needs is only suggested: a program that
# links the shared library needs libocolos0 and libocolos-dev and nothing
# else (tests/consumer/run.sh, deb mode, checks it).
set(CPACK_PACKAGE_NAME ocolos)
set(CPACK_PACKAGE_VENDOR "libocolos")
set(CPACK_PACKAGE_CONTACT "libocolos maintainers <libocolos@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "online code layout optimization of running native programs (LLVM BOLT)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL lib dev)
if(OCOLOS_BUILD_TOOLS)
  list(APPEND CPACK_COMPONENTS_ALL tools)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# CPack asks dpkg for the architecture, which is the build machine's; a
# cross build (cmake/aarch64-toolchain.cmake) packages for its target.
if(CMAKE_CROSSCOMPILING AND CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
endif()
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The tools link libocolos.so.0 of the lib component, which dpkg-shlibdeps
# must find in that component's staging tree: a path known only when cpack
# runs (`cpack -B DIR` moves it), so it is set then, by
# cmake/packaging-cpack.cmake. The dependency on the package itself is
# declared below (component dependencies).
set(OCOLOS_CPACK_LIBDIR ${CMAKE_INSTALL_LIBDIR})
configure_file(${CMAKE_CURRENT_LIST_DIR}/packaging-cpack.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/ocolos-cpack.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_BINARY_DIR}/ocolos-cpack.cmake)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libocolos${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIB_PACKAGE_GENERATE_SHLIBS ON)
# llvm-bolt does the layout (any with --custom-allocation-vma may be
# configured, so not a hard dependency); libunwind is loaded with dlopen
# for the stacks of a process optimized by pid.
set(CPACK_DEBIAN_LIB_PACKAGE_RECOMMENDS "bolt-22, libunwind8")
set(CPACK_DEBIAN_LIB_PACKAGE_SUGGESTS "linux-perf, gdb")
set(CPACK_COMPONENT_LIB_DESCRIPTION
  "online code layout optimization of running native programs (LLVM BOLT)
 libocolos samples a running program, has LLVM BOLT re-lay out its hot code
 for an address range reserved in the process, maps the optimized code
 beside the original and redirects calls into it, without a restart.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libocolos-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "libelf-dev, libzydis-dev, libpfm4-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "online code layout optimization (development files)
 Header, CMake config (find_package(ocolos), ocolos_prepare_executable()),
 pkg-config file and the static archive of libocolos. Linking the static
 archive also needs libelf-dev, libzydis-dev and libpfm4-dev.")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME ocolos-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION devel)
set(CPACK_COMPONENT_TOOLS_DEPENDS lib)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SUGGESTS "gdb, linux-perf")
set(CPACK_COMPONENT_TOOLS_DESCRIPTION
  "optimize running programs by pid: ocolos-agent, ocolos-supervise
 ocolos-agent optimizes a running process by pid; ocolos-supervise starts a
 program and optimizes it after a warm-up. Also gdb's ocolos-symbols
 command for the optimized code of such processes.")

include(CPack)

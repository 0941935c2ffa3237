# Cross build for AArch64 Linux with Debian's cross toolchain
# (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu) and multiarch arm64
# libraries (libelf-dev:arm64, zlib1g-dev:arm64, libpfm4-dev:arm64):
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake \
#         -DBUILD_TESTING=ON
#   cd build-aarch64 && ctest           # runs every test under qemu-aarch64
#
# Tests run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR). The guest's
# dynamic loader and libc are the multiarch ones in /lib/aarch64-linux-gnu
# (QEMU_LD_PREFIX /): libelf1:arm64 pulls libc6:arm64 in, and mixing it
# with the cross toolchain's own loader in /usr/aarch64-linux-gnu (a
# different Debian revision of glibc) hangs in pthread_create.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Find programs on the host, libraries and headers for the target only.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# pkg-config: the arm64 .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

find_program(OCOLOS_QEMU_AARCH64 qemu-aarch64)
if(OCOLOS_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${OCOLOS_QEMU_AARCH64} -L /)
endif()

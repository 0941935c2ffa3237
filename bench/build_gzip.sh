#!/usr/bin/env bash
# Fetch gzip from Debian's sources and build it for the benchmarks (a second
# real program for bench/edge_accuracy.sh), non-PIE, with the flags libocolos
# needs: -O2 -fno-jump-tables -Wl,--emit-relocs.
#
# usage: bench/build_gzip.sh            -> bench/out/gzip/gzip
# env:   GZ_OUT (default bench/out/gzip)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${GZ_OUT:-$root/bench/out/gzip}
log() { echo "build_gzip: $*" >&2; }
# shellcheck source=bench/debsrc.sh
. "$here/debsrc.sh"

mkdir -p "$out/src"
src=$(find "$out/src" -maxdepth 1 -type d -name 'gzip-*' | sort | tail -1)
if [[ -z $src ]]; then
	ensure_sources
	command -v dpkg-source >/dev/null || as_root apt-get install -y -q dpkg-dev
	(cd "$out/src" && apt-get source -q gzip 2>&1 | tail -2) >&2
	src=$(find "$out/src" -maxdepth 1 -type d -name 'gzip-*' | sort | tail -1)
	[[ -n $src ]] || { log "apt-get source gzip produced no source tree"; exit 1; }
fi
cd "$src"
[[ -f Makefile ]] || ./configure -q CFLAGS="-O2 -fno-jump-tables -fno-pie" \
	LDFLAGS="-no-pie -Wl,--emit-relocs" >/dev/null
# The tarball's timestamps would make make re-run autotools: don't.
make -j"$(nproc)" -s ACLOCAL=true AUTOCONF=true AUTOMAKE=true AUTOHEADER=true \
	MAKEINFO=true >/dev/null
cp gzip "$out/gzip"
log "$out/gzip"

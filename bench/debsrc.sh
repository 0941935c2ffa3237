# Sourced by the bench build scripts that fetch Debian source packages
# (build_sqlite.sh, build_gzip.sh): root helper and deb-src entries.
# The caller defines log().

as_root() {
	if [[ $(id -u) == 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		log "need root for: $*"
		exit 1
	fi
}

# have_deb_src: is there any deb-src entry for Debian main?
have_deb_src() {
	# -q: exit 0 on the first match even if some glob matched no file.
	grep -qsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list \
		/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

ensure_sources() {
	if have_deb_src; then
		return
	fi
	local f=/etc/apt/sources.list.d/ocolos-bench-src.sources
	log "adding deb-src entries in $f"
	if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
		sed 's/^Types: deb$/Types: deb-src/' \
			/etc/apt/sources.list.d/debian.sources | as_root tee "$f" >/dev/null
	elif [[ -f /etc/apt/sources.list ]]; then
		f=/etc/apt/sources.list.d/ocolos-bench-src.list
		sed -n 's/^deb /deb-src /p' /etc/apt/sources.list |
			as_root tee "$f" >/dev/null
	else
		log "no Debian apt sources found to derive deb-src from"
		exit 1
	fi
	as_root apt-get update -q
}


# Debian's lua5.4 patches luaconf.h to include a header its debian/rules
# writes (the multiarch triplet, for module paths); a build from the
# unpacked source without the rules (bam_lua.sh, bam_luainterp.sh) writes it
# the same way, so no liblua5.4-dev is needed. lua_multiarch_header SRC_DIR
lua_multiarch_header() {
	local h=$1/lua5.4-deb-multiarch.h
	[[ -f $h ]] && return 0
	printf '#ifndef _LUA_DEB_MULTIARCH_\n#define _LUA_DEB_MULTIARCH_\n#define DEB_HOST_MULTIARCH "%s"\n#endif\n' \
		"$(gcc -print-multiarch)" >"$h"
}

#!/bin/sh
# What the two libraries export, derived from lib/libocolos.map and the
# public headers (today's and 0.1's), compared with what is in the files.
#
# libocolos.a (nm): it defines the calls of include/ocolos/ocolos.h and no
# other global symbol (its internals are made local when its objects are
# linked into one), and none of those calls is left undefined in it.
#
# libocolos.so (readelf --dyn-syms): its defined symbols are exactly
#   name@@OCOLOS_0.2  for each name of the map's OCOLOS_0.2 node;
#   name@OCOLOS_0.1   for each name of the OCOLOS_0.1 node that is in the
#                     0.2 node too (the 0.1 call kept for old programs),
#                     or in no header of today (a 0.1 call that 0.2
#                     dropped: old programs only);
#   name@@OCOLOS_0.1  for the other names of the 0.1 node (unchanged since
#                     0.1: one definition, default version 0.1);
# besides the version nodes' own symbols (OCOLOS_0.1, ABS). And, against the headers: every
# call of today's header has a default (@@) version, every call of the
# 0.1 header an OCOLOS_0.1 version.
#
# Usage: abi_symbols.sh NM READELF LIBA LIBSO MAP HEADER HEADER01
set -u
LC_ALL=C
export LC_ALL
nm=$1 readelf=$2 liba=$3 libso=$4 map=$5 header=$6 header01=$7
status=0
fail() { echo "FAIL: $*" >&2; status=1; }
calls_of() { sed -n 's/^OCOLOS_API[^(]*[ *]\(ocolos_[a-z_0-9]*\)(.*/\1/p' "$1" | sort -u; }
# Names of a node of the map (comments stripped; global: part only).
node() {
	sed 's,/\*.*\*/,,; /\/\*/,/\*\//d' "$map" | awk -v want="$1" '
		$1 == want && $2 == "{" { in_node = 1; global = 0; next }
		in_node && /^[ \t]*}/ { in_node = 0 }
		in_node && /global:/ { global = 1; next }
		in_node && /local:/ { global = 0; next }
		in_node && global { gsub(/[ \t;]/, ""); if ($0 != "") print }' | sort -u
}

calls=$(calls_of "$header")
calls01=$(calls_of "$header01")
v01=$(node OCOLOS_0.1)
v02=$(node OCOLOS_0.2)
[ -n "$calls" ] && [ -n "$calls01" ] && [ -n "$v01" ] && [ -n "$v02" ] ||
	{ echo "FAIL: cannot read the headers or the map" >&2; exit 1; }

# ---- static archive
defined=$("$nm" -g --defined-only "$liba" | awk 'NF == 3 { print $3 }' | sort)
if [ "$defined" != "$calls" ]; then
	echo "libocolos.a defines (global):" >&2
	echo "$defined" >&2
	fail "libocolos.a's global symbols are not exactly the calls of $header"
fi
undef=$("$nm" -u "$liba" | awk '$1 == "U" && $2 ~ /^ocolos_/ { print $2 }')
[ -z "$undef" ] || fail "libocolos.a leaves its own calls undefined: $undef"

# ---- shared library
want=$({
	for n in $v02; do echo "$n@@OCOLOS_0.2"; done
	for n in $v01; do
		if echo "$v02" | grep -qx "$n" || ! echo "$calls" | grep -qx "$n"; then
			echo "$n@OCOLOS_0.1"
		else
			echo "$n@@OCOLOS_0.1"
		fi
	done
} | sort)
got=$("$readelf" --dyn-syms -W "$libso" |
	awk '$7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK") && $8 !~ /^OCOLOS_[0-9.]+(@@OCOLOS_[0-9.]+)?$/ { print $8 }' |
	sort)
if [ "$got" != "$want" ]; then
	echo "libocolos.so exports:" >&2
	echo "$got" >&2
	echo "the map says:" >&2
	echo "$want" >&2
	fail "libocolos.so's exports differ from $map"
fi
for c in $calls; do
	echo "$got" | grep -qx "$c@@OCOLOS_0\.[0-9]*" ||
		fail "$c (today's header) has no default version in libocolos.so"
done
for c in $calls01; do
	echo "$got" | grep -Eqx "$c@@?OCOLOS_0\.1" ||
		fail "$c (the 0.1 header) has no OCOLOS_0.1 version in libocolos.so"
done
echo "libocolos.a: $(echo "$defined" | wc -l) symbols; libocolos.so: $(echo "$got" | wc -l) versioned exports" >&2
exit $status

#!/usr/bin/env bash
# A real AArch64 Linux kernel to test on (issue 14): qemu-system-aarch64
# (TCG; no KVM here) boots Debian 12's arm64 kernel with an initramfs made
# of Debian arm64 packages (the libraries libocolos and its tests need,
# bolt-19, busybox, strace), and the repository shared in over 9p at the
# same absolute path, so cross-built binaries under build directories run
# in place.
#
#   scripts/a64vm.sh build              build the guest image for the current
#                                       inputs (nothing when it exists)
#   scripts/a64vm.sh run CMD [ARGS...]  boot, run CMD as root in the guest with
#                                       the repository root as working
#                                       directory, pass its stdout/stderr
#                                       through, power off, exit with its code
#
# Exit codes of the script itself: 77 the guest cannot be built or started
# here (a tool or the arm64 package lists missing, a download failed), 124
# the guest did not finish within A64VM_TIMEOUT, 125 the guest failed before
# CMD could report (boot, modules, mounts). Those messages start "a64vm:".
#
# The image is built once per set of inputs (the functions that assemble
# it, the guest's init, the kernel package, the exact .deb files apt
# resolves) under
#   ${A64VM_CACHE:-~/.cache/ocolos-a64vm}/<hash>/
# with downloaded .debs in .../debs. Nothing is written to the checkout.
#
# Environment:
#   A64VM_KERNEL   kernel package (default linux-image-arm64: Debian 12's 6.1,
#                  4 KiB pages; linux-image-6.12-arm64-16k boots 16 KiB pages;
#                  Debian 12 has no 64 KiB-page arm64 kernel)
#   A64VM_SMP      guest CPUs (default 2)     A64VM_MEM  MiB of RAM (2048)
#   A64VM_TIMEOUT  seconds for a whole run (default 3600)
#   A64VM_CONSOLE  1: show the guest's console (kernel log) on stderr
#   A64VM_NICE     niceness of qemu (default 5: the machine is shared)
#   A64VM_SKIP     when set, `run` exits 77 at once saying it skipped, and why
#                  (its value): scripts/test.sh sets it when the image cannot
#                  be built or the guest is skipped on purpose, so ctest
#                  reports the guest tests as skipped, never as passed
# stdin is not passed in; environment variables are not passed in (use
# `run env NAME=VALUE CMD`).
set -euo pipefail

EX_CANNOT=77 EX_TIMEOUT=124 EX_GUEST=125
# What the guest needs at run time: the libraries libocolos links
# (libelf1, zlib1g, libpfm4), libunwind8 (libunwind-ptrace, loaded by the
# ptrace target), the C++ runtime of the tests, bolt-19 (the BOLT that
# handles AArch64 inputs), busybox-static (init and shell), strace.
PACKAGES=(libc6 libgcc-s1 libstdc++6 zlib1g libelf1 libpfm4 libunwind8 bolt-19
	  busybox-static strace)
# Kernel modules the init loads (their dependencies are found from the
# modules themselves; built-in ones are skipped): PCI virtio, the 9p
# shares, the stdout/stderr ports.
MODULES=(virtio_pci 9pnet_virtio 9p virtio_console)

die() { local rc=$1; shift; echo "a64vm: $*" >&2; exit "$rc"; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cache=${A64VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocolos-a64vm}
kernel_pkg=${A64VM_KERNEL:-linux-image-arm64}

need_tools() {
	local t missing=()
	for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
	[ ${#missing[@]} -eq 0 ] ||
		die $EX_CANNOT "missing ${missing[*]}; install them (Debian: apt-get install" \
			"qemu-system-arm cpio xz-utils)"
}

# The guest's /init (busybox sh, PID 1). It mounts the run directory
# (a64run: cmd.sh, repo, and where rc goes) and the repository (a64repo)
# at the path in `repo`, runs cmd.sh there with stdout and stderr on the
# virtio ports named a64.stdout / a64.stderr, writes the exit code to rc
# and powers off. Any failure before that is written to `error`.
read -r -d '' GUEST_INIT <<'EOF' || true
#!/bin/busybox sh
bb=/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.a64vm/bin
export HOME=/root LANG=C TERM=dumb
run=/.a64vm/run
fail() {
	echo "a64vm guest: $*" >/dev/console
	[ -d $run ] && echo "$*" >$run/error
	$bb sync
	$bb poweroff -f
}
$bb mkdir -p /proc /sys /dev /tmp /run /root /.a64vm/bin $run
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts
$bb mount -t tmpfs tmpfs /dev/shm
$bb mount -t tmpfs tmpfs /tmp
$bb --install -s /.a64vm/bin
# Under TCG a perf interrupt takes ~100x longer than on hardware, and the
# kernel keeps lowering perf_event_max_sample_rate (to ~1 kHz within a
# round), after which a 2 kHz perf_event_open fails with EINVAL. That is
# emulation, not what a real AArch64 machine does: no such throttling here.
echo 0 >/proc/sys/kernel/perf_cpu_time_max_percent
for m in $($bb cat /.a64vm/modules.order); do
	$bb insmod /.a64vm/modules/$m || fail "insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=524288
$bb mount -t 9p -o $opts,cache=none a64run $run || fail "cannot mount the run directory"
repo=$($bb cat $run/repo)
$bb mkdir -p "$repo" && $bb mount -t 9p -o $opts,cache=mmap a64repo "$repo" ||
	fail "cannot mount the repository at $repo"
out= err=
for p in /sys/class/virtio-ports/*; do
	case $($bb cat $p/name 2>/dev/null) in
	a64.stdout) out=/dev/${p##*/} ;;
	a64.stderr) err=/dev/${p##*/} ;;
	esac
done
[ -n "$out" ] && [ -n "$err" ] || fail "no stdout/stderr ports"
cd "$repo" || fail "cannot cd to $repo"
$bb sh $run/cmd.sh </dev/null >"$out" 2>"$err"
echo $? >$run/rc
$bb sync
$bb poweroff -f
EOF

# ---- the image's inputs and their hash --------------------------------------

# apt-cache depends of PACKAGE:arm64..., Depends/Pre-Depends, first
# alternative: prints "pkg dep" pairs.
deps_of() {
	apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "${@/%/:arm64}" |
	awk '/^[^ ]/ { p = $1; sub(/:arm64$/, "", p); alt = 0; next }
	     /^ *\|?(Pre)?Depends:/ {
		d = $2; first = !alt; alt = ($1 ~ /^\|/)
		if (!first || d ~ /^</) next
		sub(/:arm64$/, "", d); print p, d }'
}

# The closure of PACKAGES over their dependencies, one name a line.
resolve_packages() {
	local -A seen=()
	local frontier=("${PACKAGES[@]}") next p d
	for p in "${frontier[@]}"; do seen[$p]=1; done
	while [ ${#frontier[@]} -gt 0 ]; do
		next=()
		while read -r p d; do
			[ -n "${seen[$d]:-}" ] && continue
			seen[$d]=1
			next+=("$d")
		done < <(deps_of "${frontier[@]}")
		frontier=("${next[@]}")
	done
	printf '%s\n' "${!seen[@]}" | LC_ALL=C sort
}

# The kernel image package behind kernel_pkg (a meta-package depends on it).
resolve_kernel() {
	local k
	k=$(deps_of "$kernel_pkg" | awk '$2 ~ /^linux-image-/ { print $2; exit }')
	echo "${k:-$kernel_pkg}"
}

# Sets pkgs, kpkg, uris (apt's "'URI' file size SHA256:..." lines) and key.
# apt-cache takes seconds per call on a busy machine, so the resolution is
# kept in $cache/resolved/, keyed by the state of apt's package lists.
compute_inputs() {
	need_tools apt-cache apt-get dpkg-deb cpio xz qemu-system-aarch64 flock sha256sum
	dpkg --print-foreign-architectures | grep -qx arm64 ||
		die $EX_CANNOT "apt has no arm64 architecture: dpkg --add-architecture arm64 &&" \
			"apt-get update"
	local state saved
	state=$( { echo "$kernel_pkg ${PACKAGES[*]}"; declare -f deps_of resolve_packages
		   stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* /var/lib/dpkg/arch \
			/etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; } |
		 sha256sum | cut -c1-16)
	saved=$cache/resolved/$state
	if [ -s "$saved" ]; then
		{ read -r kpkg; read -r -a pkgs; uris=$(cat); } <"$saved"
	else
		mapfile -t pkgs < <(resolve_packages)
		kpkg=$(resolve_kernel)
		uris=$(apt-get download --print-uris "${pkgs[@]/%/:arm64}" "$kpkg:arm64" 2>&1) ||
			die $EX_CANNOT "apt cannot resolve the arm64 packages (apt-get update?):" \
				"$(printf '%s\n' "$uris" | tail -3)"
		mkdir -p "$cache/resolved"
		printf '%s\n%s\n%s\n' "$kpkg" "${pkgs[*]}" "$uris" >"$saved.$$"
		mv "$saved.$$" "$saved"
	fi
	# The recipe: the functions that assemble the image, as bash prints them.
	key=$( { declare -f install_modules build_image; echo "kernel $kpkg"
		 printf '%s\n' "${MODULES[@]}"
		 printf '%s\n' "$GUEST_INIT"; printf '%s\n' "$uris" | awk '{ print $2, $4 }' |
		 LC_ALL=C sort; } | sha256sum | cut -c1-16)
	image=$cache/$key
}

# ---- building ----------------------------------------------------------------

# Download every .deb of `uris` into $cache/debs (kept across images).
download_debs() {
	local debs=$cache/debs file sum want=()
	mkdir -p "$debs"
	while read -r _ file _ sum; do
		[ -f "$debs/$file" ] && [ "$(sha256sum <"$debs/$file" | cut -d' ' -f1)" = "${sum#SHA256:}" ] ||
			want+=("$file")
	done <<<"$uris"
	[ ${#want[@]} -eq 0 ] && return
	echo "a64vm: downloading ${#want[@]} arm64 packages" >&2
	(cd "$debs" && apt-get -q -o APT::Sandbox::User=root download "${pkgs[@]/%/:arm64}" \
		"$kpkg:arm64" >/dev/null) || die $EX_CANNOT "downloading the arm64 packages failed"
}

deb_file() { printf '%s\n' "$uris" | awk -v p="$1" '{ split($2, a, "_") } a[1] == p { print $2 }'; }

# Copy MODULES and their dependencies from the kernel tree $1 to
# $2/.a64vm/modules, decompressed, and list them in load order. A module
# built into the kernel (modules.builtin: 6.12 has virtio_pci and
# virtio_console built in) is skipped.
install_modules() {
	local kroot=$1 root=$2 f name
	local -A path=() done=()
	while IFS= read -r f; do
		name=${f##*/}; name=${name%%.ko*}; name=${name//-/_}
		path[$name]=$f
	done < <(find "$kroot/lib/modules" -name '*.ko*')
	while IFS= read -r f; do
		name=${f##*/}; name=${name%%.ko*}; name=${name//-/_}
		done[$name]=builtin
	done < <(cat "$kroot"/lib/modules/*/modules.builtin 2>/dev/null)
	mkdir -p "$root/.a64vm/modules"
	: >"$root/.a64vm/modules.order"
	add_module() {
		local m=$1 f dep deps
		[ -n "${done[$m]:-}" ] && return
		f=${path[$m]:-}
		[ -n "$f" ] || die $EX_CANNOT "kernel module $m not found in $kpkg"
		case $f in
		*.ko.xz) xz -dc "$f" >"$root/.a64vm/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$root/.a64vm/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$f" >"$root/.a64vm/modules/$m.ko" ;;
		*) cp "$f" "$root/.a64vm/modules/$m.ko" ;;
		esac
		deps=$(tr '\0' '\n' <"$root/.a64vm/modules/$m.ko" | sed -n 's/^depends=//p' | head -1)
		for dep in ${deps//,/ }; do add_module "${dep//-/_}"; done
		done[$m]=1
		echo "$m.ko" >>"$root/.a64vm/modules.order"
	}
	for f in "${MODULES[@]}"; do add_module "$f"; done
}

build_image() {
	[ -f "$image/ok" ] && return
	mkdir -p "$cache"
	exec 9>"$cache/lock"
	flock 9
	[ -f "$image/ok" ] && { exec 9>&-; return; }
	download_debs
	local tmp=$image.tmp.$$ p f kver
	rm -rf "$tmp"
	mkdir -p "$tmp/root" "$tmp/kernel"
	trap 'rm -rf "$tmp"' EXIT
	for p in "${pkgs[@]}"; do
		f=$(deb_file "$p")
		[ -n "$f" ] || die $EX_CANNOT "no .deb for $p"
		dpkg-deb -x "$cache/debs/$f" "$tmp/root"
	done
	dpkg-deb -x "$cache/debs/$(deb_file "$kpkg")" "$tmp/kernel"
	f=$(ls "$tmp/kernel/boot/"vmlinuz-* 2>/dev/null | head -1)
	[ -n "$f" ] || die $EX_CANNOT "$kpkg has no /boot/vmlinuz-*"
	kver=${f##*/vmlinuz-}
	cp "$f" "$tmp/Image"
	install_modules "$tmp/kernel" "$tmp/root"
	rm -rf "$tmp/root/usr/share/"{doc,man,info,locale,lintian,bug}
	printf '%s\n' "$GUEST_INIT" >"$tmp/root/init"
	chmod 755 "$tmp/root/init"
	mkdir -p "$tmp/root/etc"
	echo 'root:x:0:0:root:/root:/bin/sh' >"$tmp/root/etc/passwd"
	echo 'root:x:0:' >"$tmp/root/etc/group"
	ln -sf /bin/busybox "$tmp/root/bin/sh"
	(cd "$tmp/root" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --owner=0:0 --quiet) >"$tmp/initrd.cpio"
	{ echo "kernel $kpkg $kver"; printf '%s\n' "$uris" | awk '{ print $2 }'; } >"$tmp/manifest"
	rm -rf "$tmp/root" "$tmp/kernel"
	touch "$tmp/ok"
	rm -rf "$image"
	mv "$tmp" "$image"
	trap - EXIT
	exec 9>&-
	echo "a64vm: image $image ($kver, initramfs $(du -m "$image/initrd.cpio" | cut -f1) MiB)" >&2
}

# ---- running -----------------------------------------------------------------

# Quote one argument for sh.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

work='' qpid='' opid='' epid=''
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null
	[ -n "$opid" ] && kill "$opid" 2>/dev/null
	[ -n "$epid" ] && kill "$epid" 2>/dev/null
	[ -n "$work" ] && rm -rf "$work"
}

run_guest() {
	local rc=0 a cmd="exec"
	work=$(mktemp -d "${TMPDIR:-/tmp}/a64vm.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	mkdir "$work/share"
	for a in "$@"; do cmd+=" $(shquote "$a")"; done
	printf '%s\n' "$cmd" >"$work/share/cmd.sh"
	printf '%s\n' "$repo" >"$work/share/repo"
	mkfifo "$work/stdout" "$work/stderr"
	cat "$work/stdout" & opid=$!
	cat "$work/stderr" >&2 & epid=$!
	local console=$work/console.log
	[ "${A64VM_CONSOLE:-0}" = 1 ] && console=/dev/stderr
	local fs=security_model=none
	nice -n "${A64VM_NICE:-5}" timeout -k 5 "${A64VM_TIMEOUT:-3600}" qemu-system-aarch64 \
		-M virt -cpu max,pauth-impdef=on -smp "${A64VM_SMP:-2}" -m "${A64VM_MEM:-2048}" \
		-nodefaults -display none -no-reboot \
		-chardev file,id=con,path="$console",append=on -serial chardev:con \
		-kernel "$image/Image" -initrd "$image/initrd.cpio" \
		-append "console=ttyAMA0 quiet panic=-1 rdinit=/init" \
		-fsdev local,id=run,path="$work/share",$fs \
		-device virtio-9p-pci,fsdev=run,mount_tag=a64run \
		-fsdev local,id=repo,path="$repo",$fs \
		-device virtio-9p-pci,fsdev=repo,mount_tag=a64repo \
		-device virtio-serial-pci \
		-chardev file,id=out,path="$work/stdout" \
		-device virtserialport,chardev=out,name=a64.stdout \
		-chardev file,id=err,path="$work/stderr" \
		-device virtserialport,chardev=err,name=a64.stderr \
		</dev/null &
	qpid=$!
	wait "$qpid" || rc=$?
	qpid=''
	wait "$opid" "$epid" 2>/dev/null || true
	opid='' epid=''
	if [ -f "$work/share/rc" ]; then
		return "$(cat "$work/share/rc")"
	fi
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo "a64vm: the guest did not finish within ${A64VM_TIMEOUT:-3600} s" \
			"(A64VM_TIMEOUT); console:" >&2
		rc=$EX_TIMEOUT
	else
		echo "a64vm: the guest stopped without running the command" \
			"(qemu exit $rc)${work:+: $(cat "$work/share/error" 2>/dev/null)}; console:" >&2
		rc=$EX_GUEST
	fi
	tail -20 "$work/console.log" >&2 2>/dev/null || true
	return $rc
}

case ${1:-} in
build)
	compute_inputs
	build_image
	echo "a64vm: $image" >&2
	;;
run)
	shift
	[ $# -gt 0 ] || die 2 "usage: $0 run CMD [ARGS...]"
	[ -z "${A64VM_SKIP:-}" ] || die $EX_CANNOT "skipped, not run: $A64VM_SKIP"
	compute_inputs
	build_image
	run_guest "$@"
	;;
*)
	echo "usage: $0 build | run CMD [ARGS...]" >&2
	exit 2
	;;
esac

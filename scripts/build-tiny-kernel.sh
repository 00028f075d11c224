#!/usr/bin/env bash
# Build the tiny guest for VMs inside the lab (docs/lab.md, "The tiny guest").
#
#   scripts/build-tiny-kernel.sh OUTDIR [SOURCE_TARBALL]
#
# Kernel: `make tinyconfig` of linux-source-6.12, the fragment qtagent/lab/tiny-kernel.config
# merged over it, `make olddefconfig`, then `make bzImage`. Init: qtagent/lab/tinyguest-init.c,
# freestanding. Writes OUTDIR/tiny-bzImage, OUTDIR/tiny-kernel.config (the full .config
# used), OUTDIR/tiny-init and OUTDIR/tiny-build.log. Refuses to install a kernel whose
# .config lost a line of the fragment (a dependency Kconfig did not resolve).
# The build tree is temporary (QTAGENT_TINY_BUILD_DIR=DIR keeps it, for debugging).
set -euo pipefail

die() { printf 'build-tiny-kernel: error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '  hint: %s\n' "$2" >&2; exit 1; }
note() { printf '    %s\n' "$*" >&2; }

[ $# -ge 1 ] || die "usage: $0 OUTDIR [SOURCE_TARBALL]"
out=$1
tarball=${2:-/usr/src/linux-source-6.12.tar.xz}
repo=$(cd "$(dirname "$0")/.." && pwd)
fragment=$repo/qtagent/lab/tiny-kernel.config
init_c=$repo/qtagent/lab/tinyguest-init.c
jobs=${QTAGENT_TINY_JOBS:-$(nproc)}

[ -f "$tarball" ] || die "kernel source $tarball is missing" "install linux-source-6.12 (make setup does)"
[ -f "$fragment" ] || die "config fragment $fragment is missing"
for tool in gcc make flex bison bc lz4; do
    command -v "$tool" >/dev/null || die "$tool is not installed" "make setup installs the kernel build tools"
done
[ -f /usr/include/libelf.h ] || die "libelf-dev is not installed (objtool needs it)" "make setup installs it"

if [ -n "${QTAGENT_TINY_BUILD_DIR:-}" ]; then
    mkdir -p "$QTAGENT_TINY_BUILD_DIR"
    QTAGENT_TINY_BUILD_DIR=$(cd "$QTAGENT_TINY_BUILD_DIR" && pwd)
    build=$QTAGENT_TINY_BUILD_DIR
else
    build=$(mktemp -d /var/tmp/qtagent-tiny-kernel.XXXXXX)
    trap 'rm -rf "$build"' EXIT
fi
mkdir -p "$out"
log=$out/tiny-build.log  # outside the build tree: it must survive a failed build
: >"$log"
src=$build/linux-source-6.12
started=$(date +%s)

if [ ! -f "$src/Makefile" ]; then
    note "unpacking $(basename "$tarball") (without Documentation/*/: Kconfig only reads Documentation/Kconfig)"
    tar -xJf "$tarball" -C "$build" --exclude='linux-source-6.12/Documentation/*/*' \
        || die "could not unpack $tarball" "is the disk full? (about 1.6 GB are needed)"
fi
unpacked=$(date +%s)

note "configuring: tinyconfig + $(basename "$fragment")"
{ make -C "$src" tinyconfig \
    && "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment" \
    && make -C "$src" olddefconfig; } >>"$log" 2>&1 || { tail -20 "$log" >&2; die "configuring the kernel failed" "see $log"; }

# Every line of the fragment must be in the final .config, in the same form.
missing=$(grep -E '^(CONFIG_|# CONFIG_)' "$fragment" | while IFS= read -r line; do
    if [[ $line == "# "* ]]; then
        name=${line#\# }; name=${name%% *}
        if grep -q "^$name=" "$src/.config"; then echo "$line"; fi
    elif ! grep -qxF "$line" "$src/.config"; then
        echo "$line"
    fi
done)
[ -z "$missing" ] || die "the kernel's .config does not have: $(echo $missing)" \
    "a dependency is off: look it up with 'make menuconfig' in a kept tree (QTAGENT_TINY_BUILD_DIR)"

note "make -j$jobs bzImage (a few minutes; log: $log)"
make -C "$src" -j"$jobs" bzImage >>"$log" 2>&1 \
    || { grep -E 'error|Error' "$log" | tail -20 >&2; die "building the tiny kernel failed" "see $log"; }
built=$(date +%s)

note "gcc tinyguest-init.c (static, no libc)"
gcc -Os -static -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector \
    -fno-asynchronous-unwind-tables -Wall -Wextra -Werror -Wl,--build-id=none -s \
    -o "$build/tiny-init" "$init_c" >>"$log" 2>&1 \
    || { tail -20 "$log" >&2; die "building $init_c failed" "see $log"; }

for f in "$src/.config:tiny-kernel.config:0644" "$src/arch/x86/boot/bzImage:tiny-bzImage:0644" \
         "$build/tiny-init:tiny-init:0755"; do
    IFS=: read -r from name mode <<<"$f"
    install -m "$mode" "$from" "$out/.$name.tmp" && mv "$out/.$name.tmp" "$out/$name"
done
note "built $out/tiny-bzImage ($(stat -c %s "$out/tiny-bzImage") bytes):" \
    "unpack $((unpacked - started)) s, configure + build $((built - unpacked)) s"

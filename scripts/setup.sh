#!/usr/bin/env bash
# qtagent set-up: everything a fresh Debian 12 machine needs for the lab and the tests.
# Idempotent: a second run checks and skips (a few seconds). Progress goes to stderr.
#
#   scripts/setup.sh            all of it
#   QTAGENT_LAB_CACHE=DIR ...   cache elsewhere than /var/lib/qtagent-lab
#
# What it installs and why is in README.md ("What setup installs") and docs/lab.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QTAGENT_LAB_CACHE:-/var/lib/qtagent-lab}
venv=${QTAGENT_VENV:-$repo/.venv}
export DEBIAN_FRONTEND=noninteractive

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '  hint: %s\n' "$2" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "setup must run as root (it installs Debian packages and a kernel)" \
    "run it with sudo, or as root in the lab VM"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || die "setup supports Debian 12 (bookworm); this is ${PRETTY_NAME:-unknown}" \
    "use a Debian 12 machine or the Vagrant box in vagrant/"

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        note "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed" "check the machine reaches Debian's package mirrors"
        apt_updated=1
    fi
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_install() {  # apt_install [-t SUITE] PKG...
    local suite=()
    if [ "$1" = -t ]; then suite=(-t "$2"); shift 2; fi
    local missing=()
    for p in "$@"; do installed "${p%%=*}" || missing+=("$p"); done
    [ ${#missing[@]} = 0 ] && return 0
    apt_update
    note "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${suite[@]}" "${missing[@]}" >/tmp/qtagent-setup-apt.log 2>&1 \
        || { tail -20 /tmp/qtagent-setup-apt.log >&2; die "could not install: ${missing[*]}" \
             "see /tmp/qtagent-setup-apt.log; the package may have left the archive"; }
}

step "Debian bookworm-backports (QEMU 10 with the igb SR-IOV NIC, libvirt 11)"
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/qtagent-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    note "added /etc/apt/sources.list.d/qtagent-backports.sources"
fi

step "System packages"
# udev comes from backports too, in the same transaction: libvirt 11 pulls systemd and
# libudev1 254 from there, and bookworm's udev 252 then cannot be installed beside them.
apt_install -t bookworm-backports qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu \
    libvirt-clients libvirt-dev udev
qemu_major=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p')
[ "${qemu_major:-0}" -ge 10 ] || die "QEMU $qemu_major is too old: the igb device needs QEMU >= 8" \
    "apt-get install -t bookworm-backports qemu-system-x86"
# busybox-static: virtme-ng builds its guest initramfs around it (the lab kernel has 9p as modules)
apt_install kmod iproute2 pciutils pci.ids make gcc pkg-config xz-utils bc busybox-static

step "Lab kernel (signed Debian 6.12 with matching headers and source)"
mkdir -p "$cache"
release=$(cat "$cache/kernel-release" 2>/dev/null || true)
if [ -n "$release" ] && [ -f "/boot/vmlinuz-$release" ] && [ -f "/lib/modules/$release/modules.dep" ] \
        && [ -f "$cache/$release/netdevsim.ko" ]; then
    note "cached: $release"
else
    apt_update
    # Newest N for which the signed image, its headers and linux-source-6.12 N all exist.
    src_versions=$(apt-cache madison linux-source-6.12 | awk -F'|' '{gsub(/ /,"",$2); print $2}')
    release="" src_version=""
    for img in $(apt-cache pkgnames linux-image-6.12. | grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' | sort -rV); do
        n=${img#linux-image-6.12.}; n=${n%%+*}
        apt-cache show "linux-headers-6.12.$n+deb12-amd64" >/dev/null 2>&1 || continue
        src_version=$(printf '%s\n' "$src_versions" | grep -E "^6\.12\.$n-" | head -1)
        [ -n "$src_version" ] || continue
        release="6.12.$n+deb12-amd64"; break
    done
    [ -n "$release" ] || die "no Debian 6.12 kernel with matching headers and source in the archive" \
        "check that bookworm-security is in the apt sources"
    note "kernel $release (source $src_version)"
    apt_install "linux-image-$release" "linux-headers-$release" "linux-source-6.12=$src_version"
    [ -f "/lib/modules/$release/modules.dep" ] || depmod "$release"

    step "netdevsim for $release (built out of tree, Debian does not ship it)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    tar -xJf /usr/src/linux-source-6.12.tar.xz -C "$build" --wildcards 'linux-source-6.12/drivers/net/netdevsim/*'
    make -s -C "/usr/src/linux-headers-$release" M="$build/linux-source-6.12/drivers/net/netdevsim" \
        CONFIG_NETDEVSIM=m modules >"$build/make.log" 2>&1 \
        || { tail -20 "$build/make.log" >&2; die "building netdevsim failed" "see the compiler output above"; }
    mkdir -p "$cache/$release"
    install -m 0644 "$build/linux-source-6.12/drivers/net/netdevsim/netdevsim.ko" "$cache/$release/netdevsim.ko"
    echo "$release" > "$cache/kernel-release"
    note "cached $cache/$release/netdevsim.ko"
fi
mkdir -p "$cache/libvirt"

step "Tiny guest for VMs inside the lab (kernel from linux-source-6.12 + a static init)"
# Rebuilt when the fragment's settings (not its comments), the init, the build script or
# the kernel source change.
apt_install flex bison libelf-dev lz4
[ -f /usr/src/linux-source-6.12.tar.xz ] || die "/usr/src/linux-source-6.12.tar.xz is missing" \
    "apt-get install linux-source-6.12 (the version matching $release)"
tiny=$cache/$release
tiny_key=$({ grep -E '^(CONFIG_|# CONFIG_)' "$repo/qtagent/lab/tiny-kernel.config" | sort
    cat "$repo/qtagent/lab/tinyguest-init.c" "$repo/scripts/build-tiny-kernel.sh"
    dpkg-query -W -f='${Version}' linux-source-6.12; } | sha256sum | cut -d' ' -f1)
if [ -f "$tiny/tiny-bzImage" ] && [ -x "$tiny/tiny-init" ] && [ "$(cat "$tiny/tiny-stamp" 2>/dev/null)" = "$tiny_key" ]; then
    note "cached: $tiny/tiny-bzImage"
else
    note "building the tiny guest kernel: about 5 min on 2 idle cores (15 min when busy)"
    rm -f "$tiny/tiny-stamp"
    "$repo/scripts/build-tiny-kernel.sh" "$tiny" || die "the tiny guest did not build" "see the messages above"
    echo "$tiny_key" > "$tiny/tiny-stamp"
fi

step "Python virtual environment ($venv)"
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is needed ($py is older)" \
    "install python3.11 or set PYTHON=/path/to/python3.11"
stamp="$venv/.qtagent-stamp"
want=$(cat "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/qtagent" ]; then
    note "up to date"
else
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    note "pip install -e .[dev] (libvirt-python compiles against libvirt-dev on the first run)"
    "$venv/bin/python" -m pip install -q -e "$repo[dev]" 2>&1 | grep -vE '^(WARNING|  )' >&2 || true
    "$venv/bin/python" -c 'import qtagent, pyroute2, libvirt, pyudev, virtme' \
        || die "the Python dependencies did not install" "see pip's output above"
    echo "$want" > "$stamp"
fi
# The guest shares this tree read-only: compile bytecode now so Python need not write it there.
"$venv/bin/python" -m compileall -q "$repo/qtagent" "$repo/tests" "$repo/bench" >/dev/null 2>&1 || true

step "Ready: lab kernel $release, QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), libvirt $(libvirtd --version | awk '{print $3}')"

#!/bin/sh
# Runs first inside the lab guest (as root), then execs the user's command.
# Prepares what a real SR-IOV host would have: vfio-pci loaded, PF links up,
# a netdevsim PF, and libvirtd (started in the background: its first QEMU probe
# takes seconds; `qtagent lab wait-libvirt` or tests wait for its socket).
set -u
say() { [ -n "${QTAGENT_LAB_QUIET:-}" ] || echo "lab: $*" >&2; }

modprobe vfio-pci 2>/dev/null || say "vfio-pci did not load"

# The igb PFs: bring their links up so rate limits work (igb refuses max_tx_rate
# while the PF link is down).
for pf in /sys/bus/pci/drivers/igb/0000:*; do
    [ -d "$pf/net" ] || continue
    for dev in "$pf"/net/*; do ip link set "$(basename "$dev")" up 2>/dev/null; done
done

# netdevsim: one device with one port; VFs are created by tests and the demo.
if [ -n "${QTAGENT_LAB_NETDEVSIM_KO:-}" ] && [ -f "$QTAGENT_LAB_NETDEVSIM_KO" ]; then
    modprobe psample 2>/dev/null
    if insmod "$QTAGENT_LAB_NETDEVSIM_KO" 2>/dev/null; then
        echo "1 1" > /sys/bus/netdevsim/new_device
        mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
        maxvfs=/sys/kernel/debug/netdevsim/netdevsim1/max_vfs
        [ -w "$maxvfs" ] && echo 256 > "$maxvfs"
        for dev in /sys/bus/netdevsim/devices/netdevsim1/net/*; do
            ip link set "$(basename "$dev")" up 2>/dev/null
        done
    else
        say "netdevsim did not load"
    fi
else
    say "no netdevsim module (run make setup)"
fi

# libvirtd with guest-only settings (the guest root is a throwaway overlay).
if command -v libvirtd >/dev/null 2>&1; then
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /run/libvirt /var/cache/libvirt/qemu
    cat > /etc/libvirt/qemu.conf <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
    libvirtd -d 2>/dev/null || say "libvirtd did not start"
fi

export PATH="${QTAGENT_VENV}/bin:$PATH"
export PYTHONUNBUFFERED=1  # output reaches the host as it happens
say "ready"
exec sh -c "$1"

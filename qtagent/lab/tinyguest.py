"""A tiny Linux guest for VMs inside the lab: the lab kernel plus a busybox initramfs.

Hot-unplug of a PCI device completes only when a guest OS answers the ACPI eject
request, so the lab's VMs run this guest. Its init mounts /proc and /sys, prints
the PCI devices it sees whenever they change (the console is a file that tests
read) and otherwise sleeps. The initramfs is written as a newc cpio archive by
this module: no cpio tool, no root, reproducible bytes for the same inputs.
"""

from __future__ import annotations

import gzip
import io
import stat
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "tinyguest: up"
last=""
while true; do
    now=$(for d in /sys/bus/pci/devices/*; do
        echo "$(basename $d)=$(cat $d/vendor):$(cat $d/device)"
    done)
    if [ "$now" != "$last" ]; then
        echo "tinyguest: pci $(echo $now | tr '\\n' ' ')"
        last="$now"
    fi
    sleep 1
done
"""


def _entry(out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """Append one newc header + name + data, each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    out.write(header + encoded)
    out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initramfs(busybox: Path = BUSYBOX) -> bytes:
    """The gzip-compressed initramfs bytes: /init, /bin/busybox and empty mount points."""
    if not busybox.is_file():
        msg = f"{busybox} is missing: install busybox-static (make setup does)"
        raise FileNotFoundError(msg)
    out = io.BytesIO()
    dirs = ["bin", "dev", "proc", "sys", "tmp"]
    ino = 1
    for name in dirs:
        _entry(out, ino, name, stat.S_IFDIR | 0o755)
        ino += 1
    _entry(out, ino, "bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    ino += 1
    _entry(out, ino, "init", stat.S_IFREG | 0o755, INIT.encode())
    _entry(out, 0, "TRAILER!!!", 0)
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)


def write_initramfs(target: Path, busybox: Path = BUSYBOX) -> Path:
    """Write the initramfs to ``target`` (atomically) and return it."""
    data = build_initramfs(busybox)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target

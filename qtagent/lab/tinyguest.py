"""The tiny guest's initramfs: busybox and an init that reports PCI devices.

Hot-unplug of a PCI device completes only when a guest OS answers the ACPI eject
request, so the lab's VMs run a tiny guest (kernel: ``scripts/build-tiny-kernel.sh``,
boot files: :mod:`qtagent.lab.tinyguest_boot`). Its init mounts /proc, /sys and
/dev, prints ``tinyguest: up <seconds since kernel start>``, then prints the PCI
devices it sees (``tinyguest: pci <address>=<vendor>:<device> ...``, sysfs
spelling: ``0x8086:0x10ca``) at start and whenever they change, polling every
``POLL_S`` seconds without forking. The console is a file tests read.

The initramfs is written as a newc cpio archive by this module: no cpio tool,
no root, the same bytes for the same busybox. Every busybox applet is a symlink
in the archive, so init needs no ``busybox --install`` (half a second under TCG).
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
from pathlib import Path
from typing import Final

BUSYBOX: Final = Path("/bin/busybox")
UP_PREFIX: Final = "tinyguest: up"
PCI_PREFIX: Final = "tinyguest: pci"
POLL_S: Final = 0.5

INIT: Final = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
read up idle < /proc/uptime
echo "{UP_PREFIX} $up"
last=""
while :; do
    now=""
    for d in /sys/bus/pci/devices/*; do
        read v < "$d/vendor" && read p < "$d/device" && now="$now ${{d##*/}}=$v:$p"
    done
    if [ "$now" != "$last" ]; then
        echo "{PCI_PREFIX}$now"
        last=$now
    fi
    sleep {POLL_S}
done
"""

_DIRS: Final = ("bin", "dev", "proc", "sys", "tmp")


def _entry(out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """Append one newc header + name + data, each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    out.write(header + encoded)
    out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet names ``busybox --list`` prints (sorted; never ``busybox`` itself)."""
    done = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=30
    )
    names = {name for name in done.stdout.split() if name and "/" not in name}
    return sorted(names - {"busybox"})


def build_initramfs(busybox: Path = BUSYBOX, *, compress: bool = True) -> bytes:
    """The initramfs bytes (gzip unless ``compress`` is False): /init, /bin/busybox,
    a symlink per applet and empty mount points."""
    if not busybox.is_file():
        msg = f"{busybox} is missing: install busybox-static (make setup does)"
        raise FileNotFoundError(msg)
    out = io.BytesIO()
    ino = 1
    for name in _DIRS:
        _entry(out, ino, name, stat.S_IFDIR | 0o755)
        ino += 1
    _entry(out, ino, "bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    for name in applets(busybox):
        ino += 1
        _entry(out, ino, f"bin/{name}", stat.S_IFLNK | 0o777, b"busybox")
    _entry(out, ino + 1, "init", stat.S_IFREG | 0o755, INIT.encode())
    _entry(out, 0, "TRAILER!!!", 0)
    if not compress:
        return out.getvalue()
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)


def write_initramfs(target: Path, busybox: Path = BUSYBOX, *, compress: bool = True) -> Path:
    """Write the initramfs to ``target`` (atomically; unchanged bytes are not
    rewritten, so VMs may share one file) and return it."""
    data = build_initramfs(busybox, compress=compress)
    try:
        if target.read_bytes() == data:
            return target
    except OSError:
        pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target

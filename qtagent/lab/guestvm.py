"""VMs inside the lab guest: wait for libvirtd, start the tiny guest and wait for it.

Used by the demo and the lab tests. The tiny guest (:mod:`qtagent.lab.tinyguest`)
boots in about a minute under TCG inside the lab's TCG; setup builds it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from qtagent.errors import LabError, Timeout
from qtagent.lab import tinyguest
from qtagent.virt.api import VirtBackend


def wait_for_libvirt(uri: str = "qemu:///system", timeout_s: float = 240.0) -> None:
    """Poll `virsh version` until libvirtd answers (the lab starts it in the background)."""
    virsh = shutil.which("virsh")
    if virsh is None:
        raise LabError("virsh is not installed", hint="run make setup")
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run([virsh, "-c", uri, "version"], capture_output=True, check=False)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise Timeout(
                f"libvirtd did not answer within {timeout_s:.0f} s", hint="see /var/log/libvirt"
            )
        time.sleep(0.5)


def start_tiny_guest(
    virt: VirtBackend, name: str, work_dir: Path, *, timeout_s: float = 600.0
) -> Path:
    """Define and start VM ``name`` running the tiny guest; return once its init has
    printed its first PCI report (from then on it sees hot-plug and answers unplug).

    ``work_dir`` gets the initramfs and the serial console log, which is returned;
    keep it on a local file system (QEMU writes the console byte by byte, and 9p
    pays a round trip for each). A VM that does not come up in ``timeout_s`` is
    destroyed: left booting, it would slow everything after it.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    boot = tinyguest.prepare(work_dir)
    console = work_dir / f"{name}-console.log"
    console.unlink(missing_ok=True)
    virt.define_and_start(tinyguest.domain_xml(name, boot, console), paused=False)
    deadline = time.monotonic() + timeout_s
    while tinyguest.pci_devices(_read(console)) is None:
        if time.monotonic() > deadline:
            virt.destroy(name)
            raise Timeout(f"VM {name} did not boot within {timeout_s:.0f} s", hint=f"see {console}")
        time.sleep(0.5)
    return console


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def wait_for_guest_pci(console: Path, ids: str, *, present: bool, timeout_s: float = 120.0) -> bool:
    """Wait until the tiny guest's latest PCI report does (``present``) or does not
    show a device with ``ids`` (sysfs spelling, ``0x8086:0x10ca``); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        devices = tinyguest.pci_devices(_read(console)) or {}
        if (ids in devices.values()) == present:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)

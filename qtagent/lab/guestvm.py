"""VMs inside the lab guest: wait for libvirtd, start the tiny guest and wait for it.

Used by the demo and the lab tests. The tiny guest's kernel is the one
`scripts/build-tiny-kernel.sh` built into the lab cache (seconds to boot under
TCG-in-TCG); without it the lab's own Debian kernel is used (minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path, PurePosixPath

from qtagent.errors import LabError, Timeout
from qtagent.lab.runner import lab_cache
from qtagent.lab.tinyguest import write_initramfs
from qtagent.virt.api import VirtBackend
from qtagent.virt.domain_xml import DomainSpec, domain_xml

UP_LINE = "tinyguest: up"
CMDLINE = "console=ttyS0 quiet panic=-1"


def wait_for_libvirt(uri: str = "qemu:///system", timeout_s: float = 120.0) -> None:
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


def tiny_kernel() -> Path:
    """The tiny guest kernel, or the lab kernel when the tiny one was not built."""
    release = os.uname().release
    tiny = lab_cache() / release / "tiny-bzImage"
    if tiny.is_file():
        return tiny
    return Path(f"/boot/vmlinuz-{release}")


def start_tiny_guest(
    virt: VirtBackend, name: str, out_dir: Path, *, timeout_s: float = 1500.0, memory_mib: int = 128
) -> Path:
    """Define and start VM ``name`` running the tiny guest; wait until its init runs.

    Returns the serial console log (the guest prints the PCI devices it sees there).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    initrd = write_initramfs(out_dir / f"{name}-initrd.img")
    console = out_dir / f"{name}-console.log"
    console.unlink(missing_ok=True)
    spec = DomainSpec(
        name=name,
        memory_mib=memory_mib,
        kernel=PurePosixPath(tiny_kernel()),
        initrd=PurePosixPath(initrd),
        cmdline=CMDLINE,
        serial_log=PurePosixPath(console),
    )
    virt.define_and_start(domain_xml(spec), paused=False)
    deadline = time.monotonic() + timeout_s
    while UP_LINE not in _read(console):
        if time.monotonic() > deadline:
            virt.destroy(name)  # a VM left booting would slow everything after it
            raise Timeout(f"VM {name} did not boot within {timeout_s:.0f} s", hint=f"see {console}")
        time.sleep(0.5)
    return console


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""

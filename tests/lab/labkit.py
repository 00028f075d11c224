"""What every lab test module shares: the guest's paths, the markers that skip a
module outside the lab guest, and small waiting/writing helpers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Final

import pytest

from qtagent.model.types import PciAddress

SYS: Final = Path("/sys")
IGB: Final = SYS / "bus/pci/drivers/igb"
NSIM: Final = SYS / "bus/netdevsim/devices/netdevsim1"
URI: Final = "qemu:///system"

IN_LAB_GUEST: Final = [
    pytest.mark.lab,
    pytest.mark.skipif(os.environ.get("QTAGENT_LAB") != "1", reason="not in the lab guest"),
    pytest.mark.skipif(not IGB.is_dir(), reason="no igb driver: not in the lab guest"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90.0) -> float:
    """Poll ``check`` every 0.1 s; return the seconds it took, fail the test after
    ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return round(time.monotonic() - start, 2)


def write(path: Path, text: str) -> None:
    """``echo text > path`` as one write(2), without O_CREAT: in the guest, opening
    .../driver/unbind with O_CREAT (pathlib's write_text) fails with EACCES."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def driver_of(address: PciAddress | str) -> str | None:
    """The driver bound to a PCI function, read from its sysfs link."""
    link = SYS / "bus/pci/devices" / str(address) / "driver"
    return os.readlink(link).rpartition("/")[2] if link.exists() else None


def save_timings(name: str, measured: Mapping[str, object]) -> None:
    """Write a test module's measurements to ``$QTAGENT_LAB_OUT/<name>-timings.json``
    and print them (pytest shows them with -s, the file survives the guest)."""
    out = Path(os.environ.get("QTAGENT_LAB_OUT", "lab-out")) / f"{name}-timings.json"
    with suppress(OSError):
        out.write_text(json.dumps(measured, indent=2) + "\n")
    print(f"\n{name} lab timings (s): {dict(measured)}")

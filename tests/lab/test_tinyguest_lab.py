"""The tiny guest under libvirt in the lab guest: boot, VF hot-plug, VF hot-unplug.

Hot-unplug completes only when a guest OS answers the ACPI eject, so this proves
the tiny guest (qtagent.lab.tinyguest) is such an OS, booted by libvirt with QEMU
TCG inside the TCG lab guest. Run in the guest (one boot for the module)::

    qtagent lab run -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/lab/test_tinyguest_lab.py -q -rs

The tests run in file order on one VM and one VF of the first igb PF. Timings
(and the load average, since other lab guests may share the two cores) go to
``$QTAGENT_LAB_OUT/tinyguest-lab-timings.json``, the VM's console to
``$QTAGENT_LAB_OUT/tinyguest-lab-console.log``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from qtagent.lab import tinyguest
from qtagent.lab.guestvm import wait_for_libvirt
from qtagent.model.types import PciAddress
from qtagent.sysfs.writer import SysfsWriter
from qtagent.virt.domain_xml import hostdev_addresses, hostdev_xml
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS, URI, driver_of, save_timings, wait_for, write

VM = "qt-tinyguest"
VF_IDS = "0x8086:0x10ca"  # 82576 VF, as sysfs spells it

pytestmark = [
    *IN_LAB_GUEST,
    pytest.mark.timeout(1500),
]

MEASURED: dict[str, object] = {}


def load() -> str:
    """The 1-minute load average: other lab guests may share the two cores."""
    return Path("/proc/loadavg").read_text().split()[0]


@dataclass
class Vm:
    dom: Any  # libvirt.virDomain (the bindings are untyped)
    console: Path
    started: float  # time.monotonic() before createXML

    def devices(self) -> dict[str, str] | None:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return None
        return tinyguest.pci_devices(text)

    def shows(self, ids: str) -> bool:
        return ids in (self.devices() or {}).values()


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def measurements() -> Iterator[None]:
    MEASURED["load_at_start"] = load()
    yield
    MEASURED["load_at_end"] = load()
    save_timings("tinyguest", MEASURED)


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    """libvirtd starts in the background at boot."""
    start = time.monotonic()
    wait_for_libvirt(URI)
    MEASURED["libvirtd_wait"] = round(time.monotonic() - start, 2)
    connection = libvirt.open(URI)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def vf() -> Iterator[PciAddress]:
    """One VF of the first igb PF on vfio-pci. VF drivers do not autoprobe, so the
    VF never meets igbvf (whose unbind file shows up late after a first VF)."""
    pf = sorted(IGB.glob("0000:*"))[0]
    sysfs = SysfsWriter(SYS)
    sysfs.write_num_vfs(pf.name, 0)
    write(pf / "sriov_drivers_autoprobe", "0")
    sysfs.write_num_vfs(pf.name, 1)
    address = PciAddress.parse(os.readlink(pf / "virtfn0").rpartition("/")[2])
    sysfs.set_driver_override(address, "vfio-pci")
    sysfs.unbind(address)
    sysfs.probe(address)
    wait_for("the VF on vfio-pci", lambda: driver_of(address) == "vfio-pci", timeout=30)
    yield address
    sysfs.set_driver_override(address, None)
    sysfs.write_num_vfs(pf.name, 0)
    write(pf / "sriov_drivers_autoprobe", "1")


@pytest.fixture(scope="module")
def vm(conn: Any, vf: PciAddress, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vm]:
    """The tiny guest, started and up. Its console is on the guest's tmpfs (a
    console on the 9p-shared out dir costs a round trip to the host per byte)."""
    boot = tinyguest.prepare()
    console = tmp_path_factory.mktemp("tinyguest") / "console.log"
    MEASURED["firmware"] = str(boot.firmware or "SeaBIOS")
    start = time.monotonic()
    dom = conn.createXML(tinyguest.domain_xml(VM, boot, console), 0)
    MEASURED["qemu_started"] = round(time.monotonic() - start, 2)
    the_vm = Vm(dom, console, start)
    yield the_vm
    with suppress(Exception):
        dom.destroy()
    out = Path(os.environ.get("QTAGENT_LAB_OUT", "lab-out"))
    with suppress(OSError):
        shutil.copyfile(console, out / "tinyguest-lab-console.log")


# -------------------------------------------------------------------- tests


def test_the_tiny_guest_boots_and_reports_its_pci_devices(vm: Vm) -> None:
    wait_for("the tiny guest's first PCI report", lambda: vm.devices() is not None, timeout=900)
    MEASURED["boot_to_first_report"] = round(time.monotonic() - vm.started, 2)
    MEASURED["kernel_to_init_in_guest"] = tinyguest.boot_seconds(vm.console.read_text())
    devices = vm.devices()
    assert devices and "0x8086:0x1237" in devices.values()  # the i440fx host bridge
    assert VF_IDS not in devices.values()


def test_a_vf_plugged_live_appears_in_the_guest(vm: Vm, vf: PciAddress) -> None:
    start = time.monotonic()
    vm.dom.attachDeviceFlags(hostdev_xml(vf), libvirt.VIR_DOMAIN_AFFECT_LIVE)
    MEASURED["attach_call"] = round(time.monotonic() - start, 2)
    assert vf in hostdev_addresses(vm.dom.XMLDesc(0))
    wait_for("the VF in the guest", lambda: vm.shows(VF_IDS), timeout=180)
    MEASURED["attach_seen_in_guest"] = round(time.monotonic() - start, 2)


def test_a_vf_unplugged_live_leaves_the_domain_and_the_guest(vm: Vm, vf: PciAddress) -> None:
    start = time.monotonic()
    # Returns once the eject is requested; the guest's answer completes it.
    vm.dom.detachDeviceFlags(hostdev_xml(vf), libvirt.VIR_DOMAIN_AFFECT_LIVE)
    MEASURED["detach_call"] = round(time.monotonic() - start, 2)
    wait_for("the hostdev to leave the live XML", lambda: vf not in live_vfs(vm), timeout=120)
    MEASURED["detach_complete"] = round(time.monotonic() - start, 2)
    wait_for("the VF to leave the guest", lambda: not vm.shows(VF_IDS), timeout=60)
    MEASURED["detach_seen_in_guest"] = round(time.monotonic() - start, 2)
    assert driver_of(vf) == "vfio-pci"  # managed='no': libvirt leaves the binding alone


def live_vfs(vm: Vm) -> tuple[PciAddress, ...]:
    return hostdev_addresses(vm.dom.XMLDesc(0))

"""LibvirtBackend with real VFs and the real libvirtd of the lab guest.

Run in the guest (one boot for the whole module)::

    qtagent lab run -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/lab/test_libvirt_lab.py -q

Skipped outside the lab guest. The tests run in file order and share one PF
with two VFs and two tiny OS-less VMs: VF0 goes to VM a as
``<interface type='hostdev' managed='no'>`` (qtagent binds it to vfio-pci
itself), VF1 tries the ``managed='yes'`` path, and VF0 goes once more as a plain
``<hostdev managed='no'>`` (ADR 0002's form). What the PF reports for each VF
is read independently with ``ip -j link show``. Timings go to
``$QTAGENT_LAB_OUT/libvirt-lab-timings.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from qtagent.errors import Conflict, QtagentError
from qtagent.model.types import MacAddress, PciAddress
from qtagent.virt.api import DomainState
from qtagent.virt.domain_xml import (
    AttachedVf,
    DomainSpec,
    VfInterface,
    domain_xml,
    hostdev_xml,
    vf_interface_xml,
)
from qtagent.virt.errors import LibvirtFailure, VirtConflict
from qtagent.virt.libvirt_backend import LibvirtBackend
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS, driver_of, save_timings, wait_for, write

SOCKET = Path("/run/libvirt/libvirt-sock")
VM_A, VM_B = "qt-lab-a", "qt-lab-b"
MAC_A = MacAddress.parse("52:54:00:aa:bb:01")
MAC_B = MacAddress.parse("52:54:00:aa:bb:02")
MAC_C = MacAddress.parse("52:54:00:aa:bb:03")
ZERO = "00:00:00:00:00:00"

pytestmark = [
    *IN_LAB_GUEST,
    # Under TCG with other guests on the same two cores, a VM start took up to 90 s.
    pytest.mark.timeout(1200),
]

MEASURED: dict[str, float] = {}


# ------------------------------------------------------------------ helpers


@contextmanager
def timed(key: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    MEASURED[key] = round(time.monotonic() - start, 2)


def pf_reports(netdev: str, vf: int) -> tuple[str, int]:
    """(admin MAC, VLAN) of VF ``vf`` as the PF reports it: ``ip -j link show $pf``."""
    out = subprocess.run(
        ["ip", "-j", "link", "show", "dev", netdev], check=True, capture_output=True, text=True
    ).stdout
    (entry,) = [e for e in json.loads(out)[0]["vfinfo_list"] if e["vf"] == vf]
    vlans = entry.get("vlan_list") or [{}]
    return entry["address"], int(vlans[0].get("vlan", 0))


def bind(address: PciAddress, driver: str | None) -> None:
    """driver_override + unbind + drivers_probe: move ``address`` to ``driver``
    (None: clear the override and let the default driver take it back)."""
    device = SYS / "bus/pci/devices" / str(address)
    write(device / "driver_override", f"{driver or ''}\n")
    if (device / "driver").exists():
        # The kernel adds a driver's bind/unbind files only after the driver has
        # probed every device present at module load: the first VFs of a boot
        # see igbvf/unbind missing for seconds (ENOENT; EACCES with O_CREAT).
        wait_for("the driver's unbind file", (device / "driver" / "unbind").exists, timeout=60)
        write(device / "driver" / "unbind", str(address))
    write(SYS / "bus/pci/drivers_probe", str(address))


def interface(address: PciAddress, mac: MacAddress, vlan: int, *, managed: bool = False) -> str:
    return vf_interface_xml(VfInterface(address, mac, vlan=vlan, managed=managed))


def tiny_vm(name: str) -> str:
    return domain_xml(DomainSpec(name))


# ----------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class LabPf:
    path: Path
    netdev: str
    vfs: tuple[PciAddress, ...]


@pytest.fixture(scope="module", autouse=True)
def measurements() -> Iterator[None]:
    yield
    save_timings("libvirt", MEASURED)


@pytest.fixture(scope="module")
def backend() -> Iterator[LibvirtBackend]:
    """libvirtd starts in the background at boot: wait for its socket (bounded)."""
    with timed("libvirtd_socket_wait"):
        wait_for("libvirtd's socket", SOCKET.exists, timeout=180)
    backend = LibvirtBackend()
    with timed("first_connection"):
        backend.list_domains()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def pf() -> Iterator[LabPf]:
    """Two VFs on the last igb PF (other lab tests take the first)."""
    pf_dir = sorted(IGB.glob("0000:*"))[-1]
    netdev = next((pf_dir / "net").iterdir()).name
    write(pf_dir / "sriov_numvfs", "0")
    with timed("sriov_numvfs_2"):
        write(pf_dir / "sriov_numvfs", "2")
        links = [pf_dir / f"virtfn{i}" for i in range(2)]
        wait_for(
            "2 VFs on igbvf with netdevs",
            lambda: all((v / "driver").exists() and any((v / "net").glob("*")) for v in links),
        )
    vfs = tuple(PciAddress.parse(os.readlink(v).rpartition("/")[2]) for v in links)
    yield LabPf(pf_dir, netdev, vfs)
    write(pf_dir / "sriov_numvfs", "0")


@pytest.fixture(scope="module")
def vf0_on_vfio(pf: LabPf) -> Iterator[PciAddress]:
    """VF0 on vfio-pci, as qtagent's binding effect leaves it before a managed='no' attach."""
    vf0 = pf.vfs[0]
    assert driver_of(vf0) == "igbvf"
    group = os.readlink(SYS / "bus/pci/devices" / str(vf0) / "iommu_group").rpartition("/")[2]
    with timed("bind_vf0_to_vfio"):
        bind(vf0, "vfio-pci")
        wait_for("VF0 on vfio-pci", lambda: driver_of(vf0) == "vfio-pci", timeout=10)
    assert Path(f"/dev/vfio/{group}").exists()
    yield vf0
    bind(vf0, None)
    wait_for("VF0 back on igbvf", lambda: driver_of(vf0) == "igbvf", timeout=10)


@pytest.fixture(scope="module")
def vms(backend: LibvirtBackend, vf0_on_vfio: PciAddress) -> Iterator[None]:
    """Tears the test VMs down before the VFs go away (SR-IOV off blocks while QEMU holds a VF)."""
    yield
    for name in (VM_A, VM_B):
        if backend.domain_exists(name):
            with suppress(Conflict):  # not running
                backend.destroy(name)
            backend.undefine(name)


# -------------------------------------------------------------------- tests


def test_unmanaged_vf_attaches_with_mac_and_vlan(
    backend: LibvirtBackend, pf: LabPf, vf0_on_vfio: PciAddress, vms: None
) -> None:
    with timed("start_first_vm_paused"):  # includes libvirtd's first QEMU probe
        info = backend.define_and_start(tiny_vm(VM_A))
    assert (info.name, info.state) == (VM_A, DomainState.PAUSED)
    with timed("attach_interface_hostdev"):
        backend.attach_hostdev(VM_A, interface(vf0_on_vfio, MAC_A, 100))
    (got,) = backend.attached_vfs(VM_A)
    assert got == AttachedVf(vf0_on_vfio, "interface", False, MAC_A, 100, alias=got.alias)
    assert pf_reports(pf.netdev, 0) == (str(MAC_A), 100)
    assert driver_of(vf0_on_vfio) == "vfio-pci"


def test_vf_held_by_one_vm_is_refused_to_another(
    backend: LibvirtBackend, pf: LabPf, vf0_on_vfio: PciAddress, vms: None
) -> None:
    with timed("start_second_vm_paused"):
        backend.define_and_start(tiny_vm(VM_B))
    with pytest.raises(Conflict) as err:
        backend.attach_hostdev(VM_B, interface(vf0_on_vfio, MAC_B, 200))
    assert isinstance(err.value, VirtConflict)
    assert (err.value.code, err.value.code_name) == (55, "VIR_ERR_OPERATION_INVALID")
    assert "in use" in err.value.libvirt_message
    assert err.value.holder == VM_A
    assert backend.hostdev_addresses(VM_B) == ()
    # the refused attach left the holder's settings alone
    assert pf_reports(pf.netdev, 0) == (str(MAC_A), 100)
    assert backend.hostdev_addresses(VM_A) == (vf0_on_vfio,)


def test_detach_from_paused_osless_vm_reports_success_but_the_device_stays(
    backend: LibvirtBackend, pf: LabPf, vf0_on_vfio: PciAddress, vms: None
) -> None:
    """No guest OS answers the ACPI eject: libvirt waits, then says the request was sent."""
    xml = interface(vf0_on_vfio, MAC_A, 100)
    with timed("detach_call_paused_vm"):
        backend.detach_hostdev(VM_A, xml)  # no error
    assert backend.hostdev_addresses(VM_A) == (vf0_on_vfio,)
    assert pf_reports(pf.netdev, 0) == (str(MAC_A), 100)
    # asking again is refused while QEMU still waits for the guest
    with pytest.raises(LibvirtFailure) as err:
        backend.detach_hostdev(VM_A, xml)
    assert err.value.code == 1  # VIR_ERR_INTERNAL_ERROR from QEMU's device_del
    assert "already in the process of unplug" in err.value.libvirt_message


def test_destroy_frees_the_vf_and_libvirt_restores_its_mac_and_vlan(
    backend: LibvirtBackend, pf: LabPf, vf0_on_vfio: PciAddress, vms: None
) -> None:
    with timed("destroy_vm_holding_vf"):
        backend.destroy(VM_A)
    assert pf_reports(pf.netdev, 0) == (ZERO, 0)
    assert driver_of(vf0_on_vfio) == "vfio-pci"  # managed='no': the binding stays ours
    with timed("attach_interface_hostdev_warm"):
        backend.attach_hostdev(VM_B, interface(vf0_on_vfio, MAC_B, 200))
    assert backend.hostdev_addresses(VM_B) == (vf0_on_vfio,)
    assert pf_reports(pf.netdev, 0) == (str(MAC_B), 200)
    backend.destroy(VM_B)
    backend.undefine(VM_B)
    backend.undefine(VM_A)
    assert not backend.domain_exists(VM_A)
    assert {d.name for d in backend.list_domains()} & {VM_A, VM_B} == set()
    assert pf_reports(pf.netdev, 0) == (ZERO, 0)


def test_managed_no_needs_vfio_and_managed_yes_moves_the_driver_both_ways(
    backend: LibvirtBackend, pf: LabPf, vms: None
) -> None:
    vf1 = pf.vfs[1]
    assert driver_of(vf1) == "igbvf"
    backend.define_and_start(tiny_vm(VM_A))
    with pytest.raises(Conflict) as err:
        backend.attach_hostdev(VM_A, interface(vf1, MAC_C, 300))
    assert "must be manually detached" in str(err.value)
    assert driver_of(vf1) == "igbvf"
    with timed("attach_managed_yes"):
        backend.attach_hostdev(VM_A, interface(vf1, MAC_C, 300, managed=True))
    assert driver_of(vf1) == "vfio-pci"
    assert pf_reports(pf.netdev, 1) == (str(MAC_C), 300)
    with timed("destroy_managed_yes"):
        backend.destroy(VM_A)
    wait_for("VF1 back on igbvf", lambda: driver_of(vf1) == "igbvf", timeout=30)
    mac, vlan = pf_reports(pf.netdev, 1)
    assert vlan == 0
    # libvirt puts back the all-zero MAC; the rebound igbvf then picks a random one
    # and pushes it to the PF (FIELD-CASES C4: never the VM's MAC on a free VF).
    assert mac != str(MAC_C)
    MEASURED["vf1_mac_after_release_is_zero"] = float(mac == ZERO)
    backend.undefine(VM_A)


def test_plain_hostdev_leaves_the_vf_settings_to_qtagent(
    backend: LibvirtBackend, pf: LabPf, vf0_on_vfio: PciAddress, vms: None
) -> None:
    """ADR 0002's form: qtagent sets MAC/VLAN over netlink, libvirt only passes the VF."""
    subprocess.run(
        ["ip", "link", "set", "dev", pf.netdev, "vf", "0", "mac", str(MAC_C), "vlan", "300"],
        check=True,
    )
    backend.define_and_start(tiny_vm(VM_B))
    with timed("attach_plain_hostdev"):
        backend.attach_hostdev(VM_B, hostdev_xml(vf0_on_vfio))
    (got,) = backend.attached_vfs(VM_B)
    assert got == AttachedVf(vf0_on_vfio, "hostdev", managed=False, alias=got.alias)
    assert pf_reports(pf.netdev, 0) == (str(MAC_C), 300)
    backend.destroy(VM_B)
    # libvirt restored nothing: the settings stay for qtagent's own restore (C4)
    assert pf_reports(pf.netdev, 0) == (str(MAC_C), 300)
    assert driver_of(vf0_on_vfio) == "vfio-pci"
    backend.undefine(VM_B)
    subprocess.run(
        ["ip", "link", "set", "dev", pf.netdev, "vf", "0", "mac", ZERO, "vlan", "0"], check=True
    )
    assert pf_reports(pf.netdev, 0) == (ZERO, 0)


def test_failures_are_qtagent_errors(backend: LibvirtBackend) -> None:
    with pytest.raises(QtagentError) as err:
        backend.attach_hostdev("qt-lab-ghost", "<hostdev/>")
    assert err.value.status == 404

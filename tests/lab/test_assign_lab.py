"""VFs given to a running VM and taken back, against real libvirt, QEMU, vfio-pci and
igb in the lab guest (FIELD-CASES C2, C4, C9), through qtagent's operations.

The VM runs the tiny guest (a real OS that reports its PCI devices on its serial
console), so hot-unplug completes for real and the tests see the VF come and go.
Run in the guest: qtagent lab run -- pytest -p no:cacheprovider tests/lab/test_assign_lab.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.errors import Conflict, NotFound
from qtagent.lab.guestvm import start_tiny_guest, wait_for_guest_pci, wait_for_libvirt
from qtagent.model.types import MacAddress, VfId
from qtagent.ops.assign import attach, detach
from qtagent.ops.context import HostContext, HostPaths
from qtagent.ops.provision import set_vf_count
from qtagent.plan.vfcount import plan_vf_count
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS

VM = "assign-vm"
VF_IDS = "0x8086:0x10ca"  # an 82576 VF, as the VM's sysfs spells it

pytestmark = [*IN_LAB_GUEST, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostContext, str, Path]]:
    """One running tiny-guest VM and 4 fresh VFs on the first igb PF for the module."""
    work = tmp_path_factory.mktemp("assign")
    ctx = HostContext(HostPaths(db_path=work / "qtagent.db"))
    pf = sorted(p.name for p in IGB.glob("0000:*"))[0]
    set_vf_count(ctx, pf, 0)
    set_vf_count(ctx, pf, 4)
    wait_for_libvirt()
    console = start_tiny_guest(ctx.virt, VM, work)
    yield ctx, pf, console
    ctx.virt.destroy(VM)
    out = os.environ.get("QTAGENT_LAB_OUT")
    if out:
        shutil.copyfile(console, Path(out) / "assign-lab-console.log")
    set_vf_count(ctx, pf, 0)
    ctx.close()


def kernel_vfs(pf: str) -> dict[int, dict[str, object]]:
    """The PF's VF table as iproute2 reads it (not qtagent's own decoder)."""
    netdev = next((SYS / "bus/pci/devices" / pf / "net").iterdir()).name
    shown = subprocess.run(
        ["ip", "-j", "link", "show", netdev], capture_output=True, text=True, check=True
    )
    return {int(v["vf"]): v for v in json.loads(shown.stdout)[0].get("vfinfo_list", [])}


def vlan_of(entry: dict[str, object]) -> int:
    vlans = entry.get("vlan_list") or [{}]
    assert isinstance(vlans, list)
    return int(vlans[0].get("vlan", 0))


def test_attach_programs_the_vf_and_the_guest_sees_it(lab: tuple[HostContext, str, Path]) -> None:
    ctx, pf, console = lab
    mac = MacAddress.parse("52:54:00:aa:00:01")
    result = attach(ctx, VM, pf, index=1, mac=mac, vlan=100)
    vf = ctx.pf(pf).vf(1)
    assert vf.driver == "vfio-pci"
    assert vf.address in ctx.virt.hostdev_addresses(VM)
    assert kernel_vfs(pf)[1]["address"] == str(mac) and vlan_of(kernel_vfs(pf)[1]) == 100
    assert result.knobs.complete
    assert wait_for_guest_pci(console, VF_IDS, present=True), "the VM's OS never saw the VF"
    allocation = ctx.store.allocation(VfId(pf, 1))
    assert allocation is not None and allocation.vm.name == VM

    # C2: the VF count cannot change under the VM, and nothing is handed out twice.
    held = {a.vf: a.vm.name for a in ctx.store.allocations(pf=pf)}
    with pytest.raises(Conflict, match=rf"VF1 \(VM '{VM}'\)"):
        plan_vf_count(ctx.pf(pf, settings=False), 6, held)
    with pytest.raises(Conflict, match="already assigned"):
        attach(ctx, VM, pf, index=1)
    # Release is tied to the owner.
    with pytest.raises(Conflict, match="belongs to VM"):
        detach(ctx, "someone-else", pf, 1)

    detached = detach(ctx, VM, pf, 1)
    after = ctx.pf(pf).vf(1)
    assert after.driver == "igbvf"
    assert after.address not in ctx.virt.hostdev_addresses(VM)
    assert kernel_vfs(pf)[1]["address"] != str(mac) and vlan_of(kernel_vfs(pf)[1]) == 0
    assert ctx.store.allocation(VfId(pf, 1)) is None
    assert detached.driver == "igbvf"
    assert wait_for_guest_pci(console, VF_IDS, present=False), "the VF stayed in the VM's OS"


def test_c4_four_releases_in_a_row_leave_distinct_macs_and_no_vm_mac(
    lab: tuple[HostContext, str, Path],
) -> None:
    ctx, pf, _ = lab
    macs = [MacAddress.parse(f"52:54:00:bb:00:0{i}") for i in range(4)]
    for index, mac in enumerate(macs):
        attach(ctx, VM, pf, index=index, mac=mac, vlan=200 + index)
        detach(ctx, VM, pf, index)
    table = kernel_vfs(pf)
    admin = [str(table[i]["address"]) for i in range(4)]
    assert len(set(admin)) == 4, admin
    assert not {str(m) for m in macs} & set(admin)
    assert all(vlan_of(table[i]) == 0 for i in range(4))
    assert all(ctx.pf(pf).vf(i).driver == "igbvf" for i in range(4))
    assert ctx.store.allocations(pf=pf) == ()


def test_attach_to_a_missing_vm_changes_nothing(lab: tuple[HostContext, str, Path]) -> None:
    ctx, pf, _ = lab

    def state() -> list[tuple[object, ...]]:
        return [(v.index, v.driver, v.settings) for v in ctx.pf(pf).vfs]

    before = state()
    with pytest.raises(NotFound, match="no VM named"):
        attach(ctx, "no-such-vm", pf, index=2)
    assert state() == before and ctx.store.allocations() == ()

"""Drift and restarts on the real kernel (issue 3, FIELD-CASES C8): changes made behind
qtagent's back with iproute2 and sysfs are found by one reconcile pass and repaired or
reported as the host config says; a restart of the agent with two VMs holding VFs
writes nothing to sysfs or netlink.

The daemon's own event path (udev and rtnetlink events to a reconcile within 2 s) is
tests/lab/test_serve_lab.py; here each pass is called directly.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from qtagent.config import HostConfig, parse_host_config
from qtagent.lab.guestvm import start_tiny_guest, wait_for_libvirt
from qtagent.model.host import VfSettings
from qtagent.model.types import MacAddress
from qtagent.netlink.api import Knob, KnobValue, VfNetlink
from qtagent.netlink.rtnl_backend import RtnlVfNetlink
from qtagent.ops.agent import Agent
from qtagent.ops.assign import attach
from qtagent.ops.context import HostContext, HostPaths
from qtagent.ops.provision import set_vf_count
from qtagent.ops.reconcile import reconcile
from qtagent.ops.release import detach
from qtagent.store.status import DriftTable
from qtagent.sysfs.writer import SysfsWriter
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS, driver_of, write

VM_A, VM_B = "drift-a", "drift-b"
MAC_A = MacAddress.parse("52:54:00:dd:00:01")
MAC_B = MacAddress.parse("52:54:00:dd:00:02")

pytestmark = [*IN_LAB_GUEST, pytest.mark.timeout(1200)]


class CountingNetlink:
    """The real rtnetlink backend, counting the knobs it sends."""

    def __init__(self, inner: VfNetlink) -> None:
        self.inner = inner
        self.sent = 0

    def read_vfs(self, pf_ifindex: int) -> Mapping[int, VfSettings]:
        return self.inner.read_vfs(pf_ifindex)

    def set_knob(self, pf_ifindex: int, vf: int, knob: Knob, value: KnobValue) -> None:
        self.sent += 1
        self.inner.set_knob(pf_ifindex, vf, knob, value)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Lab:
    db: Path
    pf: str  # VMs hold two of its VFs
    netdev: str
    free_pf: str  # no VF of it is allocated

    def counted(self) -> tuple[HostContext, CountingNetlink]:
        netlink = CountingNetlink(RtnlVfNetlink())
        ctx = HostContext.with_edges(
            HostPaths(db_path=self.db),
            netlink=netlink,
            writer=SysfsWriter(SYS),
        )
        return ctx, netlink

    def config(self, num_vfs: int = 4, policy: str = "repair") -> HostConfig:
        return parse_host_config(
            f'[pf."{self.pf}"]\nnum_vfs = {num_vfs}\ndrift = "{policy}"\n'
            "vf_defaults = { spoofchk = true, trust = false }\n"
            f'[pf."{self.free_pf}"]\nnum_vfs = 3\n'.encode()
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("drift")
    pf, free_pf = sorted(p.name for p in IGB.glob("0000:*"))[:2]
    netdev = next((SYS / "bus/pci/devices" / pf / "net").iterdir()).name
    lab = Lab(work / "qtagent.db", pf, netdev, free_pf)
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        reconcile(ctx, lab.config())
        wait_for_libvirt()
        start_tiny_guest(ctx.virt, VM_A, work)
        start_tiny_guest(ctx.virt, VM_B, work)
        attach(ctx, VM_A, pf, index=1, mac=MAC_A, vlan=100)
        attach(ctx, VM_B, pf, index=2, mac=MAC_B, vlan=200)
    yield lab
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        for vm, index in ((VM_A, 1), (VM_B, 2)):
            if ctx.store.allocations(vm_name=vm):
                detach(ctx, vm, pf, index)
            ctx.virt.destroy(vm)
        for name in (pf, free_pf):
            set_vf_count(ctx, name, 0)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def kernel_vf(lab: Lab, index: int) -> dict[str, object]:
    shown = subprocess.run(["ip", "-j", "link", "show", lab.netdev], capture_output=True,
                           text=True, check=True)  # fmt: skip
    vfs: dict[int, dict[str, object]] = {
        int(v["vf"]): v for v in json.loads(shown.stdout)[0]["vfinfo_list"]
    }
    return vfs[index]


def test_a_restart_with_two_vms_holding_vfs_writes_nothing(lab: Lab) -> None:
    ctx, netlink = lab.counted()
    with ctx:
        agent = Agent(ctx, None)
        agent.start()
        agent.tick()
        agent.stop()
        assert (ctx.writer.writes, netlink.sent) == (0, 0)
        hostdevs = {vm: ctx.virt.hostdev_addresses(vm) for vm in (VM_A, VM_B)}
        assert hostdevs == {VM_A: (ctx.pf(lab.pf).vf(1).address,),
                            VM_B: (ctx.pf(lab.pf).vf(2).address,)}  # fmt: skip


def test_ip_link_changes_to_a_vms_vf_are_put_back(lab: Lab) -> None:
    ip("link", "set", lab.netdev, "vf", "1", "mac", "02:00:00:00:00:99")
    ip("link", "set", lab.netdev, "vf", "1", "vlan", "7")
    ip("link", "set", lab.netdev, "vf", "1", "spoofchk", "off")
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        result = reconcile(ctx, lab.config())
    assert {d.aspect for d in result.drift} == {"mac", "vlan", "spoofchk"}
    assert result.failed == ()
    vf = kernel_vf(lab, 1)
    assert vf["address"] == str(MAC_A) and vf["spoofchk"] is True
    assert vf["vlan_list"][0]["vlan"] == 100  # type: ignore[index]


def test_report_policy_reports_a_free_vfs_knob_and_leaves_it(lab: Lab) -> None:
    ip("link", "set", lab.netdev, "vf", "3", "trust", "on")
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        result = reconcile(ctx, lab.config(policy="report"))
        kept = DriftTable(ctx.store).all()
        assert [(d.subject.endswith("vf3"), d.aspect, d.repair) for d in result.drift] == [
            (True, "trust", False)
        ]
        assert kept == result.drift
        assert kernel_vf(lab, 3)["trust"] is True
        repaired = reconcile(ctx, lab.config())  # the policy back to repair
        assert repaired.failed == () and kernel_vf(lab, 3)["trust"] is False
        assert DriftTable(ctx.store).all() == ()


def test_an_external_unbind_of_a_free_vf_is_repaired(lab: Lab) -> None:
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        address = ctx.pf(lab.pf, settings=False).vf(0).address
        assert address is not None
        write(SYS / "bus/pci/devices" / str(address) / "driver/unbind", str(address))
        assert driver_of(address) is None
        result = reconcile(ctx, lab.config())
        assert [(d.aspect, d.repair) for d in result.drift] == [("driver", True)]
        assert driver_of(address) == "igbvf"


def test_an_external_vf_count_write_is_found_and_repaired(lab: Lab) -> None:
    """echo 0, then 1 > sriov_numvfs behind qtagent's back, on a PF no VM uses: put back
    to the desired 3, through 0."""
    numvfs = SYS / "bus/pci/devices" / lab.free_pf / "sriov_numvfs"
    write(numvfs, "0")
    write(numvfs, "1")
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        result = reconcile(ctx, lab.config())
        assert [(d.subject, d.have, d.want, d.repair) for d in result.drift] == [
            (f"PF {lab.free_pf}", "1 VFs", "3 VFs", True)
        ]
        assert result.failed == ()
        assert ctx.pf(lab.free_pf, settings=False).num_vfs == 3


def test_a_desired_count_is_not_forced_while_vms_hold_vfs(lab: Lab) -> None:
    """Not overwritten while VFs are allocated (C8): the VMs keep theirs."""
    with HostContext(HostPaths(db_path=lab.db)) as ctx:
        result = reconcile(ctx, lab.config(num_vfs=6))
        (drift,) = result.drift
        assert (drift.aspect, drift.repair) == ("VF count", False)
        assert "VF1" in drift.why and "VF2" in drift.why
        assert ctx.pf(lab.pf, settings=False).num_vfs == 4
        assert ctx.virt.hostdev_addresses(VM_A) == (ctx.pf(lab.pf).vf(1).address,)
        reconcile(ctx, lab.config())  # back to 4: no drift left
        assert DriftTable(ctx.store).all() == ()

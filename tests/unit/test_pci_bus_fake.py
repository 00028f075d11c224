"""The fake PCI bus keeps the kernel rules the ops tests rely on (FIELD-CASES, "Kernel
rules"), through the real SysfsWriter's methods and read back with the real reader."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.errors import KernelError, NotFound, QtagentError
from qtagent.model.types import PciAddress
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import FakeNetdev, FakeNetdevsim, igb_host

PF = "0000:41:00.0"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    host = igb_host(n_vfs=2, total_vfs=7)
    host.netdevsims.append(FakeNetdevsim(0, ports=[FakeNetdev("eni0np1", 900)], max_vfs=4))
    rig = FakeHostRig.build(tmp_path, host)
    yield rig
    rig.ctx.close()


def errno_of(call: object) -> int | None:
    assert callable(call)
    with pytest.raises(QtagentError) as raised:
        call()
    return raised.value.errno


def test_sriov_numvfs_follows_the_kernel_rules(rig: FakeHostRig) -> None:
    bus = rig.bus
    assert errno_of(lambda: bus.write_num_vfs(PF, 8)) == errno.ERANGE
    assert errno_of(lambda: bus.write_num_vfs(PF, 3)) == errno.EBUSY
    bus.write_num_vfs(PF, 2)  # the current count: a no-op
    assert rig.ctx.pf(PF).num_vfs == 2

    bus.write_num_vfs(PF, 0)
    pf = rig.ctx.pf(PF)
    assert (pf.num_vfs, pf.vfs) == (0, ())
    assert not any(p.name.startswith("virtfn") for p in rig.tree.device_dir(PF).iterdir())
    assert sorted(p.name for p in (rig.tree.root / "class/net").iterdir()) == ["eni0np1", "enp65s0"]
    assert rig.netlink.pfs[100].vfs == {}

    bus.write_num_vfs(PF, 3)
    pf = rig.ctx.pf(PF)
    assert [(vf.driver, vf.netdev is not None) for vf in pf.vfs] == [("igbvf", True)] * 3
    groups = {vf.iommu_group.number for vf in pf.vfs if vf.iommu_group is not None}
    assert len(groups) == 3  # each VF in its own group
    assert len(rig.netlink.pfs[100].vfs) == 3


def test_a_pf_without_driver_takes_no_vf_count(rig: FakeHostRig) -> None:
    rig.bus.write_num_vfs(PF, 0)
    rig.bus.release_driver(PF)
    with pytest.raises(NotFound) as raised:
        rig.bus.write_num_vfs(PF, 2)
    assert raised.value.errno == errno.ENOENT


def test_netdevsim_counts_and_enomem_above_max_vfs(rig: FakeHostRig) -> None:
    assert errno_of(lambda: rig.bus.write_num_vfs("netdevsim0", 5)) == errno.ENOMEM
    rig.bus.write_num_vfs("netdevsim0", 4)
    assert rig.ctx.pf("netdevsim0").num_vfs == 4 and len(rig.netlink.pfs[900].vfs) == 4
    assert errno_of(lambda: rig.bus.write_num_vfs("netdevsim0", 2)) == errno.EBUSY


def test_driver_core_override_unbind_probe(rig: FakeHostRig) -> None:
    bus, vf0 = rig.bus, rig.address(0)
    bus.set_driver_override(vf0, "vfio-pci")
    assert bus.driver(str(vf0)) == "igbvf"  # an override alone binds nothing
    bus.probe(vf0)
    assert bus.driver(str(vf0)) == "igbvf"  # a bound device stays as it is
    # igbvf's unbind file (through vf0's driver link) told to unbind the PF, which
    # is on igb: ENODEV.
    path = bus.pci_device(vf0) / "driver" / "unbind"
    with pytest.raises(KernelError) as raised:
        bus._write(path, PF)
    assert raised.value.errno == errno.ENODEV
    bus.unbind(vf0)
    assert bus.driver(str(vf0)) is None and rig.vf(0).netdev is None
    bus.probe(vf0)
    assert bus.driver(str(vf0)) == "vfio-pci" and rig.vfio_nodes() == ["3"]
    bus.set_driver_override(vf0, None)
    bus.unbind(vf0)
    assert rig.vfio_nodes() == []
    bus.loaded.discard("igbvf")
    bus.probe(vf0)
    assert bus.driver(str(vf0)) is None  # nothing loaded matches: driverless, no error
    bus.load_module("igbvf")
    assert bus.driver(str(vf0)) == "igbvf" and rig.vf(0).netdev == "enp65s0v0"


def test_libvirt_sees_the_trees_drivers(rig: FakeHostRig) -> None:
    vf0 = rig.address(0)
    assert rig.virt.drivers[vf0] == "igbvf"
    assert rig.virt.drivers.get(PciAddress.parse("0000:99:00.0")) is None
    rig.virt.drivers[vf0] = "vfio-pci"  # a managed hostdev: nodedev-detach
    assert rig.bus.driver(str(vf0)) == "vfio-pci"

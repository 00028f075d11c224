"""The sysfs reader against the real kernel of the lab guest (two igb PFs, netdevsim).

Run in the guest::

    qtagent lab run -- pytest -p no:cacheprovider tests/lab/test_sysfs_reader_lab.py

Skipped anywhere without an igb PF (that is, outside the lab).
Expected values are read independently (readlink, if_nametoindex, debugfs) and
compared with the snapshot; the last test checks that the fake tree of the unit
tests lays its links out exactly as this kernel does.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.model.host import HostSnapshot, PfBus, PfInfo
from qtagent.model.types import MacAddress, PciAddress, VfId
from qtagent.sysfs.reader import read_host
from tests.fakes.sysfs_tree import FakeFunction, FakeHost, FakeNetdev, FakePf, FakeSysfs, FakeVf
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS, wait_for

N_VFS = 3


def igb_pf_dirs() -> list[Path]:
    """``ls -d /sys/bus/pci/drivers/igb/0000:*`` (addresses move between boots)."""
    return sorted(IGB.glob("0000:*")) if IGB.is_dir() else []


pytestmark = [*IN_LAB_GUEST]


def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def link_base(path: Path) -> str:
    return os.readlink(path).rpartition("/")[2]


def igb_pfs(snapshot: HostSnapshot) -> list[PfInfo]:
    return [pf for pf in snapshot.pfs if pf.bus is PfBus.PCI and pf.driver == "igb"]


def set_numvfs(pf_dir: Path, count: int) -> None:
    """``echo 0 > sriov_numvfs; echo N > sriov_numvfs`` (N>0 to M>0 is EBUSY)."""
    (pf_dir / "sriov_numvfs").write_text("0")
    if count:
        (pf_dir / "sriov_numvfs").write_text(str(count))


def vfs_ready(pf_dir: Path, count: int) -> bool:
    links = [pf_dir / f"virtfn{i}" for i in range(count)]
    return all((v / "driver").exists() and any((v / "net").glob("*")) for v in links)


@pytest.fixture(scope="module")
def with_vfs() -> Iterator[list[Path]]:
    pf_dirs = igb_pf_dirs()
    for pf_dir in pf_dirs:
        set_numvfs(pf_dir, N_VFS)
    wait_for("igbvf VFs with netdevs", lambda: all(vfs_ready(p, N_VFS) for p in pf_dirs))
    yield pf_dirs
    for pf_dir in pf_dirs:
        set_numvfs(pf_dir, 0)


# ---------------------------------------------------------------- PFs


def test_both_igb_pfs_found() -> None:
    pfs = igb_pfs(read_host())
    assert [pf.name for pf in pfs] == [d.name for d in igb_pf_dirs()]
    assert len(pfs) == 2
    assert {pf.numa_node for pf in pfs} == {0, 1}
    for pf in pfs:
        real = SYS / "bus/pci/devices" / pf.name
        assert pf.address == PciAddress.parse(pf.name)
        assert pf.identity is not None and pf.identity.ids == "8086:10c9"
        assert pf.identity.vendor_name == "Intel Corporation"
        assert pf.identity.device_name == "82576 Gigabit Network Connection"
        assert pf.vf_identity is not None and pf.vf_identity.ids == "8086:10ca"
        assert pf.vf_identity.device_name == "82576 Virtual Function"
        assert pf.total_vfs == 7
        assert pf.num_vfs == int((real / "sriov_numvfs").read_text())
        assert pf.iommu_group == int(link_base(real / "iommu_group"))
        assert pf.netdev == os.listdir(real / "net")[0]
        assert pf.ifindex == socket.if_nametoindex(pf.netdev)
        assert pf.mac == MacAddress.parse((real / "net" / pf.netdev / "address").read_text())
        assert read_host().pf(pf.netdev).name == pf.name


def test_speed_unknown_while_down_known_while_up() -> None:
    """``cat speed`` is EINVAL on a down link: the reader shows None, then 1000 once up."""
    pf = igb_pfs(read_host())[0]
    assert pf.netdev is not None
    was_up = pf.operstate == "up"
    sh(f"ip link set dev {pf.netdev} down")
    try:
        down = read_host().pf(pf.name)
        assert (down.operstate, down.speed_mbps) == ("down", None)
        sh(f"ip link set dev {pf.netdev} up")
        wait_for("carrier", lambda: read_host().pf(pf.name).operstate == "up", timeout=30)
        assert read_host().pf(pf.name).speed_mbps == 1000
    finally:
        sh(f"ip link set dev {pf.netdev} {'up' if was_up else 'down'}")


# ---------------------------------------------------------------- VFs


def test_vfs_after_writing_numvfs(with_vfs: list[Path]) -> None:
    snapshot = read_host()
    for pf_dir, pf in zip(with_vfs, igb_pfs(snapshot), strict=True):
        assert (pf.num_vfs, [vf.id for vf in pf.vfs]) == (
            N_VFS,
            [VfId(pf.name, i) for i in range(N_VFS)],
        )
        for vf in pf.vfs:
            link = pf_dir / f"virtfn{vf.index}"
            assert str(vf.address) == link_base(link)
            assert (link / "device").read_text().strip() == "0x10ca"
            assert vf.driver == "igbvf"
            assert vf.netdev == os.listdir(link / "net")[0]
            assert vf.iommu_group is not None
            assert vf.iommu_group.number == int(link_base(link / "iommu_group"))
            assert vf.iommu_group.members == ((vf.address, "igbvf"),)  # intel-iommu: one each
            assert vf.iommu_group.bridges == ()
        assert len({vf.iommu_group for vf in pf.vfs}) == N_VFS


def test_unbound_vf_has_no_driver_and_no_netdev(with_vfs: list[Path]) -> None:
    pf_name = with_vfs[0].name
    vf = read_host().vf(VfId(pf_name, 1))
    sh(f"echo {vf.address} > /sys/bus/pci/drivers/igbvf/unbind")
    try:
        unbound = read_host().vf(VfId(pf_name, 1))
        assert (unbound.address, unbound.driver, unbound.netdev) == (vf.address, None, None)
        assert unbound.iommu_group is not None
        assert unbound.iommu_group.members == ((vf.address, None),)
    finally:
        sh(f"echo {vf.address} > /sys/bus/pci/drivers/igbvf/bind")
        wait_for("the VF's netdev", lambda: vfs_ready(with_vfs[0], N_VFS))
    assert read_host().vf(VfId(pf_name, 1)).driver == "igbvf"


def test_renaming_netdevs_changes_only_the_shown_name(with_vfs: list[Path]) -> None:
    """C10 on the real kernel: ``ip link set $vf name ...`` keeps the VF's identity."""
    pf_name = with_vfs[0].name
    before = read_host().vf(VfId(pf_name, 0))
    assert before.netdev is not None
    sh(f"ip link set dev {before.netdev} down && ip link set dev {before.netdev} name qtvf0")
    try:
        after = read_host().vf(VfId(pf_name, 0))
        assert (after.id, after.address, after.netdev) == (before.id, before.address, "qtvf0")
        assert after.iommu_group == before.iommu_group
    finally:
        sh(f"ip link set dev qtvf0 name {before.netdev}")


# ---------------------------------------------------------------- netdevsim


def test_netdevsim_pf_found() -> None:
    devices = sorted((SYS / "bus/netdevsim/devices").glob("netdevsim*"))
    assert devices, "the lab should have created netdevsim1 (is netdevsim.ko cached?)"
    dev = devices[0]
    set_numvfs(dev, 2)
    try:
        pf = read_host().pf(dev.name)
        max_vfs = int((SYS / "kernel/debug/netdevsim" / dev.name / "max_vfs").read_text())
        assert (pf.bus, pf.address, pf.identity, pf.driver) == (
            PfBus.NETDEVSIM, None, None, "netdevsim",
        )  # fmt: skip
        assert (pf.total_vfs, pf.num_vfs) == (max_vfs, 2)
        assert [vf.id for vf in pf.vfs] == [VfId(dev.name, 0), VfId(dev.name, 1)]
        assert all(vf.address is None and vf.netdev is None for vf in pf.vfs)
        port = os.listdir(dev / "net")[0]
        assert (pf.netdev, pf.ifindex) == (port, socket.if_nametoindex(port))
    finally:
        set_numvfs(dev, 0)


# ---------------------------------------------------------------- the fake's fidelity


_LINK_GLOBS = ("driver", "iommu_group", "physfn", "device", "subsystem", "virtfn*", "net/*/*")


def _links(root: Path, addresses: set[str], netdevs: set[str]) -> set[tuple[str, str]]:
    """Every link sysfs has for these functions and netdevs, as (path, target),
    IOMMU group numbers blanked (the fake numbers groups its own way)."""
    found = set()
    paths = [root / "bus/pci/devices" / a for a in addresses]
    paths += [root / "class/net" / n for n in netdevs]
    for entry in paths:
        found.add((str(entry.relative_to(root)), os.readlink(entry)))
        real = entry.resolve()
        for link in (link for sub in _LINK_GLOBS for link in real.glob(sub)):
            if link.is_symlink():
                found.add((str(link.relative_to(root)), os.readlink(link)))
        if (real / "driver").exists():
            drv = (real / "driver").resolve() / entry.name
            found.add((str(drv.relative_to(root)), os.readlink(drv)))
        if (real / "iommu_group").exists():
            member = (real / "iommu_group").resolve() / "devices" / entry.name
            found.add((str(member.relative_to(root)), os.readlink(member)))
    return {(_blank_group(path), _blank_group(target)) for path, target in found}


def _blank_group(text: str) -> str:
    return re.sub(r"iommu_groups/\d+", "iommu_groups/N", text)


def _describe_real_host(pf_dirs: list[Path]) -> FakeHost:
    """The same functions as data: root ports, PFs, VFs, netdevs (group numbers as real)."""
    host = FakeHost()
    for pf_dir in pf_dirs:
        real = pf_dir.resolve()
        port = real.parent.name

        def group(d: Path) -> int:
            return int(link_base(d / "iommu_group"))

        def netdev(d: Path) -> FakeNetdev:
            name = os.listdir(d / "net")[0]
            return FakeNetdev(name, socket.if_nametoindex(name))

        host.functions.append(
            FakeFunction(
                port, pci_class=0x060400, driver="pcieport", iommu_group=group(real.parent)
            )
        )
        vfs = [
            FakeVf(link_base(v), netdev=netdev(v), iommu_group=group(v))
            for v in sorted(pf_dir.glob("virtfn*"), key=lambda v: int(v.name[6:]))
        ]
        host.pfs.append(
            FakePf(pf_dir.name, netdev=netdev(real), iommu_group=group(real), parent=port, vfs=vfs)
        )
    return host


def test_fake_tree_links_match_the_kernel(with_vfs: list[Path], tmp_path: Path) -> None:
    host = _describe_real_host(with_vfs)
    fake = FakeSysfs(tmp_path / "sys").build(host)
    addresses = {f.address for f in host.functions} | {p.address for p in host.pfs}
    addresses |= {v.address for p in host.pfs for v in p.vfs}
    netdevs = {p.netdev.name for p in host.pfs if p.netdev}
    netdevs |= {v.netdev.name for p in host.pfs for v in p.vfs if v.netdev}
    real_links = _links(SYS, addresses, netdevs)
    fake_links = _links(fake.root, addresses, netdevs)
    n_vfs = sum(len(p.vfs) for p in host.pfs)
    # per function: bus/pci/devices, driver, drivers/<drv>/<addr>, iommu_group, the group's
    # devices/<addr>, subsystem; virtfnN and physfn per VF; class/net, device, subsystem per netdev
    assert len(real_links) == 6 * len(addresses) + 2 * n_vfs + 3 * len(netdevs)
    assert fake_links == real_links
    # and the reader sees the same host in both (settings and names aside)
    real_pfs = {pf.name: pf for pf in igb_pfs(read_host())}
    for pf in read_host(fake.root).pfs:
        assert [(v.id, v.address, v.driver, v.netdev) for v in pf.vfs] == [
            (v.id, v.address, v.driver, v.netdev) for v in real_pfs[pf.name].vfs
        ]

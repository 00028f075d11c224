"""The sysfs reader against fake trees built from data (tests/fakes/sysfs_tree.py)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtagent.errors import KernelError, NotFound
from qtagent.model.host import HostSnapshot, PfBus, VfSettings
from qtagent.model.types import MacAddress, PciAddress, VfId
from qtagent.netlink.api import Knob, KnobValue, VfNetlink
from qtagent.sysfs.pci_ids import PciIdDatabase
from qtagent.sysfs.reader import SysfsReader, read_host
from tests.fakes.sysfs_tree import (
    FakeFunction,
    FakeHost,
    FakeNetdev,
    FakeNetdevsim,
    FakePf,
    FakeSysfs,
    FakeVf,
    igb_host,
    vf_address,
)

PF = "0000:41:00.0"
IB_ADDRESS = ":".join(["80", "00", "02", "08", "fe", "80"] + ["00"] * 13 + ["01"])
NO_IDS = PciIdDatabase.disabled()


def read(
    root: Path, *, pci_ids: PciIdDatabase = NO_IDS, netlink: VfNetlink | None = None
) -> HostSnapshot:
    return read_host(root, pci_ids=pci_ids, netlink=netlink)


@pytest.fixture
def tree(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys")


# ---------------------------------------------------------------- PFs and VFs


def test_empty_tree_and_missing_root_give_no_pfs(tmp_path: Path, tree: FakeSysfs) -> None:
    tree.build(FakeHost())
    assert read(tree.root).pfs == ()
    assert read(tmp_path / "nothing-here").pfs == ()


def test_pf_without_vfs(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 0))
    (pf,) = read(tree.root).pfs
    assert pf.name == PF
    assert pf.bus is PfBus.PCI
    assert pf.address == PciAddress(0, 0x41, 0, 0)
    assert pf.identity is not None and pf.identity.ids == "8086:10c9"
    assert pf.vf_identity is not None and pf.vf_identity.ids == "8086:10ca"
    assert (pf.driver, pf.netdev, pf.ifindex) == ("igb", "enp65s0", 100)
    assert pf.mac == MacAddress.parse("52:54:00:12:34:00")
    assert (pf.operstate, pf.speed_mbps, pf.numa_node, pf.iommu_group) == ("down", None, 0, 2)
    assert (pf.total_vfs, pf.num_vfs, pf.vfs) == (7, 0, ())


def test_pf_with_vfs_in_index_order(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 5))
    (pf,) = read(tree.root).pfs
    assert pf.num_vfs == 5
    assert [vf.id for vf in pf.vfs] == [VfId(PF, i) for i in range(5)]
    for i, vf in enumerate(pf.vfs):
        address = PciAddress.parse(vf_address(PF, i))
        assert vf.address == address
        assert (vf.driver, vf.netdev) == ("igbvf", f"enp65s0v{i}")
        assert vf.iommu_group is not None
        assert vf.iommu_group.members == ((address, "igbvf"),)
        assert vf.iommu_group.bridges == ()
        assert vf.settings == VfSettings()
    assert [str(vf.address) for vf in pf.vfs][:3] == [
        "0000:41:10.0",
        "0000:41:10.2",
        "0000:41:10.4",
    ]


def test_vf_index_comes_from_virtfn_links_not_listing_order(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 12))
    (pf,) = read(tree.root).pfs
    assert [vf.index for vf in pf.vfs] == list(range(12))  # virtfn10 after virtfn9
    assert pf.vf(10).address == PciAddress.parse(vf_address(PF, 10))


def test_unbound_vf_and_vf_without_netdev(tree: FakeSysfs) -> None:
    host = igb_host(1, 0)
    host.pfs[0].vfs = [
        FakeVf(vf_address(PF, 0), driver=None, iommu_group=50),
        FakeVf(vf_address(PF, 1), driver="vfio-pci", iommu_group=51),
        FakeVf(vf_address(PF, 2), netdev=FakeNetdev("eth7", 9), iommu_group=52),
    ]
    tree.build(host)
    unbound, vfio, bound = read(tree.root).pfs[0].vfs
    assert (unbound.driver, unbound.netdev) == (None, None)
    assert unbound.iommu_group is not None
    assert unbound.iommu_group.members == ((unbound.address, None),)
    assert (vfio.driver, vfio.netdev) == ("vfio-pci", None)
    assert (bound.driver, bound.netdev) == ("igbvf", "eth7")


def test_unbinding_a_vf_shows_on_the_next_read(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 2))
    tree.unbind(vf_address(PF, 1))
    vf = read(tree.root).pfs[0].vf(1)
    assert (vf.driver, vf.netdev) == (None, None)
    assert not (tree.root / "class/net/enp65s0v1").exists()


def test_iommu_group_with_several_members_and_bridges(tree: FakeSysfs) -> None:
    """No ACS: root port, a PCI bridge behind it, PF and VFs share group 9 (C7's input)."""
    port, bridge = "0000:40:00.0", "0000:40:01.0"
    host = FakeHost(
        functions=[
            FakeFunction(port, 0x1B36, 0x000C, 0x060400, "pcieport", iommu_group=9),
            FakeFunction(bridge, 0x8086, 0x244E, 0x060401, None, iommu_group=9),
        ],
        pfs=[
            FakePf(
                PF,
                iommu_group=9,
                parent=port,
                vfs=[FakeVf(vf_address(PF, i), iommu_group=9) for i in range(2)],
            )
        ],
    )
    tree.build(host)
    (pf,) = read(tree.root).pfs
    assert pf.iommu_group == 9
    group = pf.vf(0).iommu_group
    assert group is not None and group is pf.vf(1).iommu_group  # read once per snapshot
    assert group.number == 9
    assert group.members == (
        (PciAddress.parse(port), "pcieport"),
        (PciAddress.parse(bridge), None),
        (PciAddress.parse(PF), "igb"),
        (PciAddress.parse(vf_address(PF, 0)), "igbvf"),
        (PciAddress.parse(vf_address(PF, 1)), "igbvf"),
    )
    assert group.bridges == (PciAddress.parse(port), PciAddress.parse(bridge))


def test_no_iommu_means_no_group(tree: FakeSysfs) -> None:
    host = igb_host(1, 0)
    host.pfs[0].iommu_group = None
    host.pfs[0].vfs = [FakeVf(vf_address(PF, 0), iommu_group=None)]
    tree.build(host)
    (pf,) = read(tree.root).pfs
    assert (pf.iommu_group, pf.vf(0).iommu_group) == (None, None)


def test_non_sriov_functions_are_not_pfs(tree: FakeSysfs) -> None:
    host = igb_host(2, 1)
    host.functions.append(FakeFunction("0000:00:1f.2", pci_class=0x010601, driver="ahci"))
    tree.build(host)
    assert [pf.name for pf in read(tree.root).pfs] == ["0000:41:00.0", "0000:81:00.0"]


def test_unbound_pf_and_pf_without_numa(tree: FakeSysfs) -> None:
    host = igb_host(1, 0)
    host.pfs[0].driver = None
    host.pfs[0].netdev = None
    host.pfs[0].numa_node = -1
    tree.build(host)
    (pf,) = read(tree.root).pfs
    assert (pf.driver, pf.netdev, pf.ifindex, pf.mac, pf.operstate) == (None,) * 5
    assert pf.numa_node is None


def test_link_speed_is_read_when_known(tree: FakeSysfs) -> None:
    host = igb_host(2, 0)
    assert host.pfs[0].netdev is not None and host.pfs[1].netdev is not None
    host.pfs[0].netdev.operstate, host.pfs[0].netdev.speed = "up", 1000
    host.pfs[1].netdev.operstate, host.pfs[1].netdev.speed = "lowerlayerdown", -1
    tree.build(host)
    up, no_carrier = read(tree.root).pfs
    assert (up.operstate, up.speed_mbps) == ("up", 1000)
    assert (no_carrier.operstate, no_carrier.speed_mbps) == ("lowerlayerdown", None)


def test_function_with_several_netdevs_shows_lowest_ifindex(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 0))
    tree.add_netdev(tree.device_dir(PF), FakeNetdev("aaa", ifindex=500))
    tree.add_netdev(tree.device_dir(PF), FakeNetdev("zzz", ifindex=7))
    (pf,) = read(tree.root).pfs
    assert (pf.netdev, pf.ifindex) == ("zzz", 7)


# ---------------------------------------------------------------- netdevsim


def nsim_host(num_vfs: int = 2, max_vfs: int | None = 4) -> FakeHost:
    port = FakeNetdev("eni1np1", 10, mac="46:1c:80:6e:9c:25")
    return FakeHost(netdevsims=[FakeNetdevsim(1, [port], num_vfs=num_vfs, max_vfs=max_vfs)])


def test_netdevsim_pf(tree: FakeSysfs) -> None:
    tree.build(nsim_host())
    (pf,) = read(tree.root).pfs
    assert (pf.name, pf.bus, pf.address, pf.identity, pf.vf_identity) == (
        "netdevsim1", PfBus.NETDEVSIM, None, None, None,
    )  # fmt: skip
    assert (pf.driver, pf.netdev, pf.ifindex) == ("netdevsim", "eni1np1", 10)
    assert (pf.total_vfs, pf.num_vfs) == (4, 2)
    assert (pf.numa_node, pf.iommu_group) == (None, None)
    assert [vf.id for vf in pf.vfs] == [VfId("netdevsim1", 0), VfId("netdevsim1", 1)]
    assert all(v.address is None and v.driver is None and v.netdev is None for v in pf.vfs)


@pytest.mark.parametrize(
    ("num_vfs", "max_vfs", "total"),
    [(0, 200, 200), (2, None, 4), (6, None, 6), (0, 1, 1)],
    ids=["raised-in-debugfs", "no-debugfs-default", "no-debugfs-above-default", "lowered"],
)
def test_netdevsim_total_vfs(
    tree: FakeSysfs, num_vfs: int, max_vfs: int | None, total: int
) -> None:
    tree.build(nsim_host(num_vfs, max_vfs))
    assert read(tree.root).pfs[0].total_vfs == total


def test_pci_pfs_come_before_netdevsim_in_number_order(tree: FakeSysfs) -> None:
    host = igb_host(1, 0)
    host.netdevsims = [FakeNetdevsim(10), FakeNetdevsim(2)]
    tree.build(host)
    assert [pf.name for pf in read(tree.root).pfs] == [PF, "netdevsim2", "netdevsim10"]


# ---------------------------------------------------------------- names (C10)


def test_pf_found_by_address_short_address_netdev_and_device_name(tree: FakeSysfs) -> None:
    host = igb_host(2, 1)
    host.netdevsims = nsim_host().netdevsims
    tree.build(host)
    snapshot = read(tree.root)
    for name in (PF, "41:00.0", "0000:41:00.0 ", "enp65s0"):
        assert snapshot.pf(name).name == PF
    assert snapshot.pf("eni1np1").name == snapshot.pf("netdevsim1").name == "netdevsim1"
    assert snapshot.vf(VfId(PF, 0)).netdev == "enp65s0v0"
    with pytest.raises(NotFound):
        snapshot.pf("enp65s0v0")  # a VF's netdev names no PF


def test_renaming_netdevs_changes_only_the_shown_name(tree: FakeSysfs) -> None:
    """C10: a VF is its PF plus its index; names are attributes."""
    tree.build(igb_host(1, 3))
    before = read(tree.root)
    tree.rename_netdev("enp65s0", "uplink0")
    tree.rename_netdev("enp65s0v1", "vm-a-eth0")
    after = read(tree.root)
    (pf_before,), (pf_after,) = before.pfs, after.pfs
    assert pf_after.name == pf_before.name == PF
    assert (pf_before.netdev, pf_after.netdev) == ("enp65s0", "uplink0")
    assert pf_after.ifindex == pf_before.ifindex
    assert [v.id for v in pf_after.vfs] == [v.id for v in pf_before.vfs]
    assert [v.address for v in pf_after.vfs] == [v.address for v in pf_before.vfs]
    assert after.vf(VfId(PF, 1)).netdev == "vm-a-eth0"
    assert after.pf("uplink0") is pf_after
    with pytest.raises(NotFound):
        after.pf("enp65s0")


# ---------------------------------------------------------------- netlink settings


class FakeVfNetlink:
    """A VfNetlink with fixed VF tables per PF ifindex; optionally runs ``during_read``."""

    def __init__(self, tables: Mapping[int, Mapping[int, VfSettings]]) -> None:
        self.tables = tables
        self.reads: list[int] = []
        self.during_read: dict[int, Callable[[], object]] = {}

    def read_vfs(self, pf_ifindex: int) -> Mapping[int, VfSettings]:
        self.reads.append(pf_ifindex)
        action = self.during_read.get(pf_ifindex)
        if action is not None:
            action()
        if pf_ifindex not in self.tables:
            raise NotFound(f"no link with ifindex {pf_ifindex}", errno=19)
        return self.tables[pf_ifindex]

    def set_knob(self, pf_ifindex: int, vf: int, knob: Knob, value: KnobValue) -> None:
        raise KernelError("read-only fake")

    def close(self) -> None:
        pass


def test_vf_settings_merged_from_netlink_by_pf_and_index(tree: FakeSysfs) -> None:
    host = igb_host(1, 3)
    host.netdevsims = nsim_host().netdevsims
    tree.build(host)
    vf1 = VfSettings(mac=MacAddress.parse("02:00:00:00:00:01"), vlan=100, spoofchk=True)
    nsim0 = VfSettings(trust=True)
    netlink = FakeVfNetlink({100: {1: vf1}, 10: {0: nsim0}})
    snapshot = read(tree.root, netlink=netlink)
    assert sorted(netlink.reads) == [10, 100]  # by the PF's ifindex, once per PF
    assert snapshot.vf(VfId(PF, 1)).settings == vf1
    assert snapshot.vf(VfId(PF, 0)).settings == VfSettings()
    assert snapshot.vf(VfId("netdevsim1", 0)).settings == nsim0


def test_netlink_failure_leaves_settings_unknown(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 2))
    snapshot = read(tree.root, netlink=FakeVfNetlink({}))
    assert [vf.settings for vf in snapshot.pfs[0].vfs] == [VfSettings(), VfSettings()]


def test_pf_without_netdev_is_not_asked_over_netlink(tree: FakeSysfs) -> None:
    host = igb_host(1, 1)
    host.pfs[0].netdev = None
    tree.build(host)
    netlink = FakeVfNetlink({})
    assert len(read(tree.root, netlink=netlink).pfs[0].vfs) == 1
    assert netlink.reads == []


def test_pf_vanishing_mid_read_is_left_out(tree: FakeSysfs) -> None:
    """The PF goes away between its attributes and its VFs: no half-read PF."""
    tree.build(igb_host(2, 3))
    netlink = FakeVfNetlink({100: {}, 1100: {}})
    netlink.during_read[100] = lambda: shutil.rmtree(tree.device_dir(PF).parent)
    snapshot = read(tree.root, netlink=netlink)
    assert [pf.name for pf in snapshot.pfs] == ["0000:81:00.0"]
    assert len(snapshot.pfs[0].vfs) == 3


# ---------------------------------------------------------------- odd and hostile trees


def pf_file(tree: FakeSysfs, name: str) -> Path:
    return tree.device_dir(PF) / name


@pytest.mark.parametrize(
    ("name", "text", "field", "expected"),
    [
        ("vendor", "intel", "identity", None),
        ("device", "0x1ffff", "identity", None),
        ("sriov_vf_device", "", "vf_identity", None),
        ("numa_node", "zero", "numa_node", None),
        ("numa_node", "-7", "numa_node", None),
        ("sriov_totalvfs", "lots", "total_vfs", 0),
        ("sriov_totalvfs", "-3", "total_vfs", 0),
        ("sriov_numvfs", "3 VFs", "num_vfs", 2),  # falls back to the virtfn links
        ("net/enp65s0/address", IB_ADDRESS, "mac", None),
        ("net/enp65s0/ifindex", "one", "ifindex", None),
        ("net/enp65s0/speed", "fast", "speed_mbps", None),
        ("net/enp65s0/operstate", "", "operstate", None),
        # What Python's int() takes but the kernel never writes:
        ("numa_node", " 1_0 ", "numa_node", None),
        ("numa_node", "+1", "numa_node", None),
        ("vendor", "8086", "identity", None),  # the kernel writes 0x8086
        ("device", "0x10C9", "identity", None),
        ("sriov_vf_device", "0x10ca", "vf_identity", None),  # the kernel writes 10ca
        ("sriov_totalvfs", "+7", "total_vfs", 0),
        ("sriov_numvfs", "1_0", "num_vfs", 2),
        ("net/enp65s0/ifindex", "1_00", "ifindex", None),
        ("net/enp65s0/speed", "+1000", "speed_mbps", None),
    ],
)
def test_garbage_attribute_becomes_unknown(
    tree: FakeSysfs, name: str, text: str, field: str, expected: object
) -> None:
    tree.build(igb_host(1, 2))
    pf_file(tree, name).write_text(text)
    (pf,) = read(tree.root).pfs
    assert getattr(pf, field) == expected
    assert [vf.id for vf in pf.vfs] == [VfId(PF, 0), VfId(PF, 1)]


@pytest.mark.parametrize(
    "name",
    ["vendor", "numa_node", "sriov_numvfs", "sriov_vf_device", "driver", "iommu_group", "net"],
)
def test_missing_entry_becomes_unknown(tree: FakeSysfs, name: str) -> None:
    tree.build(igb_host(1, 2))
    path = pf_file(tree, name)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    (pf,) = read(tree.root).pfs
    assert len(pf.vfs) == 2
    assert pf.num_vfs == 2


def test_missing_totalvfs_means_not_a_pf(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 2))
    pf_file(tree, "sriov_totalvfs").unlink()
    assert read(tree.root).pfs == ()


def test_binary_junk_fifo_and_directory_in_place_of_attributes(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 1))
    pf_file(tree, "vendor").write_bytes(b"\xff\xfe\x00garbage")
    pf_file(tree, "numa_node").unlink()
    pf_file(tree, "numa_node").mkdir()
    pf_file(tree, "sriov_numvfs").unlink()
    os.mkfifo(pf_file(tree, "sriov_numvfs"))  # would block a plain open()
    (pf,) = read(tree.root).pfs
    assert (pf.identity, pf.numa_node, pf.num_vfs) == (None, None, 1)


def test_dangling_and_odd_links(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 4))
    pf_dir = tree.device_dir(PF)
    tree.remove(vf_address(PF, 1))  # virtfn1 now dangles
    (pf_dir / "virtfn2").unlink()
    (pf_dir / "virtfn2").symlink_to("virtfn2")  # a loop
    (pf_dir / "virtfn3").unlink()
    (pf_dir / "virtfn3").symlink_to("../not-a-pci-address")
    (pf_dir / "virtfnX").symlink_to("../0000:41:10.0")  # not virtfn<N>
    (pf,) = read(tree.root).pfs
    assert [vf.index for vf in pf.vfs] == [0]
    assert pf.num_vfs == 4  # what the kernel says, even if links are odd


def test_dangling_pf_link_and_junk_in_bus_listing(tree: FakeSysfs) -> None:
    tree.build(igb_host(2, 1))
    tree.remove("0000:81:00.0")
    (tree.root / "bus/pci/devices/junk").mkdir()
    (tree.root / "bus/pci/devices/junk/sriov_totalvfs").write_text("7\n")
    assert [pf.name for pf in read(tree.root).pfs] == [PF]


def test_malformed_attribute_is_logged_as_a_warning_naming_the_file(
    tree: FakeSysfs, caplog: pytest.LogCaptureFixture
) -> None:
    tree.build(igb_host(1, 1))
    pf_file(tree, "sriov_numvfs").write_text("+1\n")
    (pf,) = read(tree.root).pfs
    assert pf.num_vfs == 1  # from the virtfn links
    path = tree.root / "bus/pci/devices" / PF / "sriov_numvfs"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"{path} holds b'+1\\n', not an integer as the kernel writes it ('%u'); "
            "taken as unknown",
        )
    ]


def test_virtfn_link_with_a_non_ascii_digit_is_not_a_second_vf(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 2))
    (pf_file(tree, "virtfn\u0661")).symlink_to(f"../{vf_address(PF, 1)}")  # int() reads 1
    (pf_file(tree, "virtfn01")).symlink_to(f"../{vf_address(PF, 1)}")
    (pf,) = read(tree.root).pfs
    assert [vf.id for vf in pf.vfs] == [VfId(PF, 0), VfId(PF, 1)]


@pytest.mark.parametrize("index", [0x10000, 2**32, 10**19])
def test_a_virtfn_index_no_device_has_is_left_out_with_a_warning(
    tree: FakeSysfs, caplog: pytest.LogCaptureFixture, index: int
) -> None:
    """virtfn4294967296 was read as VF 4294967296."""
    tree.build(igb_host(1, 2))
    pf_file(tree, f"virtfn{index}").symlink_to(f"../{vf_address(PF, 1)}")
    (pf,) = read(tree.root).pfs
    assert [vf.id for vf in pf.vfs] == [VfId(PF, 0), VfId(PF, 1)]
    pf_dir = tree.root / "bus/pci/devices" / PF
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"{pf_dir}/virtfn{index}: VF index {index} is above 65535, which no SR-IOV "
            "device has; left out",
        )
    ]


def test_the_largest_virtfn_index_is_still_a_vf(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 1))
    pf_file(tree, "virtfn65535").symlink_to(f"../{vf_address(PF, 0)}")
    (pf,) = read(tree.root).pfs
    assert [vf.index for vf in pf.vfs] == [0, 65535]


def test_vf_counts_and_ifindexes_the_kernel_never_writes_are_unknown(
    tree: FakeSysfs, caplog: pytest.LogCaptureFixture
) -> None:
    tree.build(igb_host(1, 2))
    pf_file(tree, "sriov_totalvfs").write_text("65537\n")
    pf_file(tree, "sriov_numvfs").write_text("4294967296\n")
    pf_file(tree, "net/enp65s0/ifindex").write_text("2147483648\n")
    (pf,) = read(tree.root).pfs
    assert (pf.total_vfs, pf.num_vfs, pf.ifindex) == (0, 2, None)  # no VFs, from links, unknown
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 3
    assert "holds 2147483648, above 2147483647, which the kernel never writes" in caplog.text


def test_a_netdevsim_count_no_device_has_leaves_it_out_at_once(tree: FakeSysfs) -> None:
    """The reader built one VF per count: 10**19 of them ran forever."""
    tree.build(nsim_host())
    tree.write("devices/netdevsim1/sriov_numvfs", "70000")
    assert read(tree.root).pfs == ()


def test_iommu_group_named_by_a_digit_int_cannot_read(tree: FakeSysfs) -> None:
    """'²'.isdigit() is True but int('²') raises: the reader must not."""
    tree.build(igb_host(1, 1))
    vf_dir = tree.device_dir(vf_address(PF, 0))
    (tree.root / "kernel/iommu_groups/\u00b2/devices").mkdir(parents=True)
    (vf_dir / "iommu_group").unlink()
    (vf_dir / "iommu_group").symlink_to("../../../../kernel/iommu_groups/\u00b2")
    (pf,) = read(tree.root).pfs
    assert pf.vf(0).iommu_group is None


def test_dangling_iommu_group_link(tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 1))
    vf_dir = tree.device_dir(vf_address(PF, 0))
    (vf_dir / "iommu_group").unlink()
    (vf_dir / "iommu_group").symlink_to("../../../../kernel/iommu_groups/999")
    group = read(tree.root).pfs[0].vf(0).iommu_group
    assert group is not None and (group.number, group.members) == (999, ())


def test_odd_netdevsim_entries(tree: FakeSysfs) -> None:
    tree.build(nsim_host())
    (tree.root / "bus/netdevsim/devices/netdevsimX").mkdir()
    (tree.root / "bus/netdevsim/devices/netdevsim9").symlink_to("../../../devices/gone")
    tree.write("devices/netdevsim1/sriov_numvfs", "two")
    assert read(tree.root).pfs == ()


ATTRS = [
    "vendor", "device", "numa_node", "sriov_totalvfs", "sriov_numvfs", "sriov_vf_device",
    "net/enp65s0/address", "net/enp65s0/ifindex", "net/enp65s0/operstate",
]  # fmt: skip


@pytest.fixture(scope="module")
def shared_tree(tmp_path_factory: pytest.TempPathFactory) -> FakeSysfs:
    """One tree for every hypothesis example; each example restores what it spoiled."""
    return FakeSysfs(tmp_path_factory.mktemp("junk") / "sys").build(igb_host(1, 3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.dictionaries(st.sampled_from(ATTRS), st.binary(max_size=64), min_size=1))
def test_any_junk_in_attributes_never_breaks_identity(
    shared_tree: FakeSysfs, junk: dict[str, bytes]
) -> None:
    saved = {name: pf_file(shared_tree, name).read_bytes() for name in junk}
    try:
        for name, data in junk.items():
            pf_file(shared_tree, name).write_bytes(data)
        snapshot = read(shared_tree.root)
    finally:
        for name, data in saved.items():
            pf_file(shared_tree, name).write_bytes(data)
    (pf,) = snapshot.pfs
    assert pf.name == PF
    assert [vf.id for vf in pf.vfs] == [VfId(PF, i) for i in range(3)]
    assert pf.total_vfs >= 0 and pf.num_vfs >= 0


def test_reading_while_the_tree_changes_never_raises(tree: FakeSysfs) -> None:
    """PFs and VFs come and go under a running reader (C8): every read completes."""
    host = igb_host(2, 8)
    tree.build(host)
    spare = tree.root.parent / "spare"
    shutil.copytree(tree.root, spare, symlinks=True)
    pf_parent = tree.device_dir("0000:81:00.0").parent
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            shutil.rmtree(pf_parent, ignore_errors=True)
            shutil.copytree(spare / pf_parent.relative_to(tree.root), pf_parent, symlinks=True)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        seen = {len(read(tree.root).pfs) for _ in range(100)}
    finally:
        stop.set()
        thread.join()
    assert seen <= {1, 2}
    snapshot = read(tree.root)
    assert [len(pf.vfs) for pf in snapshot.pfs] == [8, 8]


# ---------------------------------------------------------------- PCI ID names


PCI_IDS = """\
# comment
10c9  Some Vendor
\t10ca  Not the 82576 VF
8086  Intel Corporation
\t10c9  82576 Gigabit Network Connection
\t\t8086 0000  subsystem line
#\t10cb  commented out
\t10ca  82576 Virtual Function
8087  Intel Corp.
\t0aaa  Bluetooth

C 02  Network controller
\t00  Ethernet controller
"""


def test_names_from_pci_ids(tmp_path: Path, tree: FakeSysfs) -> None:
    ids_file = tmp_path / "pci.ids"
    ids_file.write_text(PCI_IDS)
    tree.build(igb_host(1, 1))
    db = PciIdDatabase([tmp_path / "missing.ids", ids_file])
    (pf,) = read(tree.root, pci_ids=db).pfs
    assert pf.identity is not None and pf.vf_identity is not None
    assert (pf.identity.vendor_name, pf.identity.device_name) == (
        "Intel Corporation", "82576 Gigabit Network Connection",
    )  # fmt: skip
    assert pf.vf_identity.device_name == "82576 Virtual Function"
    assert db.device_name(0x8086, 0x10CB) is None  # commented out
    assert db.device_name(0x8086, 0x0AAA) is None  # another vendor's device
    assert db.device_name(0x8087, 0x0AAA) == "Bluetooth"
    assert db.device_name(0x10C9, 0x10CA) == "Not the 82576 VF"
    assert db.vendor_name(0x0200) is None  # a class line is no vendor


def test_no_pci_ids_database_means_no_names(tmp_path: Path, tree: FakeSysfs) -> None:
    tree.build(igb_host(1, 0))
    (pf,) = read(tree.root, pci_ids=PciIdDatabase([tmp_path / "none"])).pfs
    assert pf.identity is not None
    assert (pf.identity.ids, pf.identity.vendor_name, pf.identity.device_name) == (
        "8086:10c9", None, None,
    )  # fmt: skip


def test_reader_reads_pci_ids_once(tmp_path: Path, tree: FakeSysfs) -> None:
    ids_file = tmp_path / "pci.ids"
    ids_file.write_text(PCI_IDS)
    tree.build(igb_host(1, 0))
    reader = SysfsReader(tree.root, pci_ids=PciIdDatabase([ids_file]))
    first = reader.snapshot()
    ids_file.unlink()  # names stay known: the file was read once and cached
    assert reader.snapshot() == first
    assert first.pfs[0].identity is not None
    assert first.pfs[0].identity.vendor_name == "Intel Corporation"


def _full_parse(text: str) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    """The obvious whole-file parser, as the reference for the lazy one."""
    vendors: dict[int, str] = {}
    devices: dict[tuple[int, int], str] = {}
    vendor = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            head, _, name = line.partition("  ")
            vendor = int(head, 16) if re.fullmatch("[0-9a-f]{4}", head) else None
            if vendor is not None:
                vendors[vendor] = name
        elif vendor is not None and not line.startswith("\t\t"):
            head, _, name = line[1:].partition("  ")
            devices.setdefault((vendor, int(head, 16)), name)
    return vendors, devices


_hex4 = st.integers(0, 0xFFFF)


@settings(max_examples=50, deadline=None)
@given(
    table=st.dictionaries(
        _hex4,
        st.dictionaries(_hex4, st.text("abcxyz 0123", min_size=1).map(str.strip).filter(bool)),
        max_size=6,
    ),
    probes=st.lists(st.tuples(_hex4, _hex4), max_size=10),
)
def test_lazy_lookup_agrees_with_full_parse(
    table: dict[int, dict[int, str]], probes: list[tuple[int, int]]
) -> None:
    lines = ["# generated"]
    for vendor, devs in sorted(table.items()):
        lines.append(f"{vendor:04x}  Vendor {vendor:04x}")
        lines += [f"\t{dev:04x}  {name}" for dev, name in sorted(devs.items())]
        lines.append("\t\t0000 0000  a subsystem")
    lines += ["", "C 02  Network controller", "\t00  Ethernet controller"]
    text = "\n".join(lines) + "\n"
    vendors, devices = _full_parse(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pci.ids"
        path.write_text(text)
        db = PciIdDatabase([path])
        everything = [(v, d) for v, devs in table.items() for d in devs] + probes
        for vendor, device in everything:
            assert db.vendor_name(vendor) == vendors.get(vendor)
            assert db.device_name(vendor, device) == devices.get((vendor, device))


def test_a_pf_name_wins_over_an_interface_that_borrows_it() -> None:
    """An interface may be named like another PF (FIELD-CASES C10: names are not
    identities); the PF's own device name or address must win."""
    from qtagent.model.host import HostSnapshot, PfBus, PfInfo
    from qtagent.model.types import PciAddress

    def pf(name: str, netdev: str, bus: PfBus = PfBus.PCI) -> PfInfo:
        address = PciAddress.parse(name) if bus is PfBus.PCI else None
        return PfInfo(name, bus, address, None, "d", netdev, 1, None, None, None, None, None, 7, 0)

    host = HostSnapshot((
        pf("0000:41:00.0", "netdevsim1"),
        pf("0000:81:00.0", "0000:41:00.0"),
        pf("netdevsim1", "eni1np1", PfBus.NETDEVSIM),
    ))  # fmt: skip
    assert host.pf("netdevsim1").bus is PfBus.NETDEVSIM
    assert host.pf("0000:41:00.0").name == "0000:41:00.0"
    assert host.pf("41:00.0").name == "0000:41:00.0"
    assert host.pf("eni1np1").name == "netdevsim1"


# ---------------------------------------------------------------- third break-it pass


@pytest.mark.parametrize(
    "target",
    ["0000:81:00.0", "0000:40:00.0", vf_address("0000:81:00.0", 0)],
    ids=["another-pf", "a-root-port", "another-pfs-vf"],
)
def test_a_virtfn_link_to_a_function_that_is_not_the_pfs_vf_is_left_out(
    tree: FakeSysfs, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    """A VF is the PF's only if its physfn points back at the PF. virtfn1 pointing at
    another PF, a root port or another PF's VF was shown as VF 1, so `vf bind` or
    `vm attach` would unbind that device and hand it to a VM."""
    tree.build(igb_host(2, 2))
    pf_dir = tree.device_dir(PF)
    (pf_dir / "virtfn1").unlink()
    up = os.path.relpath(tree.device_dir(target).parent, pf_dir)  # as sysfs links read
    (pf_dir / "virtfn1").symlink_to(f"{up}/{target}")
    pf, other = read(tree.root).pfs
    assert [(vf.index, str(vf.address)) for vf in pf.vfs] == [(0, vf_address(PF, 0))]
    assert len(other.vfs) == 2  # the other PF's own VFs are still its own
    assert f"virtfn1 -> {target}: its physfn is" in caplog.text
    assert "not the PF 0000:41:00.0; left out" in caplog.text


@pytest.mark.parametrize(
    "alias", ["0000:41:00.0 ", "0000:41:00.0\n", " 0000:41:00.0", "41:00.0", "0000:41:00.0\t"]
)
def test_a_pci_name_the_kernel_never_writes_is_not_a_second_pf(
    tree: FakeSysfs, caplog: pytest.LogCaptureFixture, alias: str
) -> None:
    """The kernel names functions only as %04x:%02x:%02x.%d. An alias in
    bus/pci/devices with white space or without its domain parsed to the same address
    and showed the PF twice, read from a directory other than the one written to."""
    tree.build(igb_host(1, 2))
    devices = tree.root / "bus/pci/devices"
    (devices / alias).symlink_to(os.readlink(devices / PF))
    (pf,) = read(tree.root).pfs
    assert pf.name == PF and len(pf.vfs) == 2
    assert f"{alias!r} is not a PCI address as the kernel writes it" in caplog.text

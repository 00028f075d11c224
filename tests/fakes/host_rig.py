"""A whole fake host behind one real HostContext: the sysfs tree with its PCI bus,
the VF tables over netlink, libvirt and a clock, all agreeing with each other; the
allocation database is the real SQLite store in a temporary directory.

    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=4))
    rig.vm("a")
    attach(rig.ctx, "a", rig.pf_name, index=1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qtagent.model.host import VfInfo, VfSettings
from qtagent.model.types import PciAddress, VfId
from qtagent.ops.context import HostContext, HostPaths
from qtagent.store.records import Allocation
from qtagent.sysfs.pci import iommu_group_of
from qtagent.virt.domain_xml import DomainSpec, domain_xml
from tests.fakes.clock import FakeClock
from tests.fakes.netlink import IGB, NETDEVSIM, FakeVfNetlink
from tests.fakes.pci_bus import DriverView, FakePciBus
from tests.fakes.sysfs_tree import FakeHost, FakeSysfs
from tests.fakes.virt import FakeDomain, FakeVirt


@dataclass
class FakeHostRig:
    ctx: HostContext
    tree: FakeSysfs
    bus: FakePciBus
    netlink: FakeVfNetlink
    virt: FakeVirt
    clock: FakeClock
    host: FakeHost

    @classmethod
    def build(cls, tmp_path: Path, host: FakeHost) -> FakeHostRig:
        tree = FakeSysfs(tmp_path / "sys").build(host)
        netlink = FakeVfNetlink()
        for pf in host.pfs:
            if pf.netdev is not None:
                count = len(pf.vfs) if pf.num_vfs is None else pf.num_vfs
                netlink.add_pf(pf.netdev.ifindex, IGB, count, name=pf.netdev.name)
        for nsim in host.netdevsims:
            if nsim.ports:
                port = nsim.ports[0]
                netlink.add_pf(port.ifindex, NETDEVSIM, nsim.num_vfs, name=port.name)
        dev = tmp_path / "dev"
        bus = FakePciBus(tree, dev_root=dev, netlink=netlink)
        virt = FakeVirt(DriverView(bus))
        clock = FakeClock()
        proc = tmp_path / "proc"  # no process holds a VFIO group unless a test says so
        proc.mkdir()
        paths = HostPaths(
            sysfs_root=tree.root, dev_root=dev, proc_root=proc, db_path=tmp_path / "qtagent.db",
            libvirt_uri="fake:///", netlink="rtnl",
        )  # fmt: skip
        ctx = HostContext.with_edges(
            paths, netlink=netlink, virt=virt, writer=bus, clock=clock, sleep=clock.sleep
        )
        return cls(ctx, tree, bus, netlink, virt, clock, host)

    # -- shortcuts for tests ------------------------------------------------------------

    @property
    def pf_name(self) -> str:
        """The first PF's device name (its PCI address)."""
        return self.host.pfs[0].address

    @property
    def pf_ifindex(self) -> int:
        netdev = self.host.pfs[0].netdev
        assert netdev is not None
        return netdev.ifindex

    def vm(self, name: str, *, answers_eject: bool = True, running: bool = True) -> FakeDomain:
        """A defined VM, running (a guest OS that answers ejects, by default) or shut off."""
        self.virt.define_and_start(domain_xml(DomainSpec(name, virt_type="qemu")), paused=False)
        if not running:
            self.virt.destroy(name)
        domain = self.virt.domains[name]
        domain.answers_eject = answers_eject
        return domain

    def vf(self, index: int, pf: str | None = None) -> VfInfo:
        """VF ``index`` as qtagent reads it now (sysfs and netlink)."""
        return self.ctx.pf(pf or self.pf_name).vf(index)

    def address(self, index: int, pf: str | None = None) -> PciAddress:
        """VF ``index``'s address from the tree's ``virtfnN`` link (not through qtagent)."""
        link = self.tree.device_dir(pf or self.pf_name) / f"virtfn{index}"
        return PciAddress.parse(os.path.basename(os.readlink(link)))

    def settings(self, index: int, pf_ifindex: int | None = None) -> VfSettings:
        """VF ``index``'s settings as the fake kernel holds them (not through qtagent)."""
        return self.netlink.pfs[pf_ifindex or self.pf_ifindex].vfs[index]

    def driver(self, index: int, pf: str | None = None) -> str | None:
        """VF ``index``'s driver link in the fake tree (not through qtagent)."""
        return self.bus.driver(str(self.address(index, pf)))

    def allocation(self, index: int, pf: str | None = None) -> Allocation | None:
        return self.ctx.store.allocation(VfId(pf or self.pf_name, index))

    def hostdevs(self, vm: str) -> tuple[PciAddress, ...]:
        return self.virt.hostdev_addresses(vm)

    def hold_vfio_group(self, index: int, pid: int = 4242, comm: str = "qemu-system-x86") -> None:
        """Make process ``pid`` hold VF ``index``'s VFIO group open, as /proc shows it."""
        group = iommu_group_of(self.tree.root, self.address(index))
        fd_dir = self.ctx.paths.proc_root / str(pid) / "fd"
        fd_dir.mkdir(parents=True, exist_ok=True)
        (fd_dir / "7").symlink_to(self.ctx.paths.dev_root / "vfio" / str(group))
        (fd_dir.parent / "comm").write_text(comm + "\n")

    def vfio_nodes(self) -> list[str]:
        vfio = self.ctx.paths.dev_root / "vfio"
        return sorted(p.name for p in vfio.iterdir()) if vfio.is_dir() else []

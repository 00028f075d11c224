"""A fake sysfs tree built from data, laid out the way the kernel lays it out.

Describe the host with the dataclasses below, then ``FakeSysfs(tmp_path).build(host)``.
The layout was checked against a 6.12 guest with two igb PFs behind pxb-pcie
root ports and a netdevsim device (``qtagent lab``):

- real directories under ``devices/pci0000:BB/<root port>/<function>``; VFs are
  siblings of their PF under the same upstream port;
- ``bus/pci/devices/<addr>``       -> ``../../../devices/...``
- ``bus/pci/drivers/<drv>/<addr>`` -> ``../../../../devices/...``
- ``<function>/driver``            -> ``../../../../bus/pci/drivers/<drv>`` (depth-relative)
- ``<function>/iommu_group``       -> ``../../../../kernel/iommu_groups/<n>``
- ``kernel/iommu_groups/<n>/devices/<addr>`` -> ``../../../../devices/...``
- ``<pf>/virtfnN`` -> ``../<vf addr>``, ``<vf>/physfn`` -> ``../<pf addr>``
- ``<function>/net/<ifname>/`` with ``device`` -> ``../../../<addr>``;
  ``class/net/<ifname>`` -> ``../../devices/.../net/<ifname>``
- ``devices/netdevsimN`` with ``sriov_numvfs`` and ``net/<port>``, linked from
  ``bus/netdevsim/devices`` and ``bus/netdevsim/drivers/netdevsim``; its
  ``max_vfs`` under ``kernel/debug/netdevsim/netdevsimN``.

Every link is relative, computed from the link's own directory, as the kernel
makes them. Attribute files hold what the kernel prints (``0x8086``, ``10ca``
for ``sriov_vf_device``, ``-1`` for no NUMA node). Device directories carry a
``uevent`` file so libudev accepts them too. What the kernel refuses to show
cannot be faked with plain files: a down link's ``speed`` (EINVAL) is written
as no file at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------- data


@dataclass
class FakeNetdev:
    """One network interface of a function (``<function>/net/<name>``)."""

    name: str
    ifindex: int
    mac: str = "52:54:00:12:34:56"
    operstate: str = "down"
    speed: int | None = None  # Mbit/s; None: no file (the kernel says EINVAL while down)


@dataclass
class FakeFunction:
    """A PCI function that is neither PF nor VF: a root port, a group mate."""

    address: str
    vendor: int = 0x8086
    device: int = 0x1234
    pci_class: int = 0x020000
    driver: str | None = None
    iommu_group: int | None = None
    numa_node: int = -1
    netdev: FakeNetdev | None = None
    parent: str | None = None  # upstream bridge's address; None: on the host bridge


@dataclass
class FakeVf:
    """A VF; its index is its position in ``FakePf.vfs``."""

    address: str
    driver: str | None = "igbvf"
    netdev: FakeNetdev | None = None
    iommu_group: int | None = None


@dataclass
class FakePf:
    """An SR-IOV PF (igb 82576 by default) and its VFs."""

    address: str
    vendor: int = 0x8086
    device: int = 0x10C9
    vf_device: int = 0x10CA
    driver: str | None = "igb"
    netdev: FakeNetdev | None = None
    iommu_group: int | None = None
    numa_node: int = -1
    total_vfs: int = 7
    num_vfs: int | None = None  # None: len(vfs)
    vfs: list[FakeVf] = field(default_factory=list)
    parent: str | None = None


@dataclass
class FakeNetdevsim:
    """``echo "<id> <ports>" > bus/netdevsim/new_device``, then ``num_vfs`` VFs."""

    id: int
    ports: list[FakeNetdev] = field(default_factory=list)
    num_vfs: int = 0
    max_vfs: int | None = 4  # debugfs max_vfs; None: debugfs not mounted

    @property
    def name(self) -> str:
        return f"netdevsim{self.id}"


@dataclass
class FakeHost:
    pfs: list[FakePf] = field(default_factory=list)
    functions: list[FakeFunction] = field(default_factory=list)
    netdevsims: list[FakeNetdevsim] = field(default_factory=list)


# ---------------------------------------------------------------- shapes


def vf_address(pf: str, index: int, offset: int = 128, stride: int = 2) -> str:
    """The address of VF ``index`` from the PF's SR-IOV offset and stride (igb: 128, 2)."""
    domain, bus, devfn_text = pf.split(":")
    dev, fn = devfn_text.split(".")
    routing_id = (int(bus, 16) << 8) + (int(dev, 16) << 3) + int(fn) + offset + stride * index
    vf_bus, devfn = divmod(routing_id, 256)
    return f"{domain}:{vf_bus:02x}:{devfn >> 3:02x}.{devfn & 7}"


def igb_host(
    n_pfs: int = 1,
    n_vfs: int = 0,
    *,
    total_vfs: int = 7,
    first_bus: int = 0x40,
    bus_step: int = 0x40,
    vf_netdevs: bool = True,
) -> FakeHost:
    """``n_pfs`` igb PFs, each behind its own root port on its own pxb bus (as the lab
    guest has them: 0000:41:00.0 behind 0000:40:00.0, ...), each with ``n_vfs`` VFs
    bound to igbvf, each function in its own IOMMU group, NUMA node = PF number."""
    host = FakeHost()
    group = 1
    for p in range(n_pfs):
        bus = first_bus + p * bus_step
        port = f"0000:{bus:02x}:00.0"
        pf_addr = f"0000:{bus + 1:02x}:00.0"
        host.functions.append(
            FakeFunction(port, 0x1B36, 0x000C, 0x060400, "pcieport", iommu_group=group, numa_node=p)
        )
        pf_name = f"enp{bus + 1}s0"
        pf = FakePf(
            pf_addr,
            netdev=FakeNetdev(pf_name, ifindex=100 + p * 1000, mac=f"52:54:00:12:34:{p:02x}"),
            iommu_group=group + 1,
            numa_node=p,
            total_vfs=max(total_vfs, n_vfs),
            parent=port,
        )
        group += 2
        for i in range(n_vfs):
            netdev = None
            if vf_netdevs:
                netdev = FakeNetdev(
                    f"{pf_name}v{i}",
                    ifindex=100 + p * 1000 + 1 + i,
                    mac=f"02:00:00:00:{p:02x}:{i:02x}",
                )
            pf.vfs.append(FakeVf(vf_address(pf_addr, i), netdev=netdev, iommu_group=group))
            group += 1
        host.pfs.append(pf)
    return host


# ---------------------------------------------------------------- the tree


class FakeSysfs:
    """Writes a :class:`FakeHost` under ``root`` and changes it the way the kernel would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: dict[str, Path] = {}  # PCI address -> its real directory

    # --- building

    def build(self, host: FakeHost) -> FakeSysfs:
        for sub in ("bus/pci/devices", "bus/pci/drivers", "class/net", "kernel/iommu_groups"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        by_address = {f.address: f for f in host.functions}
        for function in host.functions:
            self._function(function, by_address)
        for pf in host.pfs:
            self._pf(pf, by_address)
        for nsim in host.netdevsims:
            self._netdevsim(nsim)
        return self

    def device_dir(self, address: str) -> Path:
        """The real directory of a function built here."""
        return self._dirs[address]

    def _place(self, address: str, parent: str | None, by_address: dict[str, FakeFunction]) -> Path:
        if address in self._dirs:
            return self._dirs[address]
        if parent is None:
            domain, bus, _ = address.split(":")
            path = self.root / "devices" / f"pci{domain}:{bus}" / address
        else:
            upstream = by_address[parent]
            path = self._place(upstream.address, upstream.parent, by_address) / address
        path.mkdir(parents=True, exist_ok=True)
        self._dirs[address] = path
        return path

    def _common(
        self,
        path: Path,
        address: str,
        vendor: int,
        device: int,
        pci_class: int,
        driver: str | None,
        group: int | None,
        numa_node: int,
        netdev: FakeNetdev | None,
    ) -> None:
        _write(path / "vendor", f"0x{vendor:04x}")
        _write(path / "device", f"0x{device:04x}")
        _write(path / "class", f"0x{pci_class:06x}")
        _write(path / "numa_node", str(numa_node))
        _write(path / "driver_override", "(null)")
        uevent = [f"PCI_CLASS={pci_class:X}", f"PCI_ID={vendor:04X}:{device:04X}"]
        uevent += [f"PCI_SLOT_NAME={address}"]
        if driver is not None:
            uevent.insert(0, f"DRIVER={driver}")
        _write(path / "uevent", "\n".join(uevent))
        _link(path / "subsystem", self.root / "bus/pci")
        _link(self.root / "bus/pci/devices" / address, path)
        if driver is not None:
            self.bind(address, driver)
        if group is not None:
            group_dir = self.root / "kernel/iommu_groups" / str(group)
            (group_dir / "devices").mkdir(parents=True, exist_ok=True)
            _write(group_dir / "type", "identity")
            _link(path / "iommu_group", group_dir)
            _link(group_dir / "devices" / address, path)
        if netdev is not None:
            self.add_netdev(path, netdev)

    def _function(self, f: FakeFunction, by_address: dict[str, FakeFunction]) -> None:
        path = self._place(f.address, f.parent, by_address)
        self._common(
            path, f.address, f.vendor, f.device, f.pci_class, f.driver, f.iommu_group,
            f.numa_node, f.netdev,
        )  # fmt: skip

    def _pf(self, pf: FakePf, by_address: dict[str, FakeFunction]) -> None:
        path = self._place(pf.address, pf.parent, by_address)
        self._common(
            path, pf.address, pf.vendor, pf.device, 0x020000, pf.driver, pf.iommu_group,
            pf.numa_node, pf.netdev,
        )  # fmt: skip
        _write(path / "sriov_totalvfs", str(pf.total_vfs))
        _write(path / "sriov_numvfs", str(len(pf.vfs) if pf.num_vfs is None else pf.num_vfs))
        _write(path / "sriov_vf_device", f"{pf.vf_device:x}")
        _write(path / "sriov_offset", "128")
        _write(path / "sriov_stride", "2")
        _write(path / "sriov_drivers_autoprobe", "1")
        for index, vf in enumerate(pf.vfs):
            self.add_vf(pf.address, index, vf)

    def _netdevsim(self, nsim: FakeNetdevsim) -> None:
        path = self.root / "devices" / nsim.name
        path.mkdir(parents=True)
        bus = self.root / "bus/netdevsim"
        for sub in ("devices", "drivers/netdevsim"):
            (bus / sub).mkdir(parents=True, exist_ok=True)
        for name in ("new_device", "del_device"):
            (bus / name).touch()
        _write(path / "sriov_numvfs", str(nsim.num_vfs))
        _write(path / "uevent", "DRIVER=netdevsim")
        (path / "new_port").touch()
        (path / "del_port").touch()
        _link(path / "driver", bus / "drivers/netdevsim")
        _link(path / "subsystem", bus)
        _link(bus / "devices" / nsim.name, path)
        _link(bus / "drivers/netdevsim" / nsim.name, path)
        for port in nsim.ports:
            self.add_netdev(path, port)
        if nsim.max_vfs is not None:
            debug = self.root / "kernel/debug/netdevsim" / nsim.name
            debug.mkdir(parents=True)
            _write(debug / "max_vfs", str(nsim.max_vfs))

    # --- changes, as the kernel would make them

    def add_netdev(self, device: Path, netdev: FakeNetdev) -> None:
        """A netdev appears under ``device`` and in ``class/net``."""
        path = device / "net" / netdev.name
        path.mkdir(parents=True)
        _write(path / "ifindex", str(netdev.ifindex))
        _write(path / "iflink", str(netdev.ifindex))
        _write(path / "address", netdev.mac)
        _write(path / "operstate", netdev.operstate)
        _write(path / "type", "1")
        _write(path / "mtu", "1500")
        _write(path / "uevent", f"INTERFACE={netdev.name}\nIFINDEX={netdev.ifindex}")
        if netdev.speed is not None:
            _write(path / "speed", str(netdev.speed))
        _link(path / "device", device)
        _link(path / "subsystem", self.root / "class/net")
        _link(self.root / "class/net" / netdev.name, path)

    def rename_netdev(self, old: str, new: str) -> None:
        """``ip link set $old name $new``."""
        link = self.root / "class/net" / old
        path = link.parent / os.readlink(link)
        renamed = path.parent / new
        path.rename(renamed)
        link.unlink()
        _link(self.root / "class/net" / new, renamed)
        text = (renamed / "uevent").read_text().replace(f"INTERFACE={old}", f"INTERFACE={new}")
        _write(renamed / "uevent", text)

    def add_driver(self, driver: str) -> Path:
        """``modprobe $driver``: the driver registers with the PCI bus and
        ``bus/pci/drivers/$driver`` appears (nothing happens if it is there)."""
        drv = self.root / "bus/pci/drivers" / driver
        if not drv.exists():
            drv.mkdir(parents=True)
            for name in ("bind", "unbind", "new_id", "remove_id", "uevent"):
                (drv / name).touch()
            (self.root / "module" / driver).mkdir(parents=True, exist_ok=True)
            _link(drv / "module", self.root / "module" / driver)
        return drv

    def remove_driver(self, driver: str) -> None:
        """``modprobe -r $driver``: its directory goes; refused while it has devices."""
        drv = self.root / "bus/pci/drivers" / driver
        if not drv.exists():
            return
        if any(":" in entry.name for entry in drv.iterdir()):
            raise ValueError(f"{driver} still has devices bound; unbind them first")
        _rmtree(drv)

    def bind(self, address: str, driver: str) -> None:
        """``echo $address > bus/pci/drivers/$driver/bind``."""
        path = self._dirs[address]
        drv = self.add_driver(driver)
        _link(path / "driver", drv)
        _link(drv / address, path)

    def unbind(self, address: str) -> None:
        """``echo $address > $function/driver/unbind``: the driver link and netdevs go."""
        path = self._dirs[address]
        driver = path / "driver"
        (driver.parent / os.readlink(driver) / address).unlink()
        driver.unlink()
        net = path / "net"
        if net.is_dir():
            for netdev in net.iterdir():
                (self.root / "class/net" / netdev.name).unlink()
                _rmtree(netdev)
            net.rmdir()

    def add_vf(self, pf_address: str, index: int, vf: FakeVf) -> None:
        """The PF's driver enables VF ``index`` (part of ``echo N > $pf/sriov_numvfs``):
        its directory beside the PF with the PF's vendor, VF device ID and NUMA node,
        ``virtfnN``/``physfn`` links, its IOMMU group and, with ``vf.driver``, the
        driver binding and ``vf.netdev``."""
        path = self._dirs[pf_address]
        vendor = int((path / "vendor").read_text(), 16)
        vf_device = int((path / "sriov_vf_device").read_text(), 16)
        numa_node = int((path / "numa_node").read_text())
        vf_path = path.parent / vf.address
        vf_path.mkdir(exist_ok=True)
        self._dirs[vf.address] = vf_path
        self._common(
            vf_path, vf.address, vendor, vf_device, 0x020000, vf.driver, vf.iommu_group,
            numa_node, vf.netdev,
        )  # fmt: skip
        _link(path / f"virtfn{index}", vf_path)
        _link(vf_path / "physfn", path)

    def remove_vf(self, pf_address: str, index: int) -> str:
        """The PF's driver disables VF ``index`` (part of ``echo 0 > $pf/sriov_numvfs``):
        it is unbound, then every link to it and its directory go. Returns its address."""
        link = self._dirs[pf_address] / f"virtfn{index}"
        address = os.path.basename(os.readlink(link))
        path = self._dirs[address]
        if (path / "driver").is_symlink():
            self.unbind(address)
        group_link = path / "iommu_group"
        if group_link.is_symlink():
            group_dir = group_link.parent / os.readlink(group_link)
            (group_dir / "devices" / address).unlink()
            if not any((group_dir / "devices").iterdir()):
                _rmtree(group_dir)
        (self.root / "bus/pci/devices" / address).unlink()
        link.unlink()
        _rmtree(self._dirs.pop(address))
        return address

    def remove(self, address: str) -> None:
        """``echo 1 > $function/remove``: its directory goes; links to it dangle
        (the kernel would remove them too; use this for half-gone trees)."""
        _rmtree(self._dirs.pop(address))

    def write(self, relative: str, text: str) -> None:
        """Overwrite an attribute (for garbage and odd values)."""
        _write(self.root / relative, text)


def _write(path: Path, text: str) -> None:
    path.write_text(text + "\n")


def _link(link: Path, target: Path) -> None:
    """A relative symlink, as sysfs makes them: up from the link's directory to an
    ancestor of the target's parent, then down by name (kernfs_get_target_path).
    So a link to an ancestor reads ``../../../0000:41:00.0``, not ``../..``."""
    up = os.path.relpath(target.parent, link.parent)
    link.symlink_to(target.name if up == "." else f"{up}/{target.name}")


def _rmtree(path: Path) -> None:
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            _rmtree(entry)
        else:
            entry.unlink()
    path.rmdir()

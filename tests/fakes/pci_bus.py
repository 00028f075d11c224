"""The kernel's PCI driver core and SR-IOV, acting on a fake sysfs tree.

:class:`FakePciBus` is a :class:`~qtagent.sysfs.writer.SysfsWriter` whose writes
reach a fake kernel instead of plain files: each write is interpreted the way the
kernel's store handler for that file would, and the tree (a
:class:`~tests.fakes.sysfs_tree.FakeSysfs`) changes the way /sys would. The real
writer's path building is kept (only ``_write`` is replaced), so a write to the
wrong file fails here as it would on a host.

What the store handlers do (drivers/pci/pci-sysfs.c, pci-driver.c, iov.c,
drivers/base/bus.c, drivers/net/netdevsim/bus.c):

- ``$vf/driver_override``: remembers the driver name; an empty write clears it.
  It binds nothing by itself.
- ``$vf/driver/unbind`` (through the driver link): releases the device from that
  driver, whose netdev goes with it; ENODEV when the named device is not bound to
  that driver. Without a driver the file does not exist (ENOENT).
- ``bus/pci/drivers_probe``: a bound device stays as it is; an unbound one is bound
  to the driver named in its driver_override, else to the driver whose ID table
  matches it - if that module is loaded (:attr:`FakePciBus.loaded`). When nothing
  matches, the write still succeeds and the device stays driverless: what the
  kernel does when driver_override names vfio-pci and vfio-pci is not loaded.
- Each loaded module has its ``bus/pci/drivers/<name>`` directory from the start
  (:meth:`FakePciBus.load_module` and :meth:`FakePciBus.unload_module` change that).
- ``$pf/sriov_numvfs``: ERANGE above sriov_totalvfs; the current count is a no-op;
  ENOENT without a PF driver; EBUSY from N>0 to M>0; 0 removes every VF; N from 0
  creates N VFs, each probed (sriov_drivers_autoprobe) with its netdev. The PF's
  VF table in the fake netlink follows, reset to the driver's defaults.
- ``bus/netdevsim/devices/netdevsimN/sriov_numvfs``: the same, ENOMEM above max_vfs.
- Binding to vfio-pci creates ``/dev/vfio/<group>``; the last vfio-pci member of a
  group leaving removes it.

Failures are injected per file with :meth:`FakePciBus.fail_next`; they answer
the way a failed write(2) does, through the same errno mapping as the real writer.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path

from qtagent.errors import from_os_error
from qtagent.model.types import PciAddress
from qtagent.sysfs.pci import driver_of, iommu_group_of
from qtagent.sysfs.writer import SysfsWriter
from tests.fakes.netlink import FakeVfNetlink
from tests.fakes.sysfs_tree import FakeNetdev, FakeSysfs, FakeVf, vf_address

log = logging.getLogger(__name__)

VFIO = "vfio-pci"

# The VF driver whose ID table matches the VFs of a PF driver.
VF_DRIVERS = {"igb": "igbvf", "ixgbe": "ixgbevf", "i40e": "iavf", "ice": "iavf"}

# The kinds of write that fail_next() can fail, by the file written.
STEPS = ("driver_override", "unbind", "drivers_probe", "sriov_numvfs", "reset")


class FakePciBus(SysfsWriter):
    """A sysfs writer wired to a fake kernel acting on ``tree`` (see the module doc).

    ``dev_root`` holds the ``vfio/<group>`` nodes. ``netlink``, when given, has its
    VF tables resized with each VF count change. ``loaded`` names the driver
    modules loaded: drivers_probe binds only those. ``commands`` lists every write
    as the shell command it equals, in order, failed ones included.
    """

    def __init__(
        self,
        tree: FakeSysfs,
        *,
        dev_root: Path,
        netlink: FakeVfNetlink | None = None,
        loaded: Iterable[str] = ("igb", "igbvf", VFIO, "pcieport"),
    ) -> None:
        super().__init__(tree.root)
        self.tree = tree
        self.dev_root = dev_root
        self.netlink = netlink
        self.loaded = set(loaded)
        self.vfio_nodes = True  # False: vfio-pci binds, but /dev/vfio/<group> never appears
        self.commands: list[str] = []
        self._lost_probes: set[str] = set()
        self._overrides: dict[str, str] = {}
        self._failures: dict[str, list[tuple[str | None, int]]] = {}
        # address -> the driver whose ID table matches it (None: none); every function
        # on the bus has an entry
        self._native: dict[str, str | None] = {}
        self._netdevs: dict[str, FakeNetdev] = {}  # address -> the netdev its driver makes
        for driver in sorted(self.loaded):
            tree.add_driver(driver)
        self._scan()

    # -- programming the fake -------------------------------------------------------

    def fail_next(
        self, step: str, code: int, *, address: str | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` writes of kind ``step`` (one of :data:`STEPS`),
        for ``address`` or any device, with ``code``; nothing changes in the tree."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; one of {STEPS}")
        self._failures.setdefault(step, []).extend([(address, code)] * times)

    def lose_next_probe(self, address: str) -> None:
        """The next ``drivers_probe`` of ``address`` succeeds but binds nothing, as the
        lab's igbvf did for a probe asked for during the unbind it repairs."""
        self._lost_probes.add(address)

    def load_module(self, driver: str) -> None:
        """``modprobe $driver``: the driver registers (``bus/pci/drivers/$driver``) and
        binds every unbound device it matches."""
        self.loaded.add(driver)
        self.tree.add_driver(driver)
        for address in sorted(self._native):
            if self.driver(address) is None:
                self._probe(address)

    def unload_module(self, driver: str) -> None:
        """``modprobe -r $driver``: gone from ``bus/pci/drivers``; refused (ValueError)
        while devices are bound to it, as the kernel refuses a module in use.
        (``loaded.discard(driver)`` instead keeps the driver registered, but its
        probe of new devices fails.)"""
        self.tree.remove_driver(driver)
        self.loaded.discard(driver)

    def driver(self, address: str) -> str | None:
        """``basename $(readlink $dev/driver)``, None when unbound."""
        return driver_of(self.root, PciAddress.parse(address))

    def override(self, address: str) -> str | None:
        """``cat $dev/driver_override``, None for ``(null)``."""
        text = (self.tree.device_dir(address) / "driver_override").read_text().strip()
        return None if text == "(null)" else text

    # -- SysfsWriter: every write reaches the fake kernel -------------------------

    def _write(self, path: Path, text: str, hint: object = None) -> None:
        shown = text.strip() or "''"
        command = f"echo {shown} > {path}"
        log.debug("%s", command)
        self.writes += 1
        self.commands.append(f"echo {shown} > {path.relative_to(self.root)}")
        code = self._store(path.relative_to(self.root).parts, text)
        if code:
            err = OSError(code, os.strerror(code))
            explain = hint(err) if callable(hint) else ""
            raise from_os_error(err, command, hint=explain) from err

    def _store(self, parts: tuple[str, ...], text: str) -> int:
        """The kernel's store handler for the file at ``parts``: 0 or an errno."""
        value = text.strip()
        match parts:
            case ("bus", "pci", "drivers_probe"):
                return self._injected("drivers_probe", value) or self._drivers_probe(value)
            case ("bus", "pci", "devices", address, *rest) if address in self._native:
                return self._device_store(address, tuple(rest), value)
            case ("bus", "netdevsim", "devices", name, "sriov_numvfs"):
                if not (self.root / "bus/netdevsim/devices" / name).exists():
                    return errno.ENOENT
                return self._injected("sriov_numvfs", name) or self._nsim_numvfs(name, value)
            case ("bus", "pci", "devices", _, *_):
                return errno.ENOENT
        target = self.root.joinpath(*parts)
        return errno.EACCES if target.exists() else errno.ENOENT

    def _device_store(self, address: str, rest: tuple[str, ...], value: str) -> int:
        match rest:
            case ("driver_override",):
                return self._injected("driver_override", address) or self._set_override(
                    address, value
                )
            case ("driver", "unbind"):
                driver = self.driver(address)
                if driver is None:
                    return errno.ENOENT  # no driver link: the file is not there
                return self._injected("unbind", address) or self._unbind_store(driver, value)
            case ("sriov_numvfs",):
                if not (self.tree.device_dir(address) / "sriov_totalvfs").exists():
                    return errno.ENOENT
                return self._injected("sriov_numvfs", address) or self._pci_numvfs(address, value)
            case ("reset",):
                return self._injected("reset", address)
        target = self.tree.device_dir(address).joinpath(*rest)
        return errno.EACCES if target.exists() else errno.ENOENT

    def _injected(self, step: str, address: str) -> int:
        pending = self._failures.get(step, [])
        for i, (wanted, code) in enumerate(pending):
            if wanted is None or wanted == address:
                del pending[i]
                return code
        return 0

    # -- the driver core --------------------------------------------------------------

    def _set_override(self, address: str, value: str) -> int:
        if len(value) >= 4096:
            return errno.EINVAL
        if value:
            self._overrides[address] = value
        else:
            self._overrides.pop(address, None)
        _write_attr(self.tree.device_dir(address) / "driver_override", value or "(null)")
        return 0

    def _unbind_store(self, driver: str, value: str) -> int:
        if value not in self._native or self.driver(value) != driver:
            return errno.ENODEV
        self.release_driver(value)
        return 0

    def _drivers_probe(self, value: str) -> int:
        if value not in self._native:
            return errno.ENODEV
        if value in self._lost_probes:
            self._lost_probes.discard(value)
            return 0
        if self.driver(value) is None:
            self._probe(value)
        return 0

    def _probe(self, address: str) -> None:
        """device_attach(): the override, else the ID-table match, if loaded."""
        wanted = self._overrides.get(address, self._native.get(address))
        if wanted is None or wanted not in self.loaded:
            log.debug("probe %s: no loaded driver matches (wanted %s)", address, wanted)
            return
        self.attach_driver(address, wanted)

    def attach_driver(self, address: str, driver: str) -> None:
        """The driver binds the device (its probe succeeded): the driver link, the
        netdev its own driver makes, the VFIO node for vfio-pci."""
        self.tree.bind(address, driver)
        netdev = self._netdevs.get(address)
        if netdev is not None and driver == self._native.get(address):
            self.tree.add_netdev(self.tree.device_dir(address), netdev)
        if driver == VFIO and self.vfio_nodes:
            group = iommu_group_of(self.root, PciAddress.parse(address))
            if group is not None:
                (self.dev_root / "vfio").mkdir(parents=True, exist_ok=True)
                (self.dev_root / "vfio" / str(group)).touch()

    def release_driver(self, address: str) -> None:
        """device_release_driver(): the driver link and the netdev go."""
        driver = self.driver(address)
        self.tree.unbind(address)
        if driver != VFIO:
            return
        group = iommu_group_of(self.root, PciAddress.parse(address))
        if group is None:
            return
        members = self.root / "kernel/iommu_groups" / str(group) / "devices"
        if not any(self.driver(m.name) == VFIO for m in members.iterdir()):
            (self.dev_root / "vfio" / str(group)).unlink(missing_ok=True)

    # -- SR-IOV -------------------------------------------------------------------------

    def _pci_numvfs(self, pf: str, value: str) -> int:
        if not value.isdigit() or int(value) > 0xFFFF:
            return errno.EINVAL
        count = int(value)
        path = self.tree.device_dir(pf)
        current = int((path / "sriov_numvfs").read_text())
        if count > int((path / "sriov_totalvfs").read_text()):
            return errno.ERANGE
        if count == current:
            return 0
        pf_driver = self.driver(pf)
        if pf_driver is None:
            return errno.ENOENT
        if count and current:
            return errno.EBUSY
        if count == 0:
            for index in reversed(range(current)):
                address = os.path.basename(os.readlink(path / f"virtfn{index}"))
                self._release_for_removal(address)
                self.tree.remove_vf(pf, index)
                self._forget(address)
        else:
            offset = int((path / "sriov_offset").read_text())
            stride = int((path / "sriov_stride").read_text())
            autoprobe = (path / "sriov_drivers_autoprobe").read_text().strip() == "1"
            netdev = _netdev_of(path)
            for index in range(count):
                address = vf_address(pf, index, offset, stride)
                group = self._free_group()
                self.tree.add_vf(pf, index, FakeVf(address, driver=None, iommu_group=group))
                self._native[address] = VF_DRIVERS.get(pf_driver)
                if netdev is not None:
                    ifindex = self._free_ifindex()
                    mac = f"02:00:00:00:{index >> 8:02x}:{index & 0xFF:02x}"
                    self._netdevs[address] = FakeNetdev(f"{netdev.name}v{index}", ifindex, mac)
                if autoprobe:
                    self._probe(address)
        _write_attr(path / "sriov_numvfs", str(count))
        netdev = _netdev_of(path)
        if netdev is not None:
            self._resize_table(netdev.ifindex, count)
        return 0

    def _nsim_numvfs(self, name: str, value: str) -> int:
        if not value.isdigit():
            return errno.EINVAL
        count = int(value)
        path = self.root / "devices" / name
        current = int((path / "sriov_numvfs").read_text())
        if count == current:
            return 0
        if count and current:
            return errno.EBUSY
        max_file = self.root / "kernel/debug/netdevsim" / name / "max_vfs"
        limit = int(max_file.read_text()) if max_file.exists() else 4
        if count > limit:
            return errno.ENOMEM
        _write_attr(path / "sriov_numvfs", str(count))
        netdev = _netdev_of(path)
        if netdev is not None:
            self._resize_table(netdev.ifindex, count)
        return 0

    def _release_for_removal(self, address: str) -> None:
        if self.driver(address) is not None:
            self.release_driver(address)
        self._overrides.pop(address, None)

    def _forget(self, address: str) -> None:
        self._native.pop(address, None)
        self._netdevs.pop(address, None)

    def _resize_table(self, ifindex: int, count: int) -> None:
        """A VF count change gives the driver fresh VFs: every VF at its defaults."""
        if self.netlink is None or ifindex not in self.netlink.pfs:
            return
        pf = self.netlink.pfs[ifindex]
        pf.vfs = dict.fromkeys(range(count), pf.profile.defaults)

    def _free_group(self) -> int:
        groups = self.root / "kernel/iommu_groups"
        used = [int(g.name) for g in groups.iterdir() if g.name.isdigit()]
        return max(used, default=0) + 1

    def _free_ifindex(self) -> int:
        used = [n.ifindex for n in self._netdevs.values()]
        for link in (self.root / "class/net").iterdir():
            text = (link / "ifindex").read_text().strip()
            used.append(int(text))
        return max(used, default=1) + 1

    # -- what the tree holds when the fake starts ---------------------------------------

    def _scan(self) -> None:
        """Each function's ID-table driver (its driver now; a VF's from its PF's
        driver) and the netdev its driver makes, from the tree as built."""
        devices = self.root / "bus/pci/devices"
        addresses = sorted(d.name for d in devices.iterdir()) if devices.is_dir() else []
        for address in addresses:
            path = self.tree.device_dir(address)
            driver = self.driver(address)
            physfn = path / "physfn"
            if driver is None and physfn.is_symlink():
                pf_driver = self.driver(os.path.basename(os.readlink(physfn)))
                driver = VF_DRIVERS.get(pf_driver or "")
            self._native[address] = driver
            netdev = _netdev_of(path)
            if netdev is not None:
                self._netdevs[address] = netdev


class DriverView(MutableMapping[PciAddress, str | None]):
    """The host drivers of PCI functions as libvirt sees them, live from the fake
    tree: give it to :class:`~tests.fakes.virt.FakeVirt` so that libvirt and sysfs
    agree. Setting an entry is what libvirt's nodedev detach/reattach does for a
    ``managed='yes'`` device: unbind, then bind to the named driver (None: none)."""

    def __init__(self, bus: FakePciBus) -> None:
        self.bus = bus

    def __getitem__(self, address: PciAddress) -> str | None:
        if not self.bus.pci_device(address).exists():
            raise KeyError(address)
        return self.bus.driver(str(address))

    def __setitem__(self, address: PciAddress, driver: str | None) -> None:
        text = str(address)
        if self.bus.driver(text) == driver:
            return
        if self.bus.driver(text) is not None:
            self.bus.release_driver(text)
        if driver is not None:
            self.bus.attach_driver(text, driver)

    def __delitem__(self, address: PciAddress) -> None:
        self[address] = None

    def __iter__(self) -> Iterator[PciAddress]:
        devices = self.bus.root / "bus/pci/devices"
        return iter(sorted(PciAddress.parse(d.name) for d in devices.iterdir()))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _netdev_of(device: Path) -> FakeNetdev | None:
    """The device's first netdev as the fake tree holds it."""
    net = device / "net"
    if not net.is_dir():
        return None
    for entry in sorted(net.iterdir()):
        ifindex = int((entry / "ifindex").read_text())
        mac = (entry / "address").read_text().strip()
        return FakeNetdev(entry.name, ifindex, mac)
    return None


def _write_attr(path: Path, text: str) -> None:
    path.write_text(text + "\n")

"""The host as qtagent sees it: immutable snapshots built by the readers at the edge.

Data flows one way: sysfs and netlink readers produce these values, the pure
planners consume them, the effects act on the kernel, and a fresh snapshot is
read back. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from qtagent.errors import InvalidInput, NotFound
from qtagent.model.types import MacAddress, PciAddress, VfId


class PfBus(enum.StrEnum):
    """Where a PF lives: a real PCI function, or a netdevsim device (no PCI VFs)."""

    PCI = "pci"
    NETDEVSIM = "netdevsim"


class LinkState(enum.StrEnum):
    """A VF's administrative link state (IFLA_VF_LINK_STATE)."""

    AUTO = "auto"
    ENABLE = "enable"
    DISABLE = "disable"


@dataclass(frozen=True, slots=True)
class VfSettings:
    """A VF's settings as the PF's driver reports them over netlink.

    ``None`` means the driver does not report that setting. Rates are in Mbit/s,
    0 meaning unlimited.
    """

    mac: MacAddress | None = None
    vlan: int = 0
    qos: int = 0
    spoofchk: bool | None = None
    trust: bool | None = None
    max_tx_rate: int | None = None
    min_tx_rate: int | None = None
    link_state: LinkState | None = None


@dataclass(frozen=True, slots=True)
class IommuGroup:
    """An IOMMU group and the PCI functions in it, each with its driver (or None).

    ``bridges`` names the members that are PCI bridges (class 0x0604 or 0x0607, the
    kernel's non-normal header types): VFIO does not need them unbound, so they do
    not count against the group's viability (FIELD-CASES C7).
    """

    number: int
    members: tuple[tuple[PciAddress, str | None], ...] = ()
    bridges: tuple[PciAddress, ...] = ()


@dataclass(frozen=True, slots=True)
class VfInfo:
    """One VF. ``address`` is None for netdevsim VFs, which are not PCI functions."""

    id: VfId
    address: PciAddress | None = None
    driver: str | None = None
    netdev: str | None = None
    iommu_group: IommuGroup | None = None
    settings: VfSettings = field(default_factory=VfSettings)

    @property
    def index(self) -> int:
        return self.id.index


@dataclass(frozen=True, slots=True)
class PciIdentity:
    """Vendor and device IDs with their names from the PCI ID database, if known."""

    vendor_id: int
    device_id: int
    vendor_name: str | None = None
    device_name: str | None = None

    @property
    def ids(self) -> str:
        return f"{self.vendor_id:04x}:{self.device_id:04x}"


@dataclass(frozen=True, slots=True)
class PfInfo:
    """One SR-IOV capable physical function and its VFs, in VF index order."""

    name: str
    bus: PfBus
    address: PciAddress | None
    identity: PciIdentity | None
    driver: str | None
    netdev: str | None
    ifindex: int | None
    mac: MacAddress | None
    operstate: str | None
    speed_mbps: int | None
    numa_node: int | None
    iommu_group: int | None
    total_vfs: int
    num_vfs: int
    vfs: tuple[VfInfo, ...] = ()
    vf_identity: PciIdentity | None = None

    def vf(self, index: int) -> VfInfo:
        for vf in self.vfs:
            if vf.index == index:
                return vf
        raise NotFound(
            f"PF {self.name} has no VF {index}",
            hint=f"it has {self.num_vfs} VFs (0..{self.num_vfs - 1})"
            if self.num_vfs
            else f"it has no VFs; create some with: qtagent pf set-vfs {self.name} N",
        )


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Every SR-IOV PF of the host, read at one moment."""

    pfs: tuple[PfInfo, ...] = ()

    def pf(self, name: str) -> PfInfo:
        """Find a PF by PCI address, netdevsim device name or netdev name."""
        wanted = name.strip()
        # A device name or PCI address is an identity and wins over an interface name,
        # which anyone can set (an interface may even be called "netdevsim1").
        for pf in self.pfs:
            if wanted == pf.name or (pf.address and _same_pci(pf.address, wanted)):
                return pf
        by_netdev = [pf for pf in self.pfs if pf.netdev == wanted]
        if len(by_netdev) == 1:
            return by_netdev[0]
        if by_netdev:
            raise _ambiguous(wanted, by_netdev)
        known = ", ".join(f"{p.name} ({p.netdev})" if p.netdev else p.name for p in self.pfs)
        raise NotFound(
            f"no SR-IOV PF named {name!r}",
            hint=f"known PFs: {known}" if known else "this host shows no SR-IOV capable PF",
        )

    def vf(self, vf_id: VfId) -> VfInfo:
        return self.pf(vf_id.pf).vf(vf_id.index)


def _ambiguous(netdev: str, pfs: list[PfInfo]) -> InvalidInput:
    """Several PFs claim one interface name (a broken or hostile sysfs tree): taking
    any of them could act on the wrong device, so none is taken."""
    names = ", ".join(pf.name for pf in pfs)
    return InvalidInput(
        f"the interface name {netdev!r} is ambiguous: PFs {names} all claim it",
        hint=f"name the PF by its PCI address or device name (one of {names})",
    )


def _same_pci(address: PciAddress, text: str) -> bool:
    try:
        return PciAddress.parse(text) == address
    except InvalidInput:
        return False

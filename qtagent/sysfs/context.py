"""What one snapshot's readers share: the root, the name database, the netlink
backend and the IOMMU groups read so far."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from qtagent.errors import InvalidInput, QtagentError
from qtagent.model.host import VfSettings
from qtagent.model.types import PciAddress
from qtagent.netlink.api import VfNetlink
from qtagent.sysfs.iommu import IommuGroups
from qtagent.sysfs.pci_ids import PciIdDatabase

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReadContext:
    """State of one snapshot read; ``root`` is the sysfs root as a string path."""

    root: str
    pci_ids: PciIdDatabase
    netlink: VfNetlink | None = None
    settings_of: frozenset[str] | None = None  # PF names whose VF settings to read; None: all
    iommu: IommuGroups = field(init=False)
    _addresses: dict[str, PciAddress | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.iommu = IommuGroups(self.root, self.pci_address)

    def pci_address(self, text: str) -> PciAddress | None:
        """``text`` as a PCI address, None if it is not one (parsed once per snapshot:
        a VF's address shows up again as a member of its IOMMU group).

        Only the kernel's own form counts (``%04x:%02x:%02x.%d``): a name with white
        space, upper-case hex or no domain parses to the address of another entry,
        which would then be shown twice and read from a directory other than the
        one written to."""
        try:
            return self._addresses[text]
        except KeyError:
            pass
        try:
            address: PciAddress | None = PciAddress.parse(text)
        except InvalidInput:
            address = None
        if address is not None and str(address) != text:
            _log.warning(
                "%r is not a PCI address as the kernel writes it (%s); left out", text, address
            )
            address = None
        self._addresses[text] = address
        return address

    def vf_settings(self, pf_name: str, ifindex: int | None) -> Mapping[int, VfSettings]:
        """The PF's VF settings over netlink (``ip link show $pf``); empty if unavailable.

        A PF without a netdev has no ifindex and so no netlink view; a netlink
        failure (the PF vanished, the driver refuses) leaves the settings unknown.
        """
        if self.netlink is None or ifindex is None:
            return {}
        if self.settings_of is not None and pf_name not in self.settings_of:
            return {}
        try:
            return self.netlink.read_vfs(ifindex)
        except QtagentError as err:
            _log.debug("ip link show %s (ifindex %d): %s", pf_name, ifindex, err.diagnostics())
            return {}

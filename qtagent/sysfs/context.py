"""What one snapshot's readers share: the root, the name database, the netlink
backend and the IOMMU groups read so far."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from qtagent.errors import QtagentError
from qtagent.model.host import VfSettings
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
    iommu: IommuGroups = field(init=False)

    def __post_init__(self) -> None:
        self.iommu = IommuGroups(self.root)

    def vf_settings(self, pf_name: str, ifindex: int | None) -> Mapping[int, VfSettings]:
        """The PF's VF settings over netlink (``ip link show $pf``); empty if unavailable.

        A PF without a netdev has no ifindex and so no netlink view; a netlink
        failure (the PF vanished, the driver refuses) leaves the settings unknown.
        """
        if self.netlink is None or ifindex is None:
            return {}
        try:
            return self.netlink.read_vfs(ifindex)
        except QtagentError as err:
            _log.debug("ip link show %s (ifindex %d): %s", pf_name, ifindex, err.diagnostics())
            return {}

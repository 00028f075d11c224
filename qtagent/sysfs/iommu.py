"""IOMMU groups: ``<device>/iommu_group`` and ``kernel/iommu_groups/N/devices``.

A VF can be handed to a VM only if every other member of its group is free of
host drivers (bridges excepted, FIELD-CASES C7), so a group is read whole: each
member with its driver, and which members are bridges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from qtagent.model.host import IommuGroup
from qtagent.model.types import PciAddress
from qtagent.sysfs.attrs import IntFormat, link_name, list_dir, number_in_name, read_int

_log = logging.getLogger(__name__)

# PCI class codes (base class, subclass) of bridges with a non-normal header:
# PCI-to-PCI (type 1) and CardBus (type 2). VFIO lets these stay on their driver.
_BRIDGE_CLASSES: Final = frozenset({0x0604, 0x0607})


def group_number(device_dir: str) -> int | None:
    """``basename $(readlink $device/iommu_group)`` as a number; None without an IOMMU."""
    name = link_name(device_dir + "/iommu_group")
    if name is None:
        return None
    number = number_in_name(name)
    if number is None:
        _log.debug("readlink %s/iommu_group: %r is not a group number", device_dir, name)
    return number


class IommuGroups:
    """Reads groups on demand and keeps each for the rest of one snapshot.

    ``parse`` turns a member's name into a PCI address, None if it is not one.
    """

    def __init__(self, root: str, parse: Callable[[str], PciAddress | None]) -> None:
        self._root = root
        self._parse = parse
        self._groups: dict[int, IommuGroup] = {}

    def group(self, number: int) -> IommuGroup:
        """Group ``number``, read once per snapshot."""
        found = self._groups.get(number)
        if found is None:
            found = self._groups[number] = self._read(number)
        return found

    def _read(self, number: int) -> IommuGroup:
        """``ls kernel/iommu_groups/$n/devices``, then each member's driver link and class.

        Members that are not PCI functions (platform devices on some hosts) are
        left out: they cannot be handed to a VM through vfio-pci anyway.
        """
        devices = f"{self._root}/kernel/iommu_groups/{number}/devices"
        members: list[tuple[PciAddress, str | None]] = []
        bridges: list[PciAddress] = []
        for name in list_dir(devices):
            address = self._parse(name)
            if address is None:
                _log.debug("iommu group %d: %r is not a PCI function; ignored", number, name)
                continue
            member = f"{devices}/{name}"
            members.append((address, link_name(member + "/driver")))
            pci_class = read_int(member + "/class", IntFormat.HEX)
            if pci_class is not None and pci_class >> 8 in _BRIDGE_CLASSES:
                bridges.append(address)
        members.sort()
        bridges.sort()
        return IommuGroup(number, tuple(members), tuple(bridges))

"""Small reads of one PCI function's sysfs directory, for effects that must confirm
what they did without re-enumerating the host."""

from __future__ import annotations

import os
from pathlib import Path

from qtagent.model.types import PciAddress
from qtagent.sysfs.attrs import number_in_name


def device_dir(root: Path, address: PciAddress) -> Path:
    return root / "bus" / "pci" / "devices" / str(address)


def pci_driver_dir(root: Path, driver: str) -> Path:
    return root / "bus" / "pci" / "drivers" / driver


def driver_loaded(root: Path, driver: str) -> bool:
    """``test -d /sys/bus/pci/drivers/$driver``: the driver is registered with the PCI
    bus (its module is loaded, or it is built in)."""
    return pci_driver_dir(root, driver).is_dir()


def driver_of(root: Path, address: PciAddress) -> str | None:
    """basename $(readlink /sys/bus/pci/devices/$addr/driver), or None when unbound."""
    try:
        return os.path.basename(os.readlink(device_dir(root, address) / "driver"))
    except OSError:
        return None


def iommu_group_of(root: Path, address: PciAddress) -> int | None:
    """basename $(readlink /sys/bus/pci/devices/$addr/iommu_group)"""
    try:
        target = os.readlink(device_dir(root, address) / "iommu_group")
    except OSError:
        return None
    return number_in_name(os.path.basename(target))

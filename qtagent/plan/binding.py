"""Decide whether a VF may move to vfio-pci (FIELD-CASES C7). Pure.

VFIO hands a whole IOMMU group to one user. A VF whose group also holds a
device that is still on a host driver (its PF, say) cannot be given to a VM:
refuse before anything is unbound, naming the other devices and their drivers.
PCI bridges in a group do not count (VFIO tolerates them).
"""

from __future__ import annotations

from qtagent.errors import Conflict, Unsupported
from qtagent.model.host import IommuGroup, VfInfo
from qtagent.model.types import PciAddress

VFIO_SAFE_DRIVERS = frozenset({None, "vfio-pci", "pci-stub"})


def blocking_members(
    vf_address: PciAddress, group: IommuGroup
) -> list[tuple[PciAddress, str | None]]:
    """The other devices of the group that keep it from being viable for VFIO."""
    return [
        (address, driver)
        for address, driver in group.members
        if address != vf_address
        and address not in group.bridges
        and driver not in VFIO_SAFE_DRIVERS
    ]


def check_vfio_viable(vf: VfInfo) -> None:
    """Raise unless ``vf`` can be bound to vfio-pci and handed to a VM."""
    if vf.address is None:
        raise Unsupported(
            f"{vf.id} is not a PCI function (netdevsim VF); it cannot be bound to vfio-pci",
            hint="only VFs of PCI PFs can be passed through to VMs",
        )
    if vf.iommu_group is None:
        raise Unsupported(
            f"{vf.id} ({vf.address}) is in no IOMMU group; VFIO needs an IOMMU",
            hint="enable the IOMMU: boot with intel_iommu=on (or amd_iommu=on) iommu=pt",
        )
    blockers = blocking_members(vf.address, vf.iommu_group)
    if blockers:
        names = ", ".join(f"{addr} (driver {drv})" for addr, drv in blockers)
        raise Conflict(
            f"{vf.id} ({vf.address}) shares IOMMU group {vf.iommu_group.number} with devices "
            f"still on host drivers: {names}; the group is not viable for VFIO",
            hint="enable ACS on the platform so VFs get their own groups, or move every "
            "device of the group to vfio-pci",
        )

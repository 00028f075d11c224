"""FIELD-CASES C7: a VF whose IOMMU group holds a device on a host driver is refused."""

import dataclasses

import pytest

from qtagent.errors import Conflict, Unsupported
from qtagent.model.host import IommuGroup
from qtagent.model.types import PciAddress
from qtagent.plan.binding import check_vfio_viable
from tests.unit.factories import make_vf

PF = PciAddress.parse("0000:41:00.0")
BRIDGE = PciAddress.parse("0000:40:00.0")


def test_vf_alone_in_its_group_is_viable() -> None:
    check_vfio_viable(make_vf(0))


def test_group_shared_with_the_pf_on_its_driver_is_refused_naming_it() -> None:
    vf = make_vf(1)
    assert vf.address is not None
    group = IommuGroup(15, ((PF, "igb"), (vf.address, "igbvf")))
    with pytest.raises(Conflict, match=r"0000:41:00.0 \(driver igb\)") as info:
        check_vfio_viable(dataclasses.replace(vf, iommu_group=group))
    assert "group 15" in str(info.value)


def test_bridges_and_vfio_members_do_not_count() -> None:
    vf = make_vf(1)
    assert vf.address is not None
    other = PciAddress.parse("0000:41:10.3")
    group = IommuGroup(
        15, ((BRIDGE, "pcieport"), (other, "vfio-pci"), (vf.address, "igbvf")), bridges=(BRIDGE,)
    )
    check_vfio_viable(dataclasses.replace(vf, iommu_group=group))


def test_no_iommu_group_is_unsupported_with_a_hint() -> None:
    with pytest.raises(Unsupported, match="no IOMMU group") as info:
        check_vfio_viable(dataclasses.replace(make_vf(0), iommu_group=None))
    assert "intel_iommu=on" in info.value.hint


def test_netdevsim_vf_cannot_be_bound() -> None:
    with pytest.raises(Unsupported, match="not a PCI function"):
        check_vfio_viable(dataclasses.replace(make_vf(0), address=None))

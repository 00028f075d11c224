"""Small builders of model values for pure-logic tests."""

from qtagent.model.host import IommuGroup, PciIdentity, PfBus, PfInfo, VfInfo
from qtagent.model.types import PciAddress, VfId

PF_ADDR = "0000:41:00.0"


def make_vf(
    index: int, *, pf: str = PF_ADDR, driver: str | None = "igbvf", netdev: bool = True
) -> VfInfo:
    address = PciAddress(0, 0x41, 0x10 + index // 8, index % 8)
    return VfInfo(
        id=VfId(pf, index),
        address=address,
        driver=driver,
        netdev=f"enp65s0v{index}" if netdev and driver == "igbvf" else None,
        iommu_group=IommuGroup(20 + index, ((address, driver),)),
    )


def make_pf(
    num_vfs: int = 0,
    *,
    total_vfs: int = 7,
    driver: str | None = "igb",
    netdev: str | None = "enp65s0",
    bus: PfBus = PfBus.PCI,
) -> PfInfo:
    return PfInfo(
        name=PF_ADDR,
        bus=bus,
        address=PciAddress.parse(PF_ADDR),
        identity=PciIdentity(0x8086, 0x10C9),
        driver=driver,
        netdev=netdev,
        ifindex=2,
        mac=None,
        operstate="up",
        speed_mbps=1000,
        numa_node=0,
        iommu_group=15,
        total_vfs=total_vfs,
        num_vfs=num_vfs,
        vfs=tuple(make_vf(i) for i in range(num_vfs)),
    )

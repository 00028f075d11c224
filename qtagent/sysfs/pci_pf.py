"""SR-IOV physical functions on the PCI bus and their VFs (``virtfnN`` links).

A PCI function is an SR-IOV PF when it has ``sriov_totalvfs``. A VF's identity
is its PF's address plus the N of ``virtfnN`` (FIELD-CASES C10); its address,
driver, netdev and IOMMU group are attributes read through that link.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from qtagent.model.host import PciIdentity, PfBus, PfInfo, VfInfo, VfSettings
from qtagent.model.types import VF_COUNT_MAX, VF_INDEX_MAX, VfId
from qtagent.sysfs.attrs import (
    IntFormat,
    at_most,
    int_or_none,
    is_dir,
    link_name,
    list_dir,
    number_in_name,
    read_bytes,
    read_count,
    read_int,
)
from qtagent.sysfs.context import ReadContext
from qtagent.sysfs.iommu import group_number
from qtagent.sysfs.netdev import netdev_name, read_netdev

_log = logging.getLogger(__name__)

_NO_SETTINGS = VfSettings()


def read_pci_pfs(ctx: ReadContext) -> list[PfInfo]:
    """Every SR-IOV PF: ``ls bus/pci/devices/*/sriov_totalvfs``, in address order."""
    devices = ctx.root + "/bus/pci/devices"
    pfs = []
    for name in sorted(list_dir(devices)):
        pf = read_pci_pf(ctx, name, f"{devices}/{name}")
        if pf is not None:
            pfs.append(pf)
    return pfs


def read_pci_pf(ctx: ReadContext, name: str, pf_dir: str) -> PfInfo | None:
    """One PCI function as a PF; None if it is not SR-IOV capable or vanished."""
    total_raw = read_bytes(pf_dir + "/sriov_totalvfs", missing_ok=True)
    if total_raw is None:
        return None
    address = ctx.pci_address(name)
    if address is None:
        _log.debug("ls bus/pci/devices: %r is not a PCI address; ignored", name)
        return None
    total_path = pf_dir + "/sriov_totalvfs"
    total_vfs = at_most(
        int_or_none(total_raw, IntFormat.COUNT, total_path), VF_COUNT_MAX, total_path
    )
    if total_vfs is None:
        total_vfs = 0  # fail closed: a PF whose limit cannot be read takes no VFs

    vendor = read_int(pf_dir + "/vendor", IntFormat.HEX)
    identity = _identity(ctx, vendor, read_int(pf_dir + "/device", IntFormat.HEX))
    vf_device = read_int(pf_dir + "/sriov_vf_device", IntFormat.BARE_HEX)
    vf_identity = _identity(ctx, vendor, vf_device)
    driver = link_name(pf_dir + "/driver")
    netdev = read_netdev(pf_dir)
    ifindex = netdev.ifindex if netdev is not None else None
    numa_node = read_int(pf_dir + "/numa_node")
    iommu_group = group_number(pf_dir)
    virtfns = _virtfn_indexes(pf_dir)
    num_vfs = read_count(pf_dir + "/sriov_numvfs", VF_COUNT_MAX)
    if num_vfs is None:
        num_vfs = len(virtfns)
    address_text = str(address)
    settings = ctx.vf_settings(address_text, ifindex)
    vfs = []
    for index in virtfns:
        vf = _read_vf(ctx, address_text, f"{pf_dir}/virtfn{index}", index, settings)
        if vf is not None:
            vfs.append(vf)

    # Everything above tolerates the PF going away; a PF that did is not shown half-read.
    if not is_dir(pf_dir):
        _log.debug("PF %s vanished while it was read; left out", address_text)
        return None
    return PfInfo(
        name=address_text,
        bus=PfBus.PCI,
        address=address,
        identity=identity,
        driver=driver,
        netdev=netdev.name if netdev is not None else None,
        ifindex=ifindex,
        mac=netdev.mac if netdev is not None else None,
        operstate=netdev.operstate if netdev is not None else None,
        speed_mbps=netdev.speed_mbps if netdev is not None else None,
        numa_node=numa_node if numa_node is not None and numa_node >= 0 else None,
        iommu_group=iommu_group,
        total_vfs=total_vfs,
        num_vfs=num_vfs,
        vfs=tuple(vfs),
        vf_identity=vf_identity,
    )


def _virtfn_indexes(pf_dir: str) -> list[int]:
    """The N of every ``$pf/virtfnN`` link, ascending. An N above the largest VF
    index any SR-IOV device has is not the kernel's: left out with a warning."""
    indexes = []
    for entry in list_dir(pf_dir):
        index = number_in_name(entry, "virtfn")
        if index is not None and index > VF_INDEX_MAX:
            _log.warning(
                "%s/%s: VF index %d is above %d, which no SR-IOV device has; left out",
                pf_dir, entry, index, VF_INDEX_MAX,
            )  # fmt: skip
        elif index is not None:
            indexes.append(index)
    return sorted(indexes)


def _read_vf(
    ctx: ReadContext, pf_name: str, link: str, index: int, settings: Mapping[int, VfSettings]
) -> VfInfo | None:
    """One VF through ``$pf/virtfnN``; None if the link is garbage or dangles, or the
    function it points at is not this PF's VF (its ``physfn`` names another device:
    it would be unbound and handed to a VM as if it were the VF)."""
    target = link_name(link)
    address = ctx.pci_address(target) if target is not None else None
    if address is None:
        _log.debug("readlink %s: %r is not a PCI function; VF %d left out", link, target, index)
        return None
    driver = link_name(link + "/driver")
    if driver is None and not is_dir(link):
        _log.debug("%s dangles (VF %s vanished); left out", link, address)
        return None
    physfn = link_name(link + "/physfn")
    if physfn != pf_name:
        if physfn is None and not is_dir(link):
            _log.debug("%s dangles (VF %s vanished); left out", link, address)
        else:
            _log.warning(
                "%s -> %s: its physfn is %s, not the PF %s; left out (not the kernel's link)",
                link, target, repr(physfn) if physfn else "missing", pf_name,
            )  # fmt: skip
        return None
    group = group_number(link)
    return VfInfo(
        id=VfId(pf_name, index),
        address=address,
        driver=driver,
        netdev=netdev_name(link),
        iommu_group=ctx.iommu.group(group) if group is not None else None,
        settings=settings.get(index, _NO_SETTINGS),
    )


def _identity(ctx: ReadContext, vendor: int | None, device: int | None) -> PciIdentity | None:
    if vendor is None or device is None or not (0 <= vendor <= 0xFFFF and 0 <= device <= 0xFFFF):
        return None
    return PciIdentity(
        vendor, device, ctx.pci_ids.vendor_name(vendor), ctx.pci_ids.device_name(vendor, device)
    )

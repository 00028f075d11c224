"""netdevsim devices as PFs: ``bus/netdevsim/devices/netdevsimN``.

netdevsim's VFs are not PCI functions: there are no ``virtfnN`` links, no VF
netdevs in legacy mode and no IOMMU groups. A VF exists as an index below
``sriov_numvfs`` and its settings live behind the device's port netdev.

The kernel shows no ``sriov_totalvfs`` for netdevsim. The limit is the debugfs
file ``netdevsim/netdevsimN/max_vfs`` (root only, read here as
``<root>/kernel/debug/...``, where debugfs is mounted). Where that cannot be
read, the limit is netdevsim's built-in default (4), raised to ``sriov_numvfs``
if more VFs exist: max_vfs can only be changed through debugfs, so the default
holds on any host where nobody could change it.
"""

from __future__ import annotations

import logging
from typing import Final

from qtagent.model.host import PfBus, PfInfo, VfInfo, VfSettings
from qtagent.model.types import VF_COUNT_MAX, VfId
from qtagent.sysfs.attrs import is_dir, link_name, list_dir, number_in_name, read_count
from qtagent.sysfs.context import ReadContext
from qtagent.sysfs.netdev import read_netdev

_log = logging.getLogger(__name__)

NSIM_DEFAULT_MAX_VFS: Final = 4  # NSIM_BUS_DEV_MAX_VFS in drivers/net/netdevsim/bus.c
_NO_SETTINGS = VfSettings()


def read_netdevsim_pfs(ctx: ReadContext) -> list[PfInfo]:
    """Every netdevsim device: ``ls bus/netdevsim/devices``, in device-number order."""
    devices = ctx.root + "/bus/netdevsim/devices"
    numbered = ((number_in_name(name, "netdevsim"), name) for name in list_dir(devices))
    pfs = []
    for _, name in sorted((number, name) for number, name in numbered if number is not None):
        pf = read_netdevsim_pf(ctx, name, f"{devices}/{name}")
        if pf is not None:
            pfs.append(pf)
    return pfs


def read_netdevsim_pf(ctx: ReadContext, name: str, dev_dir: str) -> PfInfo | None:
    """One netdevsim device: ``cat $dev/sriov_numvfs``, its port netdev and max_vfs."""
    num_vfs = read_count(dev_dir + "/sriov_numvfs", VF_COUNT_MAX)
    if num_vfs is None:
        _log.debug("%s has no readable sriov_numvfs; left out", dev_dir)
        return None
    netdev = read_netdev(dev_dir)
    ifindex = netdev.ifindex if netdev is not None else None
    max_vfs = read_count(f"{ctx.root}/kernel/debug/netdevsim/{name}/max_vfs")
    if max_vfs is None:
        max_vfs = max(NSIM_DEFAULT_MAX_VFS, num_vfs)
        _log.debug("%s: max_vfs unreadable in debugfs; assuming %d", name, max_vfs)
    settings = ctx.vf_settings(name, ifindex)
    vfs = tuple(
        VfInfo(id=VfId(name, index), settings=settings.get(index, _NO_SETTINGS))
        for index in range(num_vfs)
    )
    if not is_dir(dev_dir):
        _log.debug("%s vanished while it was read; left out", name)
        return None
    return PfInfo(
        name=name,
        bus=PfBus.NETDEVSIM,
        address=None,
        identity=None,
        driver=link_name(dev_dir + "/driver"),
        netdev=netdev.name if netdev is not None else None,
        ifindex=ifindex,
        mac=netdev.mac if netdev is not None else None,
        operstate=netdev.operstate if netdev is not None else None,
        speed_mbps=netdev.speed_mbps if netdev is not None else None,
        numa_node=None,
        iommu_group=None,
        total_vfs=max_vfs,
        num_vfs=num_vfs,
        vfs=vfs,
    )

"""The host model read from sysfs: every SR-IOV PF (PCI and netdevsim) and its VFs.

The root is a parameter (``/sys`` on a host, a fake tree in tests), and so are
the PCI ID database and the netlink backend that fills in VF settings. The
reader never raises for what it finds: odd, half-gone or hostile entries are
left out or shown as unknown, with a debug log line saying why.

Equivalent to::

    for pf in /sys/bus/pci/devices/*; do test -e $pf/sriov_totalvfs && ...; done
    ls /sys/bus/netdevsim/devices
    ip link show $pf    # VF settings, when a netlink backend is given
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from qtagent.model.host import HostSnapshot
from qtagent.netlink.api import VfNetlink
from qtagent.sysfs.context import ReadContext
from qtagent.sysfs.netdevsim_pf import read_netdevsim_pfs
from qtagent.sysfs.pci_ids import PciIdDatabase
from qtagent.sysfs.pci_pf import read_pci_pfs

_log = logging.getLogger(__name__)


class SysfsReader:
    """Reads :class:`HostSnapshot` values from the sysfs tree at ``root``.

    Keep one reader for the life of a process: it caches PCI ID names.
    ``netlink``, when given, fills each VF's settings from its PF
    (``VfNetlink.read_vfs``); without it settings stay at their defaults.
    """

    def __init__(
        self,
        root: Path = Path("/sys"),
        *,
        pci_ids: PciIdDatabase | None = None,
        netlink: VfNetlink | None = None,
    ) -> None:
        self.root = root
        self._root = os.fspath(root).rstrip("/") or "/"
        self.pci_ids = pci_ids if pci_ids is not None else PciIdDatabase()
        self.netlink = netlink

    def snapshot(self, *, settings_of: frozenset[str] | None = None) -> HostSnapshot:
        """Every SR-IOV PF: PCI PFs in address order, then netdevsim devices.
        ``settings_of``: read VF settings only for these PFs (device names); the others'
        stay unknown. None: all (when a netlink backend is given)."""
        ctx = ReadContext(self._root, self.pci_ids, self.netlink, settings_of)
        pfs = read_pci_pfs(ctx) + read_netdevsim_pfs(ctx)
        _log.debug("read %d PFs, %d VFs from %s", len(pfs), sum(len(p.vfs) for p in pfs), self.root)
        return HostSnapshot(tuple(pfs))


def read_host(
    root: Path = Path("/sys"),
    *,
    pci_ids: PciIdDatabase | None = None,
    netlink: VfNetlink | None = None,
) -> HostSnapshot:
    """One snapshot of the host under ``root`` (see :class:`SysfsReader`)."""
    return SysfsReader(root, pci_ids=pci_ids, netlink=netlink).snapshot()

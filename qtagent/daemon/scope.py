"""Which PFs a batch of events touches, by the host as last seen. Pure.

The daemon looks again only at those PFs (their VF settings are the costly
read), or at every PF when it cannot tell: events were lost (resync), or a PCI
function or interface it does not know appeared (a new PF, VFs being created).
Interfaces that are no SR-IOV function (loopback, bridges, QEMU's taps: their
sysfs path is under /devices/virtual) are no one's business: no look at all.
"""

from __future__ import annotations

from qtagent.daemon.events import Batch, UdevEvent
from qtagent.model.host import HostSnapshot

_VIRTUAL = "/devices/virtual/"


def pfs_touched(batch: Batch, last: HostSnapshot) -> frozenset[str] | None:
    """The device names of the PFs ``batch`` touches; None: look at every PF."""
    if batch.resync:
        return None
    index = _Index(last)
    touched: set[str] = set()
    for event in batch.udev:
        pf = index.of_udev(event)
        if pf is None:
            if not event.devpath.startswith(_VIRTUAL):
                return None  # a function or interface not seen before
            continue
        touched.add(pf)
    for link in batch.links:
        pf = index.by_ifindex.get(link.ifindex) or index.by_ifname.get(link.ifname or "")
        if pf is not None:
            touched.add(pf)
        # A link qtagent does not know is either virtual or new; a new function's
        # udev event says which (above).
    return frozenset(touched)


class _Index:
    def __init__(self, last: HostSnapshot) -> None:
        self.by_address: dict[str, str] = {}
        self.by_ifname: dict[str, str] = {}
        self.by_ifindex: dict[int, str] = {}
        for pf in last.pfs:
            self.by_address[pf.name] = pf.name
            if pf.address is not None:
                self.by_address[str(pf.address)] = pf.name
            if pf.netdev is not None:
                self.by_ifname[pf.netdev] = pf.name
            if pf.ifindex is not None:
                self.by_ifindex[pf.ifindex] = pf.name
            for vf in pf.vfs:
                if vf.address is not None:
                    self.by_address[str(vf.address)] = pf.name
                if vf.netdev is not None:
                    self.by_ifname[vf.netdev] = pf.name

    def of_udev(self, event: UdevEvent) -> str | None:
        if event.subsystem == "pci":
            found = self.by_address.get(event.name)
        else:
            found = self.by_ifname.get(event.name)
            if found is None and event.ifindex is not None:
                found = self.by_ifindex.get(event.ifindex)
        if found is not None:
            return found
        # A netdevsim port, or an interface renamed since: its device path names its PF.
        for part in event.devpath.split("/"):
            if part in self.by_address:
                return self.by_address[part]
        return None

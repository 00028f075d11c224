"""The daemon's event values: what a udev uevent or an rtnetlink link message said,
and a debounced batch of them. Link events are decoded in
:mod:`qtagent.netlink.link_events` and re-exported here. Pure: uevents are parsed
from their properties as a mapping (what ``udevadm monitor --property`` prints),
not from a pyudev object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from qtagent.model.types import IFINDEX_MAX
from qtagent.netlink.link_events import LinkChange, LinkEvent, valid_ifname

__all__ = [
    "SUBSYSTEMS", "Batch", "Event", "LinkChange", "LinkEvent", "Overrun", "Subsystem",
    "UdevEvent", "valid_ifname",
]  # fmt: skip

Subsystem = Literal["pci", "net"]
SUBSYSTEMS: Final[tuple[Subsystem, ...]] = ("pci", "net")

# The kernel's form of a PCI name (%04x:%02x:%02x.%d), as sysfs and uevents give it.
_PCI_NAME: Final = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]")
_ACTION: Final = re.compile(r"[a-z]{1,16}")


@dataclass(frozen=True, slots=True)
class UdevEvent:
    """One uevent of a PCI function or a network interface.

    ``action``: add, remove, change, move, bind, unbind, online, offline.
    ``devpath``: the device's path under sysfs (``/devices/pci0000:00/...``).
    ``name``: the PCI address (subsystem pci) or the interface name (net).
    ``ifindex``: the interface index (net only). ``driver``: the driver the uevent
    names (bind, unbind, and add of a bound device), if any.
    """

    subsystem: Subsystem
    action: str
    devpath: str
    name: str
    ifindex: int | None = None
    driver: str | None = None

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> UdevEvent | None:
        """The event a uevent's properties describe; None when they are not a pci or
        net uevent as the kernel writes it (a missing or malformed field)."""
        subsystem = props.get("SUBSYSTEM")
        action = props.get("ACTION", "")
        devpath = props.get("DEVPATH", "")
        if subsystem not in SUBSYSTEMS or not _ACTION.fullmatch(action):
            return None
        if not devpath.startswith("/devices/") or "/../" in devpath + "/":
            return None
        driver = props.get("DRIVER") or None
        if subsystem == "pci":
            name = props.get("PCI_SLOT_NAME", devpath.rsplit("/", 1)[-1])
            if not _PCI_NAME.fullmatch(name):
                return None
            return cls("pci", action, devpath, name, None, driver)
        name = props.get("INTERFACE", "")
        ifindex = _ifindex(props.get("IFINDEX"))
        if not valid_ifname(name) or ifindex is False:
            return None
        return cls("net", action, devpath, name, ifindex or None, driver)


def _ifindex(text: str | None) -> int | Literal[False] | None:
    """IFINDEX's value; None when absent, False when it is no interface index."""
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= IFINDEX_MAX:
        return False
    return int(text)


@dataclass(frozen=True, slots=True)
class Overrun:
    """A source lost events (its socket buffer overran, ENOBUFS, or it read a message
    it cannot decode): only a full re-enumeration is sure to see everything."""

    source: str
    reason: str


Event = UdevEvent | LinkEvent | Overrun


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one debounced burst, in arrival order, repeats dropped.

    ``resync``: something was lost (an :class:`Overrun`, or more events than a batch
    keeps): the handler must enumerate everything, not only what the events name.
    """

    udev: tuple[UdevEvent, ...] = ()
    links: tuple[LinkEvent, ...] = ()
    resync: bool = False
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, events: Iterable[Event], *, resync: bool = False) -> Batch:
        udev: dict[UdevEvent, None] = {}
        links: dict[LinkEvent, None] = {}
        reasons: dict[str, None] = {}
        for event in events:
            if isinstance(event, UdevEvent):
                udev[event] = None
            elif isinstance(event, LinkEvent):
                links[event] = None
            else:
                resync = True
                reasons[f"{event.source}: {event.reason}"] = None
        return cls(tuple(udev), tuple(links), resync, tuple(reasons))

    @property
    def pci_addresses(self) -> frozenset[str]:
        """The PCI functions the udev events name."""
        return frozenset(e.name for e in self.udev if e.subsystem == "pci")

    @property
    def ifindexes(self) -> frozenset[int]:
        """The interfaces (by index) the udev and link events name."""
        found = {e.ifindex for e in self.udev if e.ifindex is not None}
        return frozenset(found | {e.ifindex for e in self.links})

    def __len__(self) -> int:
        return len(self.udev) + len(self.links)

    def summary(self) -> str:
        """One line for the log: ``3 udev, 2 link events (resync: ...)``."""
        text = f"{len(self.udev)} udev, {len(self.links)} link events"
        if self.resync:
            text += f" (resync: {'; '.join(self.reasons) or 'requested'})"
        return text

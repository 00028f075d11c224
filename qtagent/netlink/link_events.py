"""Link notifications (RTM_NEWLINK, RTM_DELLINK on RTMGRP_LINK) decoded. Pure.

What ``ip monitor link`` prints, as values. Only what the kernel writes is read:
a datagram either decodes into events that say exactly what its messages say, or
raises :class:`~qtagent.netlink.rtnl_wire.WireError` (a cut message or attribute,
an interface index or name the kernel never gives); the caller then treats the
datagram as lost and re-enumerates. Messages of other types, and link messages of
another family (AF_BRIDGE port notifications, where RTM_DELLINK means "left the
bridge", not "gone"), are not link events and are skipped.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass
from typing import Final

from qtagent.model.types import IFINDEX_MAX
from qtagent.netlink import rtnl_wire as wire

IFNAMSIZ: Final = 16  # include/uapi/linux/if.h, with the NUL


class LinkChange(enum.Enum):
    """What an rtnetlink link message announces."""

    NEW = "RTM_NEWLINK"  # a link appeared or changed (its VF knobs, state, name)
    DEL = "RTM_DELLINK"  # a link went away


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One RTM_NEWLINK or RTM_DELLINK of an AF_UNSPEC link.

    ``has_vfinfo``: the message carried IFLA_VFINFO_LIST. Notifications the kernel
    multicasts carry none (it fills VF info only on request, RTEXT_FILTER_VF), so a
    PF's RTM_NEWLINK after ``ip link set $pf vf ...`` says "look again", not what.
    """

    change: LinkChange
    ifindex: int
    ifname: str | None
    has_vfinfo: bool = False


_CHANGES: Final = {wire.RTM_NEWLINK: LinkChange.NEW, wire.RTM_DELLINK: LinkChange.DEL}


def valid_ifname(name: str) -> bool:
    """The kernel's ``dev_valid_name``: 1 to 15 bytes, not ``.`` or ``..``, no ``/``,
    ``:``, NUL or white space."""
    raw = name.encode("utf-8", "surrogateescape")
    return (
        0 < len(raw) < IFNAMSIZ
        and name not in (".", "..")
        and not any(c in "/:\0" or c.isspace() for c in name)
    )


def decode_link_events(datagram: bytes | memoryview) -> list[LinkEvent]:
    """The link events of one datagram read from an RTMGRP_LINK socket, in order."""
    events: list[LinkEvent] = []
    for reply in wire.replies(memoryview(datagram)):
        change = _CHANGES.get(reply.type)
        if change is None:
            continue
        family, ifindex = wire.link_index(reply)
        if family != socket.AF_UNSPEC:
            continue
        if not 1 <= ifindex <= IFINDEX_MAX:
            raise wire.WireError(f"{change.value} names interface index {ifindex}")
        events.append(_decode(reply, change, ifindex))
    return events


def _decode(reply: wire.Reply, change: LinkChange, ifindex: int) -> LinkEvent:
    name: str | None = None
    has_vfinfo = False
    for attr_type, start, end in wire.link_attributes(reply):
        if attr_type == wire.IFLA_IFNAME:
            if name is not None:
                raise wire.WireError(f"{change.value} of {ifindex} carries two IFLA_IFNAME")
            name = _ifname(bytes(reply.payload[start:end]), ifindex)
        elif attr_type == wire.IFLA_VFINFO_LIST:
            has_vfinfo = True
    return LinkEvent(change, ifindex, name, has_vfinfo)


def _ifname(raw: bytes, ifindex: int) -> str:
    """IFLA_IFNAME as the kernel puts it (nla_put_string): the name and one NUL."""
    name = raw[:-1].decode("utf-8", "surrogateescape")
    if not raw.endswith(b"\0") or not valid_ifname(name):
        raise wire.WireError(f"IFLA_IFNAME of {ifindex} is {raw!r}, not an interface name")
    return name

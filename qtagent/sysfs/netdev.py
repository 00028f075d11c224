"""The network interface of a device: ``<device>/net/<name>`` and its attributes.

A netdev's name is only an attribute (FIELD-CASES C10): it is read fresh on
every snapshot and never used as a key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from qtagent.errors import InvalidInput
from qtagent.model.types import IFINDEX_MAX, MacAddress
from qtagent.sysfs.attrs import list_dir, read_count, read_int, read_text

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NetdevInfo:
    """What the PF snapshot needs from one netdev; None where unknown."""

    name: str
    ifindex: int | None
    mac: MacAddress | None
    operstate: str | None
    speed_mbps: int | None


def netdev_name(device_dir: str) -> str | None:
    """``ls $device/net``: the device's netdev, None if it has none.

    A function with several netdevs (multi-port functions, netdevsim ports)
    gives the one with the lowest ifindex: stable across renames, unlike names.
    """
    names = list_dir(device_dir + "/net")
    if len(names) <= 1:
        return names[0] if names else None
    _log.debug("%s has several netdevs %s; taking the lowest ifindex", device_dir, names)

    def ifindex_of(name: str) -> tuple[int, str]:
        index = read_count(f"{device_dir}/net/{name}/ifindex")
        return (index if index is not None else 1 << 31, name)

    return min(names, key=ifindex_of)


def read_netdev(device_dir: str) -> NetdevInfo | None:
    """The device's netdev with ``cat $device/net/$name/{ifindex,address,operstate,speed}``."""
    name = netdev_name(device_dir)
    if name is None:
        return None
    base = f"{device_dir}/net/{name}/"
    return NetdevInfo(
        name=name,
        ifindex=read_count(base + "ifindex", IFINDEX_MAX),
        mac=_parse_mac(read_text(base + "address"), base),
        operstate=read_text(base + "operstate") or None,
        speed_mbps=_parse_speed(read_int(base + "speed")),
    )


def _parse_mac(text: str | None, where: str) -> MacAddress | None:
    """An Ethernet MAC; None for other link layers (InfiniBand has 20 octets)."""
    if text is None:
        return None
    try:
        return MacAddress.parse(text)
    except InvalidInput:
        _log.debug("cat %saddress: %r is not an Ethernet MAC", where, text[:64])
        return None


def _parse_speed(value: int | None) -> int | None:
    """Mbit/s; None for SPEED_UNKNOWN (-1, shown while a running link has no carrier).

    A down link does not get here: the kernel refuses the read with EINVAL.
    """
    if value is None or value <= 0:
        return None
    return value

"""The rtnetlink wire format for VF settings: build requests, decode replies. Pure.

Only the few messages qtagent sends are covered: RTM_GETLINK of one PF with
IFLA_EXT_MASK = RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS, and RTM_SETLINK with one
IFLA_VFINFO_LIST > IFLA_VF_INFO > IFLA_VF_* attribute. Layouts are the kernel's UAPI
(include/uapi/linux/if_link.h, rtnetlink.h, netlink.h); all fields host-endian.
The builders refuse (InvalidInput) an ifindex or VF index their fields cannot carry
or the kernel never gives, before anything is packed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress, check_ifindex, check_vf_index
from qtagent.netlink.api import Knob, KnobValue, Vlan
from qtagent.netlink.vfinfo import LINK_STATE_CODE, vf_settings

# netlink.h
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLA_TYPE_MASK: Final = 0x3FFF  # drop NLA_F_NESTED and NLA_F_NET_BYTEORDER
# rtnetlink.h
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_SETLINK: Final = 19
RTEXT_FILTER_VF: Final = 1 << 0
RTEXT_FILTER_SKIP_STATS: Final = 1 << 3
RTMGRP_LINK: Final = 0x1  # the multicast group of link notifications (``ip monitor link``)
# if_link.h
IFLA_IFNAME: Final = 3
IFLA_NUM_VF: Final = 21
IFLA_VFINFO_LIST: Final = 22
IFLA_EXT_MASK: Final = 29
IFLA_VF_INFO: Final = 1
IFLA_VF_MAC: Final = 1
IFLA_VF_VLAN: Final = 2
IFLA_VF_SPOOFCHK: Final = 4
IFLA_VF_LINK_STATE: Final = 5
IFLA_VF_RATE: Final = 6
IFLA_VF_TRUST: Final = 9

_NLMSGHDR: Final = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG: Final = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_NLATTR: Final = struct.Struct("=HH")  # len, type
_U32: Final = struct.Struct("=I")
_I32: Final = struct.Struct("=i")
_VF_U32: Final = struct.Struct("=II")  # vf, setting (spoofchk, trust, link_state)
_VF_U32X2: Final = struct.Struct("=III")  # vf, vlan, qos / vf, min, max
_VF_MAC: Final = struct.Struct("=I32s")
HEADER_LEN: Final = _NLMSGHDR.size + _IFINFOMSG.size


class WireError(ValueError):
    """A reply the decoder cannot make sense of (truncated, wrong type)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One netlink message: its type, sequence number and payload."""

    type: int
    seq: int
    payload: memoryview


def _nla(attr_type: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, attr_type) + payload + b"\0" * (-length % 4)


def _message(msg_type: int, flags: int, seq: int, ifindex: int, attrs: bytes) -> bytes:
    check_ifindex(ifindex)
    body = _IFINFOMSG.pack(0, 0, ifindex, 0, 0) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def getlink_request(seq: int, ifindex: int) -> bytes:
    """RTM_GETLINK for one link with VF info and without per-VF stats (``ip link show``)."""
    mask = _U32.pack(RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS)
    return _message(RTM_GETLINK, NLM_F_REQUEST, seq, ifindex, _nla(IFLA_EXT_MASK, mask))


def vf_attribute(vf: int, knob: Knob, value: KnobValue, *, other_rate: int = 0) -> bytes:
    """The one IFLA_VF_* attribute that sets ``knob`` of VF ``vf``.

    ``other_rate`` is the rate not being changed (IFLA_VF_RATE carries min and max).
    The value must have passed :func:`qtagent.netlink.knob_values.check_knob_value`.
    """
    check_vf_index(vf)
    if isinstance(value, MacAddress):
        attr_type, payload = IFLA_VF_MAC, _VF_MAC.pack(vf, value.octets)
    elif isinstance(value, Vlan):
        attr_type, payload = IFLA_VF_VLAN, _VF_U32X2.pack(vf, value.vlan, value.qos)
    elif isinstance(value, LinkState):
        attr_type, payload = IFLA_VF_LINK_STATE, _VF_U32.pack(vf, LINK_STATE_CODE[value])
    elif knob is Knob.SPOOFCHK:
        attr_type, payload = IFLA_VF_SPOOFCHK, _VF_U32.pack(vf, bool(value))
    elif knob is Knob.TRUST:
        attr_type, payload = IFLA_VF_TRUST, _VF_U32.pack(vf, bool(value))
    elif knob is Knob.MAX_TX_RATE:
        attr_type, payload = IFLA_VF_RATE, _VF_U32X2.pack(vf, other_rate, value)
    else:
        attr_type, payload = IFLA_VF_RATE, _VF_U32X2.pack(vf, value, other_rate)
    return _nla(attr_type, payload)


def setlink_vf_request(seq: int, ifindex: int, vf_attr: bytes) -> bytes:
    """RTM_SETLINK of ``ifindex`` carrying exactly one VF attribute, asking for an ACK."""
    vfinfo = _nla(IFLA_VFINFO_LIST, _nla(IFLA_VF_INFO, vf_attr))
    return _message(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, ifindex, vfinfo)


def replies(data: memoryview) -> Iterator[Reply]:
    """Split a datagram into netlink messages."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise WireError(f"netlink message of length {length} at offset {offset} is cut")
        yield Reply(msg_type, seq, data[offset + _NLMSGHDR.size : offset + length])
        offset += (length + 3) & ~3


def error_code(reply: Reply) -> int:
    """The positive errno of an NLMSG_ERROR reply; 0 for an ACK."""
    if reply.type != NLMSG_ERROR or len(reply.payload) < _I32.size:
        raise WireError(f"expected NLMSG_ERROR, got message type {reply.type}")
    return -int(_I32.unpack_from(reply.payload)[0])


def _attrs(data: memoryview, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in data[offset:end]."""
    while offset + _NLATTR.size <= end:
        length, attr_type = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            raise WireError(f"netlink attribute of length {length} at offset {offset} is cut")
        yield attr_type & NLA_TYPE_MASK, offset + _NLATTR.size, offset + length
        offset += (length + 3) & ~3


def link_index(reply: Reply) -> tuple[int, int]:
    """``(ifi_family, ifi_index)`` of an RTM_*LINK message."""
    if len(reply.payload) < _IFINFOMSG.size:
        raise WireError(f"link message of {len(reply.payload)} bytes has no ifinfomsg")
    family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(reply.payload)
    return family, index


def link_attributes(reply: Reply) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each top-level attribute of an RTM_*LINK
    message, as offsets into ``reply.payload``; WireError for a cut attribute."""
    return _attrs(reply.payload, _IFINFOMSG.size, len(reply.payload))


def decode_vfs(reply: Reply) -> dict[int, VfSettings]:
    """Every VF's settings in an RTM_NEWLINK reply, by VF index.

    Raises WireError when the VF list holds fewer VFs than IFLA_NUM_VF says (the
    list's 16-bit length overflows with very many VFs).
    """
    if reply.type != RTM_NEWLINK:
        raise WireError(f"expected RTM_NEWLINK, got message type {reply.type}")
    data = reply.payload
    num_vfs = 0
    vfs: dict[int, VfSettings] = {}
    for attr_type, start, end in _attrs(data, _IFINFOMSG.size, len(data)):
        if attr_type == IFLA_NUM_VF:
            if end - start < _U32.size:
                raise WireError(f"IFLA_NUM_VF is {end - start} bytes, not {_U32.size}")
            num_vfs = _U32.unpack_from(data, start)[0]
        elif attr_type == IFLA_VFINFO_LIST:
            for info_type, info_start, info_end in _attrs(data, start, end):
                if info_type == IFLA_VF_INFO:
                    index, settings = _decode_vf_info(data, info_start, info_end)
                    vfs[index] = settings
    if len(vfs) != num_vfs:
        raise WireError(f"the kernel announced {num_vfs} VFs but sent {len(vfs)}")
    return vfs


_VF_ATTR_STRUCTS: Final = {
    IFLA_VF_MAC: _VF_MAC,
    IFLA_VF_VLAN: _VF_U32X2,
    IFLA_VF_RATE: _VF_U32X2,
    IFLA_VF_SPOOFCHK: _VF_U32,
    IFLA_VF_TRUST: _VF_U32,
    IFLA_VF_LINK_STATE: _VF_U32,
}


def _decode_vf_info(data: memoryview, start: int, end: int) -> tuple[int, VfSettings]:
    index: int | None = None
    mac: bytes | None = None
    vlan = qos = spoofchk = trust = min_rate = max_rate = link_state = None
    for attr_type, a_start, a_end in _attrs(data, start, end):
        layout = _VF_ATTR_STRUCTS.get(attr_type)
        if layout is None:
            continue
        if a_end - a_start < layout.size:
            raise WireError(
                f"VF attribute {attr_type} is {a_end - a_start} bytes, shorter than its "
                f"{layout.size}-byte struct"
            )
        fields = layout.unpack_from(data, a_start)
        if index is not None and fields[0] != index:
            raise WireError(f"one IFLA_VF_INFO entry names VFs {index} and {fields[0]}")
        index = fields[0]
        if attr_type == IFLA_VF_MAC:
            mac = bytes(fields[1][:6])
        elif attr_type == IFLA_VF_VLAN:
            vlan, qos = fields[1:]
        elif attr_type == IFLA_VF_RATE:
            min_rate, max_rate = fields[1:]
        elif attr_type == IFLA_VF_SPOOFCHK:
            spoofchk = fields[1]
        elif attr_type == IFLA_VF_TRUST:
            trust = fields[1]
        elif attr_type == IFLA_VF_LINK_STATE:
            link_state = fields[1]
    if index is None:
        raise WireError("an IFLA_VF_INFO entry carries no VF index")
    return index, vf_settings(
        mac=mac,
        vlan=vlan,
        qos=qos,
        spoofchk=spoofchk,
        trust=trust,
        min_tx_rate=min_rate,
        max_tx_rate=max_rate,
        link_state=link_state,
    )

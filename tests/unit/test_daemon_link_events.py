"""Link notifications (``ip monitor link``) decoded: datagrams recorded from a real
kernel, a cross-check against pyroute2's decoder (tests may import pyroute2), and
hostile bytes, which decode into exactly what they say or raise WireError."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from qtagent.netlink import rtnl_wire as wire
from qtagent.netlink.link_events import (
    LinkChange,
    LinkEvent,
    decode_link_events,
    valid_ifname,
)

DATA = Path(__file__).parent.parent / "data" / "netlink"
AF_BRIDGE = socket.AF_BRIDGE
RTM_NEWADDR = 20


def recorded(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "event"),
    [
        # unshare --net; ip link set lo up
        ("monitor_lo_up.bin", LinkEvent(LinkChange.NEW, 1, "lo")),
        # ip link add qtv0 type veth peer name qtv1 (the first of two notifications)
        ("monitor_veth_add.bin", LinkEvent(LinkChange.NEW, 2, "qtv1")),
        # ip link del qtv0
        ("monitor_veth_del.bin", LinkEvent(LinkChange.DEL, 3, "qtv0")),
    ],
)
def test_decodes_notifications_recorded_from_a_real_kernel(name: str, event: LinkEvent) -> None:
    assert decode_link_events(recorded(name)) == [event]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("monitor_*.bin")))
def test_pyroute2_reads_the_same_index_and_name(name: str) -> None:
    msg = ifinfmsg(recorded(name))
    msg.decode()
    (event,) = decode_link_events(recorded(name))
    assert (event.ifindex, event.ifname) == (msg["index"], msg.get_attr("IFLA_IFNAME"))


def test_a_getlink_reply_with_vf_info_says_so() -> None:
    (event,) = decode_link_events(recorded("getlink_igb_4vfs_default.bin"))
    assert event.has_vfinfo
    assert event.change is LinkChange.NEW


# ---------------------------------------------------------------- building messages


def nla(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, attr_type) + payload + b"\0" * (-length % 4)


def message(
    msg_type: int, ifindex: int, attrs: bytes = b"", *, family: int = 0, pid: int = 0
) -> bytes:
    body = struct.pack("=BxHiII", family, 1, ifindex, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), msg_type, 0, 0, pid) + body


def encode(event: LinkEvent) -> bytes:
    msg_type = wire.RTM_NEWLINK if event.change is LinkChange.NEW else wire.RTM_DELLINK
    attrs = nla(4, struct.pack("=I", 1500))  # IFLA_MTU, which the decoder passes over
    if event.ifname is not None:
        attrs += nla(wire.IFLA_IFNAME, event.ifname.encode("utf-8", "surrogateescape") + b"\0")
    if event.has_vfinfo:
        attrs += nla(wire.IFLA_VFINFO_LIST, b"")
    return message(msg_type, event.ifindex, attrs)


IFNAME_CHARS = st.characters(codec="utf-8", exclude_characters="/:\0")
ifnames = st.text(IFNAME_CHARS, min_size=1, max_size=15).filter(valid_ifname)
events = st.builds(
    LinkEvent,
    st.sampled_from(LinkChange),
    st.integers(1, 2**31 - 1),
    st.none() | ifnames,
    st.booleans(),
)


def test_messages_of_other_types_and_families_are_skipped() -> None:
    lo = LinkEvent(LinkChange.NEW, 1, "lo")
    datagram = (
        message(RTM_NEWADDR, 1)
        + message(wire.RTM_DELLINK, 4, nla(wire.IFLA_IFNAME, b"br-port\0"), family=AF_BRIDGE)
        + encode(lo)
        + message(wire.NLMSG_DONE, 0)
    )
    assert decode_link_events(datagram) == [lo]


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        (nla(wire.IFLA_IFNAME, b"eth0"), "not an interface name"),  # no NUL
        (nla(wire.IFLA_IFNAME, b"a/b\0"), "not an interface name"),
        (nla(wire.IFLA_IFNAME, b"eth0\0") + nla(wire.IFLA_IFNAME, b"eth1\0"), "two IFLA_IFNAME"),
        (struct.pack("=HH", 64, wire.IFLA_IFNAME) + b"eth0", "cut"),
    ],
)
def test_what_the_kernel_never_sends_is_a_wire_error(attrs: bytes, match: str) -> None:
    with pytest.raises(wire.WireError, match=match):
        decode_link_events(message(wire.RTM_NEWLINK, 3, attrs))


@pytest.mark.parametrize("ifindex", [0, -1, -(2**31)])
def test_an_interface_index_the_kernel_never_gives_is_a_wire_error(ifindex: int) -> None:
    with pytest.raises(wire.WireError, match="interface index"):
        decode_link_events(message(wire.RTM_DELLINK, ifindex))


def test_a_link_message_without_ifinfomsg_is_a_wire_error() -> None:
    short = struct.pack("=IHHII", 20, wire.RTM_NEWLINK, 0, 0, 0) + b"\0" * 4
    with pytest.raises(wire.WireError, match="no ifinfomsg"):
        decode_link_events(short)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=8), st.data())
def test_encoded_events_decode_to_exactly_themselves(
    sent: list[LinkEvent], data: st.DataObject
) -> None:
    noise = data.draw(st.lists(st.sampled_from([RTM_NEWADDR, wire.NLMSG_DONE]), max_size=3))
    datagram = b"".join(message(t, 1) for t in noise) + b"".join(encode(e) for e in sent)
    assert decode_link_events(datagram) == sent


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_any_ifname_payload_is_read_exactly_or_refused(raw: bytes) -> None:
    datagram = message(wire.RTM_NEWLINK, 9, nla(wire.IFLA_IFNAME, raw))
    name = raw[:-1].decode("utf-8", "surrogateescape")
    if raw.endswith(b"\0") and valid_ifname(name):
        assert decode_link_events(datagram) == [LinkEvent(LinkChange.NEW, 9, name)]
    else:
        with pytest.raises(wire.WireError):
            decode_link_events(datagram)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_raise_wire_error(raw: bytes) -> None:
    try:
        found = decode_link_events(raw)
    except wire.WireError:
        return
    for event in found:
        assert 1 <= event.ifindex <= 2**31 - 1
        assert event.ifname is None or valid_ifname(event.ifname)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_recorded_notifications_decode_or_raise_wire_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(p.name for p in DATA.glob("monitor_*.bin"))))
    raw = bytearray(recorded(name))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        found = decode_link_events(bytes(raw))
    except wire.WireError:
        return
    for event in found:
        assert 1 <= event.ifindex <= 2**31 - 1
        assert event.ifname is None or valid_ifname(event.ifname)

"""The rtnetlink VF wire format: replies recorded from the lab kernel, requests checked
byte for byte against pyroute2's own encoder (tests may import pyroute2; within
qtagent only the pyroute2 backend does)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.requests.link import LinkIPRouteFilter

from qtagent.errors import InvalidInput
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress
from qtagent.netlink import rtnl_wire as wire
from qtagent.netlink.api import Knob, KnobValue, Vlan
from qtagent.netlink.pyroute2_backend import vf_spec, vfs_from_message

DATA = Path(__file__).parent.parent / "data" / "netlink"
IGB_DEFAULT = VfSettings(
    mac=ZERO_MAC,
    vlan=0,
    qos=0,
    spoofchk=True,
    trust=False,
    max_tx_rate=0,
    min_tx_rate=0,
    link_state=LinkState.AUTO,
)


def recorded(name: str) -> wire.Reply:
    (reply,) = wire.replies(memoryview((DATA / name).read_bytes()))
    return reply


def test_decodes_igb_reply_recorded_in_the_lab() -> None:
    vfs = wire.decode_vfs(recorded("getlink_igb_4vfs_default.bin"))
    assert vfs == dict.fromkeys(range(4), IGB_DEFAULT)


def test_decodes_configured_igb_vf_recorded_in_the_lab() -> None:
    # ip link set $pf vf 0 mac 02:11:22:33:44:55 vlan 100 qos 3 spoofchk off trust on
    # ip link set $pf vf 0 max_tx_rate 100
    vfs = wire.decode_vfs(recorded("getlink_igb_vf0_configured.bin"))
    assert vfs[0] == VfSettings(
        mac=MacAddress.parse("02:11:22:33:44:55"),
        vlan=100,
        qos=3,
        spoofchk=False,
        trust=True,
        max_tx_rate=100,
        min_tx_rate=0,
        link_state=LinkState.AUTO,
    )


def test_decodes_64_netdevsim_vfs_recorded_in_the_lab() -> None:
    # ip link set $pf vf 3 mac 02:00:00:00:00:03 vlan 7 qos 1 spoofchk on trust on
    #     state disable min_tx_rate 5 max_tx_rate 50
    vfs = wire.decode_vfs(recorded("getlink_netdevsim_64vfs.bin"))
    assert sorted(vfs) == list(range(64))
    assert vfs[3] == VfSettings(
        mac=MacAddress.parse("02:00:00:00:00:03"),
        vlan=7,
        qos=1,
        spoofchk=True,
        trust=True,
        max_tx_rate=50,
        min_tx_rate=5,
        link_state=LinkState.DISABLE,
    )


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("getlink_*.bin")))
def test_native_and_pyroute2_decoders_agree_on_recorded_replies(name: str) -> None:
    raw = (DATA / name).read_bytes()
    msg = ifinfmsg(raw)
    msg.decode()
    assert wire.decode_vfs(recorded(name)) == vfs_from_message(msg, "pf")


CASES: list[tuple[Knob, KnobValue]] = [
    (Knob.MAC, MacAddress.parse("02:11:22:33:44:55")),
    (Knob.VLAN, Vlan(100, 3)),
    (Knob.SPOOFCHK, True),
    (Knob.SPOOFCHK, False),
    (Knob.TRUST, True),
    (Knob.LINK_STATE, LinkState.DISABLE),
    (Knob.MAX_TX_RATE, 100),
    (Knob.MIN_TX_RATE, 10),
]


@pytest.mark.parametrize(("knob", "value"), CASES)
def test_set_request_matches_pyroute2_encoding(knob: Knob, value: KnobValue) -> None:
    ours = wire.setlink_vf_request(7, 42, wire.vf_attribute(5, knob, value, other_rate=250))
    theirs = ifinfmsg()
    theirs["index"] = 42
    spec = vf_spec(5, knob, value, 250)
    theirs["attrs"] = [("IFLA_VFINFO_LIST", LinkIPRouteFilter("set").get_vf(spec))]
    theirs.encode()
    assert ours[16:] == bytes(theirs.data[16:])  # everything after the netlink header
    length, msg_type, flags, seq, _pid = struct.unpack_from("=IHHII", ours)
    assert (length, msg_type, flags, seq) == (len(ours), wire.RTM_SETLINK, 0x5, 7)


def test_one_request_carries_exactly_one_vf_attribute() -> None:
    msg = wire.setlink_vf_request(1, 3, wire.vf_attribute(0, Knob.TRUST, True))
    payload = memoryview(msg)[16 + 16 :]
    vflist_len, vflist_type = struct.unpack_from("=HH", payload)
    info_len, info_type = struct.unpack_from("=HH", payload, 4)
    attr_len, attr_type = struct.unpack_from("=HH", payload, 8)
    assert (vflist_type, info_type, attr_type) == (22, 1, wire.IFLA_VF_TRUST)
    assert vflist_len == info_len + 4 == attr_len + 8 == len(payload)


def test_rates_carry_the_other_rate() -> None:
    attr = wire.vf_attribute(2, Knob.MAX_TX_RATE, 100, other_rate=10)
    assert struct.unpack_from("=HHIII", attr) == (16, wire.IFLA_VF_RATE, 2, 10, 100)
    attr = wire.vf_attribute(2, Knob.MIN_TX_RATE, 10, other_rate=100)
    assert struct.unpack_from("=HHIII", attr) == (16, wire.IFLA_VF_RATE, 2, 10, 100)


def test_getlink_asks_for_vf_info_without_stats() -> None:
    msg = wire.getlink_request(9, 3)
    assert struct.unpack_from("=HHI", msg, 32) == (8, wire.IFLA_EXT_MASK, 1 | 8)


def _nla(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, attr_type) + payload + b"\0" * (-length % 4)


def _newlink(vf_infos: list[bytes], num_vfs: int) -> wire.Reply:
    attrs = _nla(wire.IFLA_NUM_VF, struct.pack("=I", num_vfs))
    attrs += _nla(wire.IFLA_VFINFO_LIST, b"".join(_nla(1, info) for info in vf_infos))
    body = struct.pack("=BxHiII", 0, 1, 3, 0, 0) + attrs
    data = struct.pack("=IHHII", 16 + len(body), wire.RTM_NEWLINK, 0, 1, 0) + body
    (reply,) = wire.replies(memoryview(data))
    return reply


def test_not_reported_and_absent_settings_decode_as_none() -> None:
    minus_one = 0xFFFFFFFF
    info = (
        _nla(wire.IFLA_VF_MAC, struct.pack("=I32s", 1, bytes.fromhex("021122334455")))
        + _nla(wire.IFLA_VF_VLAN, struct.pack("=III", 1, 5, 2))
        + _nla(wire.IFLA_VF_SPOOFCHK, struct.pack("=II", 1, minus_one))
        + _nla(wire.IFLA_VF_TRUST, struct.pack("=II", 1, minus_one))
    )  # no IFLA_VF_RATE, no IFLA_VF_LINK_STATE
    assert wire.decode_vfs(_newlink([info], 1)) == {
        1: VfSettings(mac=MacAddress.parse("02:11:22:33:44:55"), vlan=5, qos=2)
    }


def test_a_vf_list_shorter_than_announced_is_an_error() -> None:
    info = _nla(wire.IFLA_VF_MAC, struct.pack("=I32s", 0, b""))
    with pytest.raises(wire.WireError, match="announced 2 VFs but sent 1"):
        wire.decode_vfs(_newlink([info], 2))


def test_cut_messages_are_errors() -> None:
    data = wire.getlink_request(1, 3)
    with pytest.raises(wire.WireError, match="cut"):
        list(wire.replies(memoryview(data[:-4])))


def test_error_and_ack_replies() -> None:
    ack = struct.pack("=IHHIIi", 36, wire.NLMSG_ERROR, 0, 4, 0, 0) + bytes(16)
    err = struct.pack("=IHHIIi", 36, wire.NLMSG_ERROR, 0, 5, 0, -95) + bytes(16)
    replies = list(wire.replies(memoryview(ack + err)))
    assert [(r.seq, wire.error_code(r)) for r in replies] == [(4, 0), (5, 95)]


def test_short_vf_attributes_are_wire_errors_not_struct_errors() -> None:
    short_vlan = _nla(wire.IFLA_VF_VLAN, struct.pack("=I", 0))
    with pytest.raises(wire.WireError, match="shorter than"):
        wire.decode_vfs(_newlink([short_vlan], 1))


def test_one_entry_naming_two_vfs_is_an_error() -> None:
    entry = _nla(wire.IFLA_VF_SPOOFCHK, struct.pack("=II", 0, 1)) + _nla(
        wire.IFLA_VF_TRUST, struct.pack("=II", 1, 0)
    )
    with pytest.raises(wire.WireError, match="names VFs 0 and 1"):
        wire.decode_vfs(_newlink([entry], 1))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_recorded_replies_decode_or_raise_wire_error(data: st.DataObject) -> None:
    raw = bytearray((DATA / "getlink_igb_4vfs_default.bin").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        for reply in wire.replies(memoryview(bytes(raw))):
            wire.decode_vfs(reply)
    except wire.WireError:
        pass


@pytest.mark.parametrize("ifindex", [0, -1, 2**31, 2**32, 2**64])
def test_an_ifindex_the_kernel_never_gives_is_refused_before_packing(ifindex: int) -> None:
    """2**31 and up were a struct.error from packing the C int ifi_index."""
    message = f"interface index {ifindex} is out of range"
    with pytest.raises(InvalidInput, match=message):
        wire.getlink_request(1, ifindex)
    with pytest.raises(InvalidInput, match=message):
        wire.setlink_vf_request(1, ifindex, wire.vf_attribute(0, Knob.TRUST, True))


@pytest.mark.parametrize("vf", [-1, 0x10000, 2**32])
def test_a_vf_index_no_device_has_is_refused_before_packing(vf: int) -> None:
    with pytest.raises(InvalidInput, match=f"VF index {vf} is out of range"):
        wire.vf_attribute(vf, Knob.TRUST, True)


def test_the_largest_ifindex_and_vf_index_still_pack() -> None:
    attr = wire.vf_attribute(0xFFFF, Knob.TRUST, True)
    request = wire.setlink_vf_request(1, 2**31 - 1, attr)
    assert struct.unpack_from("=i", request, 20)[0] == 2**31 - 1  # ifi_index

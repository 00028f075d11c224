"""Parsing of operator input: PCI addresses, MACs, VLANs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtagent.errors import InvalidInput
from qtagent.model.types import MacAddress, PciAddress, check_vlan


def test_pci_address_round_trip_and_short_form() -> None:
    assert str(PciAddress.parse("0000:41:00.0")) == "0000:41:00.0"
    assert PciAddress.parse("41:10.2") == PciAddress(0, 0x41, 0x10, 2)


@pytest.mark.parametrize(
    "text", ["", "0000:41:00", "0000:41:00.8", "zz:00.0", "0000:41:20.0", "eth0"]
)
def test_pci_address_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"PCI address|above 0x1f"):
        PciAddress.parse(text)


@given(st.text(max_size=40))
def test_pci_address_parser_never_crashes(text: str) -> None:
    try:
        address = PciAddress.parse(text)
    except InvalidInput:
        return
    assert PciAddress.parse(str(address)) == address


def test_mac_parse_and_properties() -> None:
    mac = MacAddress.parse("52:54:00:AA:bb:01")
    assert str(mac) == "52:54:00:aa:bb:01"
    assert not mac.is_zero and not mac.is_multicast
    assert MacAddress.parse("00:00:00:00:00:00").is_zero


@pytest.mark.parametrize("text", ["52:54:00:aa:bb", "52-54-00-aa-bb-01", "52:54:00:aa:bb:0g", "x"])
def test_mac_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a MAC address"):
        MacAddress.parse(text)


def test_random_mac_is_local_unicast_and_distinct() -> None:
    macs = {MacAddress.random_local_unicast() for _ in range(64)}
    assert len(macs) == 64
    for mac in macs:
        assert mac.octets[0] & 0x02 and not mac.is_multicast


@pytest.mark.parametrize(("vlan", "qos"), [(-1, 0), (4095, 0), (5000, 0), (10, 8), (0, 3)])
def test_vlan_checks(vlan: int, qos: int) -> None:
    with pytest.raises(InvalidInput):
        check_vlan(vlan, qos)


def test_vlan_accepts_range() -> None:
    check_vlan(0)
    check_vlan(4094, 7)

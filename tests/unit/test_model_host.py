"""Looking PFs up by name in a host snapshot (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from qtagent.errors import InvalidInput, NotFound
from qtagent.model.host import HostSnapshot, PfInfo
from qtagent.model.types import PciAddress
from tests.unit.factories import make_pf


def pf_at(address: str, netdev: str | None) -> PfInfo:
    return dataclasses.replace(
        make_pf(), name=address, address=PciAddress.parse(address), netdev=netdev
    )


def test_an_interface_name_two_pfs_claim_is_ambiguous_never_picked() -> None:
    """A hostile or broken tree may give two PFs one netdev name: taking either could
    act on the wrong device (it used to say "no SR-IOV PF named")."""
    host = HostSnapshot((
        pf_at("0000:41:00.0", "eth9"), pf_at("0000:81:00.0", "eth9"), pf_at("0000:c1:00.0", "x"),
    ))  # fmt: skip
    with pytest.raises(InvalidInput) as raised:
        host.pf("eth9")
    assert str(raised.value) == (
        "the interface name 'eth9' is ambiguous: PFs 0000:41:00.0, 0000:81:00.0 all claim it"
    )
    assert "name the PF by its PCI address" in raised.value.hint
    assert host.pf("0000:81:00.0").name == "0000:81:00.0"  # addresses still work
    assert host.pf("x").name == "0000:c1:00.0"


def test_an_unknown_name_is_still_not_found() -> None:
    host = HostSnapshot((pf_at("0000:41:00.0", "eth9"),))
    with pytest.raises(NotFound, match="no SR-IOV PF named 'eth0'"):
        host.pf("eth0")

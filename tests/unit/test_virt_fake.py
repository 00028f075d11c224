"""The libvirt fake keeps the contract of the real backend and the behaviour measured
in the lab, so tests of higher layers can trust it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.errors import Conflict, NotFound
from qtagent.model.types import MacAddress, PciAddress
from qtagent.virt.api import DomainState, VirtBackend
from qtagent.virt.domain_xml import (
    AttachedVf,
    DomainSpec,
    VfInterface,
    domain_xml,
    hostdev_xml,
    vf_interface_xml,
)
from qtagent.virt.errors import LibvirtFailure, VirtConflict
from qtagent.virt.libvirt_backend import LibvirtBackend
from tests.fakes.virt import VFIO, FakeVirt

VF0 = PciAddress.parse("0000:41:10.0")
VF1 = PciAddress.parse("0000:41:10.2")
MAC = MacAddress.parse("52:54:00:aa:bb:01")


def tiny(name: str, virt_type: str) -> str:
    return domain_xml(DomainSpec(name, virt_type=virt_type))  # type: ignore[arg-type]


@pytest.fixture(params=["fake", "libvirt-test-driver"])
def any_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[VirtBackend, str]]:
    if request.param == "fake":
        yield FakeVirt({VF0: "igbvf", VF1: "igbvf"}), "qemu"
    else:
        node = tmp_path / "node.xml"
        node.write_text("<node/>")
        backend = LibvirtBackend(f"test://{node}")
        yield backend, "test"
        backend.close()


# ------------------------------------------------ the contract both keep


def test_contract_life_cycle(any_backend: tuple[VirtBackend, str]) -> None:
    backend, kind = any_backend
    backend.define_and_start(tiny("b", kind), paused=False)
    info = backend.define_and_start(tiny("a", kind), paused=False)
    assert (info.name, info.state) == ("a", DomainState.RUNNING)
    assert [d.name for d in backend.list_domains()] == ["a", "b"]
    backend.attach_hostdev("a", hostdev_xml(VF0, managed=True))
    assert backend.hostdev_addresses("a") == (VF0,)
    assert backend.attached_vfs("a") == (AttachedVf(VF0, "hostdev", managed=True),)
    backend.destroy("a")
    with pytest.raises(Conflict) as err:
        backend.destroy("a")
    assert isinstance(err.value, LibvirtFailure)
    assert err.value.code == 55
    backend.undefine("a")
    assert not backend.domain_exists("a")
    assert backend.domain_exists("b")


def test_contract_domain_state(any_backend: tuple[VirtBackend, str]) -> None:
    backend, kind = any_backend
    assert backend.domain_state("a") is None
    backend.define_and_start(tiny("a", kind), paused=False)
    assert backend.domain_state("a") is DomainState.RUNNING
    backend.destroy("a")
    assert backend.domain_state("a") is DomainState.SHUTOFF


def test_contract_unknown_domain(any_backend: tuple[VirtBackend, str]) -> None:
    backend, _ = any_backend
    for call in (
        lambda: backend.destroy("ghost"),
        lambda: backend.undefine("ghost"),
        lambda: backend.domain_xml("ghost"),
        lambda: backend.attach_hostdev("ghost", hostdev_xml(VF0)),
        lambda: backend.detach_hostdev("ghost", hostdev_xml(VF0)),
    ):
        with pytest.raises(NotFound) as err:
            call()
        assert isinstance(err.value, LibvirtFailure)
        assert err.value.code == 42


# ------------------------------------ what the lab measured on QEMU (fake only)


@pytest.fixture
def fake() -> FakeVirt:
    virt = FakeVirt({VF0: VFIO, VF1: "igbvf"})
    virt.define_and_start(tiny("a", "qemu"))
    virt.define_and_start(tiny("b", "qemu"))
    return virt


def vf0(mac: MacAddress = MAC, vlan: int = 100, *, managed: bool = False) -> str:
    return vf_interface_xml(VfInterface(VF0, mac, vlan=vlan, managed=managed))


def test_fake_refuses_a_vf_held_by_another_domain_naming_it(fake: FakeVirt) -> None:
    fake.attach_hostdev("a", vf0())
    assert fake.attached_vfs("a") == (AttachedVf(VF0, "interface", False, MAC, 100),)
    with pytest.raises(VirtConflict) as err:
        fake.attach_hostdev("b", vf0(MacAddress.parse("52:54:00:aa:bb:02"), 200))
    assert (err.value.code, err.value.holder) == (55, "a")
    assert fake.hostdev_addresses("b") == ()


def test_fake_unmanaged_needs_vfio_and_managed_moves_the_driver(fake: FakeVirt) -> None:
    vf1 = vf_interface_xml(VfInterface(VF1, MAC, managed=False))
    with pytest.raises(Conflict, match="must be manually detached"):
        fake.attach_hostdev("a", vf1)
    fake.attach_hostdev("a", vf_interface_xml(VfInterface(VF1, MAC, managed=True)))
    assert fake.drivers[VF1] == VFIO
    fake.destroy("a")
    assert fake.drivers[VF1] == "igbvf"
    assert fake.hostdev_addresses("a") == ()


def test_fake_detach_without_a_guest_os_keeps_the_device(fake: FakeVirt) -> None:
    fake.attach_hostdev("a", vf0())
    fake.detach_hostdev("a", vf0())  # reports success
    assert fake.hostdev_addresses("a") == (VF0,)
    with pytest.raises(LibvirtFailure, match="already in the process of unplug") as err:
        fake.detach_hostdev("a", vf0())
    assert err.value.code == 1
    fake.destroy("a")  # destroy is what frees it
    fake.attach_hostdev("b", vf0())
    assert fake.hostdev_addresses("b") == (VF0,)


def test_fake_detach_with_a_guest_that_answers_the_eject(fake: FakeVirt) -> None:
    fake.domains["a"].answers_eject = True
    fake.domains["a"].state = DomainState.RUNNING
    fake.attach_hostdev("a", vf0())
    fake.detach_hostdev("a", vf0())
    assert fake.hostdev_addresses("a") == ()
    with pytest.raises(NotFound):
        fake.detach_hostdev("a", vf0())

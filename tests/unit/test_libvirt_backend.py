"""LibvirtBackend against libvirt's in-process test driver (no daemon, no QEMU).

Each test gets its own empty test:/// node, so tests do not share domains.
The test driver cannot hot-plug ``<interface type='hostdev'>``, start paused,
or refuse a VF held elsewhere: those are proven in tests/lab/test_libvirt_lab.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qtagent.errors import Conflict, NotFound, QtagentError, Unsupported, VirtError
from qtagent.model.types import MacAddress, PciAddress
from qtagent.virt.api import DomainState
from qtagent.virt.domain_xml import (
    DomainSpec,
    VfInterface,
    domain_xml,
    hostdev_xml,
    vf_interface_xml,
)
from qtagent.virt.errors import LibvirtFailure, from_libvirt
from qtagent.virt.libvirt_backend import LibvirtBackend, code_name

VF0 = PciAddress.parse("0000:41:10.0")
VF1 = PciAddress.parse("0000:41:10.2")


@pytest.fixture
def backend(tmp_path: Path) -> LibvirtBackend:
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    return LibvirtBackend(f"test://{node}")


def tiny(name: str) -> str:
    return domain_xml(DomainSpec(name, virt_type="test"))


def test_construction_does_not_connect_and_a_dead_daemon_is_explained() -> None:
    backend = LibvirtBackend("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(VirtError) as err:
        backend.list_domains()
    assert isinstance(err.value, LibvirtFailure)
    assert err.value.code == 38  # VIR_ERR_SYSTEM_ERROR, kept from libvirt
    assert "/nonexistent/libvirt-sock" in err.value.libvirt_message
    assert "libvirtd running" in err.value.hint
    assert "VIR_ERR_SYSTEM_ERROR (38)" in err.value.diagnostics()


def test_domain_life_cycle(backend: LibvirtBackend) -> None:
    assert backend.list_domains() == ()
    assert not backend.domain_exists("a")
    info = backend.define_and_start(tiny("a"), paused=False)
    assert (info.name, info.state, info.persistent) == ("a", DomainState.RUNNING, True)
    backend.define_and_start(tiny("b"), paused=False)
    assert [d.name for d in backend.list_domains()] == ["a", "b"]
    assert backend.domain_exists("a")
    assert "<name>a</name>" in backend.domain_xml("a")
    backend.destroy("a")
    assert {d.name: d.state for d in backend.list_domains()}["a"] is DomainState.SHUTOFF
    backend.undefine("a")
    assert not backend.domain_exists("a")
    assert [d.name for d in backend.list_domains()] == ["b"]


def test_failed_start_leaves_no_domain_behind(backend: LibvirtBackend) -> None:
    # The test driver refuses VIR_DOMAIN_START_PAUSED: a start failure on demand.
    with pytest.raises(LibvirtFailure, match="start --paused a"):
        backend.define_and_start(tiny("a"), paused=True)
    assert not backend.domain_exists("a")


def test_unknown_domain_is_not_found_keeping_libvirts_code(backend: LibvirtBackend) -> None:
    for call in (
        lambda: backend.destroy("ghost"),
        lambda: backend.undefine("ghost"),
        lambda: backend.hostdev_addresses("ghost"),
        lambda: backend.attach_hostdev("ghost", hostdev_xml(VF0)),
    ):
        with pytest.raises(NotFound) as err:
            call()
        assert isinstance(err.value, LibvirtFailure)
        assert (err.value.code, err.value.code_name) == (42, "VIR_ERR_NO_DOMAIN")
        assert err.value.status == 404


def test_invalid_operation_is_conflict(backend: LibvirtBackend) -> None:
    backend.define_and_start(tiny("a"), paused=False)
    backend.destroy("a")
    with pytest.raises(Conflict) as err:
        backend.destroy("a")  # not running: libvirt error 55
    assert isinstance(err.value, LibvirtFailure)
    assert err.value.code == 55
    assert "not running" in err.value.libvirt_message
    assert err.value.to_dict()["libvirt_error"] == "VIR_ERR_OPERATION_INVALID"


def test_attach_plain_hostdev_shows_in_the_live_xml(
    backend: LibvirtBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.define_and_start(tiny("a"), paused=False)
    with caplog.at_level(logging.DEBUG, logger="qtagent.virt.libvirt_backend"):
        backend.attach_hostdev("a", hostdev_xml(VF0))
        backend.attach_hostdev("a", hostdev_xml(VF1, managed=True))
    assert backend.hostdev_addresses("a") == (VF0, VF1)
    assert [vf.managed for vf in backend.attached_vfs("a")] == [False, True]
    commands = [r.getMessage() for r in caplog.records]
    assert any(
        c.startswith(f"virsh -c {backend.shown_uri} attach-device a /dev/stdin --live <<< ")
        for c in commands
    )


def test_driver_without_interface_hotplug_is_unsupported(backend: LibvirtBackend) -> None:
    backend.define_and_start(tiny("a"), paused=False)
    xml = vf_interface_xml(VfInterface(VF0, MacAddress.parse("52:54:00:aa:bb:01"), vlan=100))
    with pytest.raises(Unsupported) as err:
        backend.attach_hostdev("a", xml)
    assert isinstance(err.value, LibvirtFailure)
    assert err.value.status == 422


def test_bad_xml_is_a_libvirt_failure(backend: LibvirtBackend) -> None:
    with pytest.raises(LibvirtFailure) as err:
        backend.define_and_start("<domain type='test'><name>x</name></domain>", paused=False)
    assert err.value.code != 0
    assert err.value.libvirt_message


def test_close_then_reuse_reconnects(backend: LibvirtBackend) -> None:
    backend.define_and_start(tiny("a"), paused=False)
    backend.close()
    backend.close()  # twice is harmless
    # a custom test:/// node is private to its connection: a new one starts empty
    assert backend.list_domains() == ()


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        (42, NotFound, 404),
        (99, NotFound, 404),
        (55, Conflict, 409),
        (84, Unsupported, 422),
        (1, VirtError, 502),
    ],
)
def test_error_kinds_by_code(code: int, kind: type[Exception], status: int) -> None:
    err = from_libvirt("virsh attach-device a x", code, f"VIR_ERR_{code}", "libvirt says no")
    assert isinstance(err, kind)
    assert isinstance(err, VirtError)  # every libvirt refusal is also a VirtError
    assert err.status == status
    assert err.message == "virsh attach-device a x failed: libvirt says no"


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "VIR_ERR_OK"),
        (1, "VIR_ERR_INTERNAL_ERROR"),
        (2, "VIR_ERR_NO_MEMORY"),  # not VIR_ERR_ERROR, an error level
        (42, "VIR_ERR_NO_DOMAIN"),
        (55, "VIR_ERR_OPERATION_INVALID"),
        (99, "VIR_ERR_DEVICE_MISSING"),
        (100000, "VIR_ERR_100000"),
    ],
)
def test_code_names_are_libvirts(code: int, name: str) -> None:
    assert code_name(code) == name


def test_credentials_in_the_uri_never_reach_messages() -> None:
    from qtagent.virt.libvirt_backend import redact_uri

    uri = "qemu+tcp://admin:s3cretPW@127.0.0.1:1/system?password=hunter2"
    assert redact_uri(uri) == "qemu+tcp://admin:***@127.0.0.1:1/system?***"
    assert redact_uri("qemu:///system") == "qemu:///system"
    backend = LibvirtBackend(uri)
    with pytest.raises(QtagentError) as info:
        backend.domain_exists("vm1")
    text = info.value.diagnostics()
    assert "s3cretPW" not in text and "hunter2" not in text

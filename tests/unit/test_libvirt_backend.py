"""LibvirtBackend against libvirt's in-process test driver (no daemon, no QEMU).

Each test gets its own empty test:/// node, so tests do not share domains.
The test driver cannot hot-plug ``<interface type='hostdev'>``, start paused,
or refuse a VF held elsewhere: those are proven in tests/lab/test_libvirt_lab.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from qtagent.virt.uri import PLAIN_PARAMS, redact_text, redact_uri, uri_secrets

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
    uri = "qemu+tcp://admin:s3cretPW@127.0.0.1:1/system?password=hunter2"
    assert redact_uri(uri) == "qemu+tcp://admin:***@127.0.0.1:1/system?password=***"
    backend = LibvirtBackend(uri)
    with pytest.raises(QtagentError) as info:
        backend.domain_exists("vm1")
    text = info.value.diagnostics() + repr(info.value.to_dict())
    assert "s3cretPW" not in text and "hunter2" not in text


def test_a_libvirt_message_that_echoes_the_uri_is_redacted_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """libvirt's test driver names the file it cannot open: here the whole URI path."""
    backend = LibvirtBackend("test:///nonexistent/admin:hunter2@node.xml")
    with pytest.raises(LibvirtFailure) as info:
        backend.list_domains()
    err = info.value
    assert "Failed to open file" in err.libvirt_message
    text = err.diagnostics() + repr(err.to_dict()) + err.libvirt_message + caplog.text
    assert "hunter2" not in text
    assert "test:///nonexistent/admin:***@node.xml" in err.message


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("qemu:///system", "qemu:///system"),
        ("qemu:///system?password=x", "qemu:///system?password=***"),
        ("qemu+tcp://[::1/system", "qemu+tcp://[::1/system"),  # urllib raises ValueError
        ("qemu+tcp://u:pw@[::1/system", "qemu+tcp://u:***@[::1/system"),
        ("qemu+ssh://user:secret@host/system", "qemu+ssh://user:***@host/system"),
        ("qemu+ssh://user@host:22/system?keyfile=/k&no_verify=1", None),
        (
            "qemu+unix:///system?socket=/run/s&token=t0k&flag",
            "qemu+unix:///system?socket=/run/s&token=***&***",
        ),
        ("qemu+ssh://u:p@ss/w@rd@host/system", "qemu+ssh://u:***@host/system"),  # unencoded
        ("qemu+ssh://u:p?w@host/system", "qemu+ssh://u:***"),  # ambiguous: more is masked
        ("qemu+ssh://u:p%40ss@host/system", "qemu+ssh://u:***@host/system"),
        ("qemu+ssh://u:\udcff@h/system", "qemu+ssh://u:***@h/system"),  # a byte not UTF-8
        ("", ""),
        ("@:?=&#", "@:?=&***"),
    ],
)
def test_redaction_masks_only_the_secrets(uri: str, shown: str | None) -> None:
    assert redact_uri(uri) == (uri if shown is None else shown)


SECRET = "\u2603"  # a snowman starts every secret below, and appears nowhere else
PLAIN = st.text(st.characters(exclude_characters=SECRET))
NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@given(
    scheme=st.sampled_from(["qemu", "qemu+ssh", "qemu+tcp", "test", "xen+tls"]),
    user=PLAIN,
    password=st.none() | PLAIN.map(lambda t: SECRET + t),
    host=PLAIN,
    params=st.lists(st.tuples(NAMES, PLAIN.filter(lambda t: "&" not in t)), max_size=4),
    secret_params=st.lists(
        st.tuples(NAMES.filter(lambda n: n not in PLAIN_PARAMS), PLAIN.map(lambda t: SECRET + t)),
        max_size=3,
    ),
)
def test_no_secret_survives_redaction(
    scheme: str,
    user: str,
    password: str | None,
    host: str,
    params: list[tuple[str, str]],
    secret_params: list[tuple[str, str]],
) -> None:
    userinfo = "" if password is None else f"{user}:{password}@"
    pairs = [(k, v) for k, v in params if k in PLAIN_PARAMS] + secret_params
    query = "&".join(f"{k}={v.replace('&', '')}" for k, v in pairs)
    uri = f"{scheme}://{userinfo}{host}/system" + (f"?{query}" if query else "")
    shown = redact_uri(uri)
    assert SECRET not in shown
    assert shown.startswith(f"{scheme}://")
    assert not any(
        secret in redact_text(f"libvirt: {uri}; {secret}!", uri)
        for secret in uri_secrets(uri)
        if secret
    )


@given(st.text())
def test_redaction_takes_any_text(text: str) -> None:
    shown = redact_uri(text)
    assert isinstance(shown, str) and isinstance(redact_text(text, text), str)
    if "@" not in text and "?" not in text:
        assert shown == text  # nothing to mask: kept exactly


@given(
    path=st.text("abcdefghijklmnopqrstuvwxyz/._-", max_size=20),
    params=st.lists(
        st.tuples(st.sampled_from(sorted(PLAIN_PARAMS)), st.text("abc/._-=")), max_size=3
    ),
)
def test_redaction_keeps_a_uri_without_secrets_exactly(
    path: str, params: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{k}={v}" for k, v in params)
    uri = f"qemu+ssh://user@host:22/{path}" + (f"?{query}" if query else "")
    assert redact_uri(uri) == uri

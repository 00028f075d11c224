"""VM spec files (issue 4): what a good one gives, what each bad one is told."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtagent.errors import ConfigError
from qtagent.model.types import MacAddress
from qtagent.plan.knobs import KnobRequest
from qtagent.vmspec import (
    DiskBoot,
    KernelBoot,
    NicRequest,
    NumaPolicy,
    VmSpec,
    load_vm_spec,
    parse_vm_spec,
)

GOOD = b"""
name = "web1"
vcpus = 2
memory_mib = 256

[boot]
kernel = "/var/lib/qtagent/images/vmlinuz"
initrd = "/var/lib/qtagent/images/initrd.img"
cmdline = "console=ttyS0 quiet"

[numa]
node = 1
policy = "required"

[[nic]]
mac = "52:54:00:12:34:56"
pf = "0000:81:00.0"
vlan = 100
qos = 3
spoofchk = true
trust = false
max_tx_rate = 1000
min_tx_rate = 100

[[nic]]
mac = "52:54:00:12:34:57"
"""


def test_a_full_spec_reads_into_its_values() -> None:
    spec = parse_vm_spec(GOOD, "web1.toml")
    assert (spec.name, spec.vcpus, spec.memory_mib) == ("web1", 2, 256)
    assert spec.boot == KernelBoot(
        PurePosixPath("/var/lib/qtagent/images/vmlinuz"),
        PurePosixPath("/var/lib/qtagent/images/initrd.img"),
        "console=ttyS0 quiet",
    )
    assert (spec.numa_node, spec.numa_policy) == (1, NumaPolicy.REQUIRED)
    first = MacAddress.parse("52:54:00:12:34:56")
    assert spec.nics == (
        NicRequest(KnobRequest(first, 100, 3, True, False, 1000, 100), "0000:81:00.0"),
        NicRequest(KnobRequest(MacAddress.parse("52:54:00:12:34:57"), vlan=0)),
    )
    assert spec.nics[0].mac == first


def test_defaults_a_disk_boot_and_a_node_without_policy() -> None:
    spec = parse_vm_spec(b'name = "db"\n[boot]\ndisk = "/img/db.raw"\nformat = "raw"\n')
    assert (spec.vcpus, spec.memory_mib, spec.nics) == (1, 512, ())
    assert spec.boot == DiskBoot(PurePosixPath("/img/db.raw"), "raw")
    assert spec.numa_policy is NumaPolicy.IGNORE and spec.numa_node is None
    pinned = parse_vm_spec(b'name = "db"\n[boot]\ndisk = "/i.qcow2"\n[numa]\nnode = 0\n')
    assert (pinned.numa_node, pinned.numa_policy) == (0, NumaPolicy.PREFERRED)


BOOT = '[boot]\nkernel = "/k"\n'


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (BOOT, "s.toml: name is missing", "add name"),
        ('name = "a/b"\n' + BOOT, "name = \"a/b\": VM name 'a/b' contains '/'", ""),
        ('name = 7\n' + BOOT, "name must be a string, not a whole number 7", "in quotes"),
        ('name = "v"\nvcpu = 2\n' + BOOT, 'unknown key "vcpu"', "did you mean vcpus?"),
        ('name = "v"\nvcpus = 0\n' + BOOT, "vcpus = 0 is out of range", "use 1 to 1024"),
        ('name = "v"\nmemory_mib = "1G"\n' + BOOT, "memory_mib must be a whole number", "MiB"),
        ('name = "v"\n', "s.toml: [boot] is missing", "kernel ="),
        ('name = "v"\n[boot]\nkernel = "/k"\ndisk = "/d"\n', "either kernel or disk, not both",
         "boots a disk image"),
        ('name = "v"\n[boot]\nkernel = "vmlinuz"\n', 'kernel = "vmlinuz" is not an absolute path',
         "starting with /"),
        ('name = "v"\n[boot]\nkernel = "/k"\ncmdline = "a\\nb"\n', "must be 1 to 4096 printable",
         "no control characters"),
        ('name = "v"\n[boot]\ndisk = "/d"\nformat = "vmdk"\n', 'format = "vmdk" is not a disk',
         '"qcow2" or format = "raw"'),
        ('name = "v"\n[boot]\ndisk = "/d"\ninitrd = "/i"\n', 'unknown key "initrd"',
         "disk, format"),
        ('name = "v"\n' + BOOT + '[numa]\npolicy = "required"\n',
         'policy = "required" needs a node', "add node = N"),
        ('name = "v"\n' + BOOT + '[numa]\nnode = 0\npolicy = "strict"\n', "is not a NUMA policy",
         '"required", "preferred" or "ignore"'),
        ('name = "v"\n' + BOOT + "[[nic]]\nvlan = 5\n", "[[nic]] 1: mac is missing", "add mac"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:zz:00:01"\n',
         'mac = "52:54:00:zz:00:01" is not a MAC address', "six hex octets"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "01:00:5e:00:00:01"\n', "is a multicast address",
         "unicast"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "00:00:00:00:00:00"\n', "is all zero", "unicast"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:00:00:01"\nvlan = 4095\n',
         "vlan = 4095 is out of range", "use 0 to 4094"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:00:00:01"\nqos = 2\n',
         "QoS needs a VLAN", "set qos = 0"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:00:00:01"\ntrust = "yes"\n',
         "trust must be true or false, not a string \"yes\"", "no quotes"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:00:00:01"\nmax_tx_rate = 10\n'
         "min_tx_rate = 20\n", "min_tx_rate = 20 is above max_tx_rate = 10", "cannot exceed"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:00:00:01"\n'
         '[[nic]]\nmac = "52:54:00:00:00:01"\n', "[[nic]] 1 and [[nic]] 2 both have mac",
         "its own MAC"),
        ('name = "v"\nnic = "eth0"\n' + BOOT, "nic must be [[nic]] sections", "one [[nic]]"),
        ('name = "v"\n' + BOOT + '[[nic]]\nmac = "52:54:00:00:00:01"\nmtu = 9000\n',
         'unknown key "mtu"', "allowed here: mac, max_tx_rate"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_what_to_do(text: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_vm_spec(text.encode(), "s.toml")
    assert message in raised.value.message, raised.value.message
    assert hint in (raised.value.hint or ""), raised.value.hint


def test_too_many_nics_is_refused() -> None:
    nics = "".join(f'[[nic]]\nmac = "52:54:00:00:00:{n:02x}"\n' for n in range(17))
    with pytest.raises(ConfigError, match="17 \\[\\[nic\\]\\] sections; a VM may have at most 16"):
        parse_vm_spec(('name = "v"\n' + BOOT + nics).encode(), "s.toml")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file: it is a FIFO"):
        load_vm_spec(fifo)


def test_a_spec_file_over_64_kib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "spec.toml"
    big.write_bytes(b"#" * (64 << 10) + b"\n")
    with pytest.raises(ConfigError, match=r"larger than 64 KiB .* the most a VM spec may be"):
        load_vm_spec(big)


_TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_hostile_bytes_are_a_config_error_or_a_spec(raw: bytes) -> None:
    """Anything else escaping (TypeError, KeyError, RecursionError...) fails the test."""
    with contextlib.suppress(ConfigError):
        assert isinstance(parse_vm_spec(raw, "fuzz.toml"), VmSpec)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "vcpus", "memory_mib", "boot", "numa", "nic", "x"]),
        _TOML_VALUES,
        max_size=6,
    )
)
def test_hostile_structures_are_a_config_error_or_a_spec(data: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(parse_vm_spec(_toml(data).encode(), "fuzz.toml"), VmSpec)


def _toml(data: dict[str, object]) -> str:
    """``data`` as TOML: each key an inline value (None dropped, as TOML has no null)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in data.items() if v is not None)


def _key(key: str) -> str:
    return '"' + key.encode("unicode_escape").decode().replace('"', '\\"') + '"'


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if not isinstance(value, float) or value == value else "nan"
    if isinstance(value, str):
        return _key(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    return '""'

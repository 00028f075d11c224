"""Domain XML builders and the hostdev parser: shape, escaping, hostile input."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtagent.errors import InvalidInput
from qtagent.model.types import MacAddress, PciAddress
from qtagent.virt.domain_xml import (
    AttachedVf,
    DomainSpec,
    VfInterface,
    attached_vfs,
    domain_xml,
    hostdev_addresses,
    hostdev_xml,
    vf_interface_xml,
)

VF0 = PciAddress.parse("0000:41:10.0")
MAC = MacAddress.parse("52:54:00:aa:bb:01")

# What libvirt 11 prints for a running domain holding both forms (trimmed; the
# interface is verbatim from the lab guest: libvirt omits managed='no').
LIVE_XML = """<?xml version='1.0' encoding='UTF-8'?>
<domain type='qemu' id='3'>
  <name>qt-lab-a</name>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='hostdev'>
      <mac address='52:54:00:aa:bb:01'/>
      <driver name='vfio'/>
      <source>
        <address type='pci' domain='0x0000' bus='0x41' slot='0x10' function='0x0'/>
      </source>
      <vlan>
        <tag id='100'/>
      </vlan>
      <alias name='hostdev0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <driver name='vfio'/>
      <source>
        <address domain='0x0000' bus='0x81' slot='0x10' function='0x2'/>
      </source>
      <alias name='ua-vf1'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </hostdev>
    <hostdev mode='subsystem' type='usb' managed='no'>
      <source><vendor id='0x1234'/><product id='0xbeef'/></source>
    </hostdev>
    <interface type='network'>
      <mac address='52:54:00:00:00:09'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>
"""


# ------------------------------------------------------------------ builders


def test_tiny_domain_has_acpi_no_disk_and_64_mib() -> None:
    root = ET.fromstring(domain_xml(DomainSpec("qt-lab-a")))
    assert root.tag == "domain"
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "qt-lab-a"
    assert (root.findtext("memory"), root.find("memory").get("unit")) == ("64", "MiB")  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "1"
    assert root.find("features/acpi") is not None  # without it: no PCI hot-plug
    assert root.find("devices/disk") is None
    assert root.find("os/kernel") is None
    assert root.findtext("os/type") == "hvm"


def test_domain_with_kernel_uuid_and_console_log() -> None:
    vm_uuid = uuid.UUID("6f1c2f36-55d6-4f5c-9a0b-2b1f2c3d4e5f")
    spec = DomainSpec(
        "vm",
        memory_mib=256,
        vcpus=2,
        uuid=vm_uuid,
        virt_type="kvm",
        machine="q35",
        kernel=PurePosixPath("/boot/vmlinuz"),
        initrd=PurePosixPath("/tmp/initrd.img"),
        cmdline="console=ttyS0 quiet",
        serial_log=PurePosixPath("/tmp/vm.log"),
    )
    root = ET.fromstring(domain_xml(spec))
    assert root.get("type") == "kvm"
    assert root.findtext("uuid") == str(vm_uuid)
    assert root.find("os/type").get("machine") == "q35"  # type: ignore[union-attr]
    assert [root.findtext(f"os/{t}") for t in ("kernel", "initrd", "cmdline")] == [
        "/boot/vmlinuz",
        "/tmp/initrd.img",
        "console=ttyS0 quiet",
    ]
    assert root.find("devices/serial/source").get("path") == "/tmp/vm.log"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "a/b"},
        {"name": ""},
        {"name": "a\x00"},
        {"name": "vm", "memory_mib": 0},
        {"name": "vm", "vcpus": 0},
        {"name": "vm", "initrd": PurePosixPath("/i")},
        {"name": "vm", "kernel": PurePosixPath("/k"), "cmdline": "a\nb"},
    ],
)
def test_bad_domain_specs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        DomainSpec(**kwargs)  # type: ignore[arg-type]


def test_vf_interface_xml_matches_libvirts_form() -> None:
    xml = vf_interface_xml(VfInterface(VF0, MAC, vlan=100, alias="ua-vf0"))
    root = ET.fromstring(xml)
    assert (root.tag, root.get("type"), root.get("managed")) == ("interface", "hostdev", "no")
    assert root.find("mac").get("address") == "52:54:00:aa:bb:01"  # type: ignore[union-attr]
    assert root.find("source/address").attrib == {  # type: ignore[union-attr]
        "type": "pci",
        "domain": "0x0000",
        "bus": "0x41",
        "slot": "0x10",
        "function": "0x0",
    }
    assert root.find("vlan/tag").get("id") == "100"  # type: ignore[union-attr]
    assert root.find("alias").get("name") == "ua-vf0"  # type: ignore[union-attr]


def test_managed_yes_and_no_vlan() -> None:
    root = ET.fromstring(vf_interface_xml(VfInterface(VF0, MAC, managed=True)))
    assert root.get("managed") == "yes"
    assert root.find("vlan") is None


def test_plain_hostdev_xml() -> None:
    root = ET.fromstring(hostdev_xml(VF0, managed=True))
    assert (root.tag, root.get("mode"), root.get("type"), root.get("managed")) == (
        "hostdev",
        "subsystem",
        "pci",
        "yes",
    )
    assert ET.fromstring(hostdev_xml(VF0)).get("managed") == "no"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mac": MacAddress.parse("01:00:5e:00:00:01")},
        {"mac": MacAddress.parse("00:00:00:00:00:00")},
        {"vlan": 4095},
        {"vlan": -1},
        {"alias": "hostdev0"},  # user aliases must start with ua-
        {"alias": "ua-x'/><evil/>"},
    ],
)
def test_bad_vf_interfaces_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"address": VF0, "mac": MAC} | kwargs
    with pytest.raises(InvalidInput):
        VfInterface(**args)  # type: ignore[arg-type]


# -------------------------------------------------------------------- parser


def test_parser_reads_both_forms_and_skips_non_pci_devices() -> None:
    assert attached_vfs(LIVE_XML) == (
        AttachedVf(VF0, "interface", managed=False, mac=MAC, vlan=100, alias="hostdev0"),
        AttachedVf(PciAddress.parse("0000:81:10.2"), "hostdev", managed=True, alias="ua-vf1"),
    )
    assert hostdev_addresses(LIVE_XML) == (VF0, PciAddress.parse("0000:81:10.2"))


def test_parser_ignores_the_guest_side_address() -> None:
    """The trailing <address> is where the guest sees the device, not the VF."""
    assert PciAddress.parse("0000:00:02.0") not in hostdev_addresses(LIVE_XML)


def test_decimal_addresses_are_read_too() -> None:
    xml = (
        "<domain><devices><hostdev type='pci'><source><address domain='0' bus='65' "
        "slot='16' function='0'/></source></hostdev></devices></domain>"
    )
    assert hostdev_addresses(xml) == (VF0,)


def test_domain_without_devices_has_none() -> None:
    assert attached_vfs("<domain type='qemu'><name>x</name></domain>") == ()


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "<domain>",
        "not xml",
        "<interface type='hostdev'/>",  # not a domain
        "<domain><devices><hostdev type='pci'><source/></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='0' bus='0x100' "
        "slot='0' function='0'/></source></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='0' bus='1' "
        "slot='0x20' function='0'/></source></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='0' bus='1' "
        "slot='1' function='8'/></source></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='-1' bus='1' "
        "slot='1' function='0'/></source></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='0x' bus='1' "
        "slot='1' function='0'/></source></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='1_0' bus='1' "
        "slot='1' function='0'/></source></hostdev></devices></domain>",
        "<domain><devices><hostdev type='pci'><source><address domain='0' bus='010' "
        "slot='1' function='0'/></source></hostdev></devices></domain>",  # octal to libvirt
        "<domain><devices><hostdev type='pci'><source><address bus='1' "
        "slot='1' function='0'/></source></hostdev></devices></domain>",
        "<domain><devices><interface type='hostdev'><mac address='zz'/><source><address "
        "domain='0' bus='1' slot='1' function='0'/></source></interface></devices></domain>",
        "<domain><devices><interface type='hostdev'><source><address type='usb' "
        "bus='1' port='1'/></source></interface></devices></domain>",
        "<domain><devices><interface type='hostdev'><source><address domain='0' bus='1' "
        "slot='1' function='0'/></source><vlan><tag id='5000'/></vlan></interface>"
        "</devices></domain>",
    ],
)
def test_malformed_or_out_of_range_xml_is_invalid_input(xml: str) -> None:
    with pytest.raises(InvalidInput):
        attached_vfs(xml)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domain><name>&lol3;</name></domain>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<domain><name>&xxe;</name></domain>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE domain SYSTEM "http://example.invalid/domain.dtd">
<domain/>"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]>
<domain/>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY])
def test_dtds_and_entities_are_refused(xml: str) -> None:
    with pytest.raises(InvalidInput, match=r"DTD|entity"):
        attached_vfs(xml)


def test_oversized_xml_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidInput, match="larger"):
        attached_vfs("<domain>" + " " * (9 << 20) + "</domain>")


def test_bytes_are_refused() -> None:
    with pytest.raises(InvalidInput):
        attached_vfs(b"<domain/>")  # type: ignore[arg-type]


# ----------------------------------------------------------------- fuzzing

addresses = st.builds(
    PciAddress,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.integers(0, 0x1F),
    st.integers(0, 7),
)
unicast_macs = st.binary(min_size=6, max_size=6).map(
    lambda b: MacAddress(bytes([b[0] & 0xFE | 0x02]) + b[1:])
)
vf_interfaces = st.builds(
    VfInterface,
    address=addresses,
    mac=unicast_macs,
    vlan=st.integers(0, 4094),
    managed=st.booleans(),
    alias=st.none() | st.from_regex(r"ua-[A-Za-z0-9_-]{1,20}", fullmatch=True),
)
vm_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x7f"),
    min_size=1,
    max_size=40,
).filter(lambda s: s == s.strip() and not any(0x7F <= ord(c) < 0xA0 for c in s))


@settings(max_examples=200, deadline=None)
@given(st.lists(vf_interfaces, max_size=5), st.lists(addresses, max_size=3), vm_names)
def test_built_devices_parse_back(
    interfaces: list[VfInterface], plain: list[PciAddress], name: str
) -> None:
    domain = ET.fromstring(domain_xml(DomainSpec(name)))
    devices = domain.find("devices")
    assert devices is not None
    for vf in interfaces:
        devices.append(ET.fromstring(vf_interface_xml(vf)))
    for address in plain:
        devices.append(ET.fromstring(hostdev_xml(address)))
    text = ET.tostring(domain, encoding="unicode")
    assert ET.fromstring(text).findtext("name") == name  # escaping kept the name intact
    got = attached_vfs(text)
    assert got == tuple(
        AttachedVf(vf.address, "interface", vf.managed, vf.mac, vf.vlan, vf.alias)
        for vf in interfaces
    ) + tuple(AttachedVf(a, "hostdev", managed=False) for a in plain)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_parses_or_is_invalid_input(text: str) -> None:
    try:
        result = attached_vfs(text)
    except InvalidInput:
        return
    assert isinstance(result, tuple)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_live_xml_parses_or_is_invalid_input(data: st.DataObject) -> None:
    text = LIVE_XML
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text) - 1))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(st.sampled_from(["", "<", ">", "'", "&", "0x", "<!DOCTYPE x>", "&a;"]))
        text = text[:at] + insert + text[at + cut :]
    try:
        result = attached_vfs(text)
    except InvalidInput:
        return
    assert all(isinstance(vf, AttachedVf) for vf in result)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12) | st.integers(-5, 0x1FFFF).map(hex), min_size=4, max_size=4))
def test_any_address_attribute_values_parse_or_are_invalid_input(values: list[str]) -> None:
    source = ET.Element("source")
    ET.SubElement(
        source, "address", dict(zip(["domain", "bus", "slot", "function"], values, strict=True))
    )
    hostdev = ET.Element("hostdev", type="pci")
    hostdev.append(source)
    xml = f"<domain><devices>{ET.tostring(hostdev, encoding='unicode')}</devices></domain>"
    try:
        (address,) = hostdev_addresses(xml)
    except InvalidInput:
        return
    assert str(address) == f"{int(values[0], 0):04x}:{int(values[1], 0):02x}:" + (
        f"{int(values[2], 0):02x}.{int(values[3], 0)}"
    )

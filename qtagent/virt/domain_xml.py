"""libvirt domain XML: builders for a tiny VM and a VF hot-plug device, and a
parser for the VFs a domain holds (pure: text in, values out).

The builders take checked values (:class:`PciAddress`, :class:`MacAddress`)
and let ElementTree do all escaping, so no input can change the XML's shape.
The parser faces libvirt's text, or anyone's: it refuses a DTD and entity
declarations (no entity expansion, no external fetch) and oversized input
before ElementTree sees it, and every failure is an :class:`InvalidInput`.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final, Literal, NoReturn
from xml.parsers import expat

from qtagent.errors import InvalidInput
from qtagent.model.types import MacAddress, PciAddress, check_vlan, check_vm_name

MAX_XML_CHARS: Final = 8 << 20  # a domain with hundreds of devices is well below 1 MiB
_USER_ALIAS_RE: Final = re.compile(r"^ua-[A-Za-z0-9_-]{1,60}$")
# Hex as libvirt writes it, or plain decimal; a leading zero is refused (C's strtol
# in libvirt would read it as octal).
_NUMBER_RE: Final = re.compile(r"^(?:0[xX](?P<hex>[0-9a-fA-F]{1,8})|(?P<dec>0|[1-9][0-9]{0,9}))$")
_PCI_LIMITS: Final = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "function": 0x7}


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A small VM without disk: enough to receive hot-plugged VFs.

    ``memory_mib`` in MiB. ``virt_type`` is libvirt's domain type: ``kvm`` with
    hardware virtualisation, ``qemu`` for software emulation (TCG), ``test`` for
    libvirt's in-process test driver (test:///...). ACPI is always
    on: without it QEMU's PCI bus refuses hot-plug. ``kernel``/``initrd``/
    ``cmdline`` boot a kernel directly (paths on the host running QEMU);
    ``serial_log`` sends the guest's serial console to that file.
    ``firmware_rom`` replaces QEMU's default BIOS with that ROM (a path on the
    host running QEMU), e.g. qboot for a fast direct kernel boot.
    """

    name: str
    memory_mib: int = 64
    vcpus: int = 1
    uuid: uuid.UUID | None = None
    virt_type: Literal["kvm", "qemu", "test"] = "qemu"
    arch: str = "x86_64"
    machine: str | None = None
    kernel: PurePosixPath | None = None
    initrd: PurePosixPath | None = None
    cmdline: str | None = None
    serial_log: PurePosixPath | None = None
    firmware_rom: PurePosixPath | None = None

    def __post_init__(self) -> None:
        check_vm_name(self.name)
        if not 16 <= self.memory_mib <= 1 << 22:
            raise InvalidInput(f"VM memory {self.memory_mib} MiB is out of range")
        if not 1 <= self.vcpus <= 1024:
            raise InvalidInput(f"{self.vcpus} vCPUs is out of range")
        if (self.initrd or self.cmdline) and not self.kernel:
            raise InvalidInput("an initrd or kernel command line needs a kernel")
        for what, text in (
            ("arch", self.arch),
            ("machine", self.machine),
            ("kernel", self.kernel),
            ("initrd", self.initrd),
            ("cmdline", self.cmdline),
            ("serial log", self.serial_log),
            ("firmware ROM", self.firmware_rom),
        ):
            if text is not None:
                _check_text(what, str(text))


@dataclass(frozen=True, slots=True)
class VfInterface:
    """A VF handed to a VM as ``<interface type='hostdev'>``.

    libvirt sets ``mac`` and ``vlan`` on the VF through its PF before QEMU
    takes the device (``vlan`` 0: untagged; libvirt's XML has no 802.1p QoS),
    keeps the VF's previous MAC/VLAN in its own state directory and puts them
    back when the domain lets the VF go - with ``managed='no'`` too (measured in
    the lab). ADR 0002 therefore hands VFs over as a plain :func:`hostdev_xml`
    and sets the knobs itself; this form stays for operators who want it.
    ``managed`` False (``managed='no'``): the VF must already be bound to
    vfio-pci, and libvirt leaves the binding alone; True: libvirt unbinds it
    from its host driver and binds it back after. ``alias`` is a user alias
    (``ua-...``) to find the device again.
    """

    address: PciAddress
    mac: MacAddress
    vlan: int = 0
    managed: bool = False
    alias: str | None = None

    def __post_init__(self) -> None:
        check_vlan(self.vlan)
        _check_alias(self.alias)
        if self.mac.is_zero or self.mac.is_multicast:
            raise InvalidInput(f"{self.mac} cannot be a VM's MAC", hint="give a unicast MAC")


@dataclass(frozen=True, slots=True)
class AttachedVf:
    """A PCI device a domain's XML shows passed through, as either form.

    ``kind`` says which element it came from; ``mac`` and ``vlan`` only exist
    for ``interface`` (``vlan`` 0: none).
    """

    address: PciAddress
    kind: Literal["interface", "hostdev"]
    managed: bool
    mac: MacAddress | None = None
    vlan: int = 0
    alias: str | None = None


# ------------------------------------------------------------------ builders


def domain_xml(spec: DomainSpec) -> str:
    """The ``<domain>`` to define for ``spec``."""
    root = ET.Element("domain", type=spec.virt_type)
    ET.SubElement(root, "name").text = spec.name
    if spec.uuid is not None:
        ET.SubElement(root, "uuid").text = str(spec.uuid)
    ET.SubElement(root, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(root, "vcpu").text = str(spec.vcpus)
    os_el = ET.SubElement(root, "os")
    os_type = ET.SubElement(os_el, "type", arch=spec.arch)
    if spec.machine:
        os_type.set("machine", spec.machine)
    os_type.text = "hvm"
    if spec.firmware_rom is not None:
        loader = ET.SubElement(os_el, "loader", type="rom", readonly="yes")
        loader.text = str(spec.firmware_rom)
    for tag, value in (("kernel", spec.kernel), ("initrd", spec.initrd)):
        if value is not None:
            ET.SubElement(os_el, tag).text = str(value)
    if spec.cmdline is not None:
        ET.SubElement(os_el, "cmdline").text = spec.cmdline
    ET.SubElement(ET.SubElement(root, "features"), "acpi")
    for event, action in (("poweroff", "destroy"), ("reboot", "restart"), ("crash", "destroy")):
        ET.SubElement(root, f"on_{event}").text = action
    devices = ET.SubElement(root, "devices")
    if spec.serial_log is not None:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=str(spec.serial_log))
        ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")
    return _text(root)


def vf_interface_xml(vf: VfInterface) -> str:
    """``<interface type='hostdev'>`` for attach-device / detach-device."""
    root = ET.Element("interface", type="hostdev", managed="yes" if vf.managed else "no")
    ET.SubElement(root, "mac", address=str(vf.mac))
    ET.SubElement(ET.SubElement(root, "source"), "address", _pci_attrs(vf.address))
    if vf.vlan:
        ET.SubElement(ET.SubElement(root, "vlan"), "tag", id=str(vf.vlan))
    if vf.alias is not None:
        ET.SubElement(root, "alias", name=vf.alias)
    return _text(root)


def hostdev_xml(address: PciAddress, *, managed: bool = False, alias: str | None = None) -> str:
    """A plain PCI ``<hostdev>``: libvirt leaves the VF's MAC and VLAN alone.

    The form of ADR 0002: qtagent binds the VF to vfio-pci and sets its knobs
    over netlink, then attaches it with ``managed=False``.
    """
    _check_alias(alias)
    root = ET.Element("hostdev", mode="subsystem", type="pci", managed="yes" if managed else "no")
    ET.SubElement(ET.SubElement(root, "source"), "address", _pci_attrs(address))
    if alias is not None:
        ET.SubElement(root, "alias", name=alias)
    return _text(root)


# -------------------------------------------------------------------- parser


def attached_vfs(xml: str) -> tuple[AttachedVf, ...]:
    """Every PCI device passed through in a domain's XML, in document order.

    Reads ``<hostdev type='pci'>`` and ``<interface type='hostdev'>`` under
    ``<devices>``; other hostdevs (USB, SCSI, mdev) are not PCI functions and
    are skipped.
    """
    root = safe_parse(xml)
    if root.tag != "domain":
        raise InvalidInput(f"expected a <domain> document, got <{_short(root.tag)}>")
    found: list[AttachedVf] = []
    for devices in root.findall("devices"):
        for dev in devices:
            if dev.tag == "hostdev" and dev.get("type") == "pci":
                kind: Literal["interface", "hostdev"] = "hostdev"
            elif dev.tag == "interface" and dev.get("type") == "hostdev":
                kind = "interface"
            else:
                continue
            found.append(_attached(dev, kind))
    return tuple(found)


def hostdev_addresses(xml: str) -> tuple[PciAddress, ...]:
    """The PCI addresses of :func:`attached_vfs`."""
    return tuple(vf.address for vf in attached_vfs(xml))


def safe_parse(xml: str) -> ET.Element:
    """Parse ``xml`` refusing DTDs and entity declarations; InvalidInput on any failure."""
    if not isinstance(xml, str):
        raise InvalidInput(f"domain XML must be text, not {type(xml).__name__}")
    if len(xml) > MAX_XML_CHARS:
        raise InvalidInput(f"domain XML is larger than {MAX_XML_CHARS} characters")
    guard = expat.ParserCreate()
    guard.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    guard.StartDoctypeDeclHandler = _refuse_dtd
    guard.EntityDeclHandler = _refuse_entity
    guard.ExternalEntityRefHandler = _refuse_entity
    try:
        guard.Parse(xml, True)
        return ET.fromstring(xml)  # noqa: S314 - the expat pass above refused DTDs and entities
    except (expat.ExpatError, ET.ParseError, ValueError) as e:
        raise InvalidInput(f"domain XML is not well-formed: {e}") from None


# ------------------------------------------------------------------- helpers


def _attached(dev: ET.Element, kind: Literal["interface", "hostdev"]) -> AttachedVf:
    address_el = dev.find("source/address")
    if address_el is None:
        raise InvalidInput(f"<{kind}> without <source><address>")
    if address_el.get("type", "pci") != "pci":
        raise InvalidInput(f"<{kind}> source address is not a PCI address")
    mac: MacAddress | None = None
    vlan = 0
    if kind == "interface":
        mac_el = dev.find("mac")
        if mac_el is not None and mac_el.get("address") is not None:
            mac = MacAddress.parse(mac_el.get("address", ""))
        tag = dev.find("vlan/tag")
        if tag is not None:
            vlan = _number(tag.get("id"), "VLAN tag id", 4094)
            check_vlan(vlan)
    alias_el = dev.find("alias")
    return AttachedVf(
        address=_pci_address(address_el),
        kind=kind,
        managed=dev.get("managed", "no") == "yes",
        mac=mac,
        vlan=vlan,
        alias=alias_el.get("name") if alias_el is not None else None,
    )


def _pci_address(el: ET.Element) -> PciAddress:
    parts = {key: _number(el.get(key), f"PCI {key}", limit) for key, limit in _PCI_LIMITS.items()}
    return PciAddress(parts["domain"], parts["bus"], parts["slot"], parts["function"])


def _pci_attrs(address: PciAddress) -> dict[str, str]:
    return {
        "type": "pci",
        "domain": f"0x{address.domain:04x}",
        "bus": f"0x{address.bus:02x}",
        "slot": f"0x{address.device:02x}",
        "function": f"0x{address.function:x}",
    }


def _number(text: str | None, what: str, limit: int) -> int:
    match = _NUMBER_RE.match(text.strip()) if text is not None else None
    if match is None:
        raise InvalidInput(f"{what} {text!r} is not a number")
    value = int(match["hex"], 16) if match["hex"] is not None else int(match["dec"])
    if value > limit:
        raise InvalidInput(f"{what} {text!r} is above {limit:#x}")
    return value


def _check_alias(alias: str | None) -> None:
    if alias is not None and _USER_ALIAS_RE.match(alias) is None:
        raise InvalidInput(
            f"{alias!r} is not a libvirt user alias", hint="use ua- and letters, digits, - or _"
        )


def _check_text(what: str, text: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or len(text) > 4096:
        raise InvalidInput(f"{what} {text[:80]!r} has control characters or is too long")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} {text[:80]!r} is not valid Unicode text") from None


def _refuse_dtd(*_: object) -> NoReturn:
    raise ValueError("a DTD is not allowed in domain XML")


def _refuse_entity(*_: object) -> NoReturn:
    raise ValueError("entity declarations are not allowed in domain XML")


def _short(tag: str) -> str:
    return tag[:40]


def _text(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")

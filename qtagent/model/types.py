"""Small value types with strict parsing: PCI addresses, MAC addresses, VF identities.

Parsers here face operator input and kernel text alike; each raises
:class:`qtagent.errors.InvalidInput` with a message that names the bad value and
the expected form.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from qtagent.errors import InvalidInput

_PCI_RE: Final = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$"
)
_MAC_RE: Final = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")

VLAN_MAX: Final = 4094
QOS_MAX: Final = 7
# SR-IOV's TotalVFs is a 16-bit field, so a VF index is below 65536 (the kernel's
# own limit is lower still); IFLA_VF_* carry it as a u32.
VF_INDEX_MAX: Final = 0xFFFF
VF_COUNT_MAX: Final = VF_INDEX_MAX + 1  # the most sriov_totalvfs or sriov_numvfs can say
# ifi_index is a C int: the kernel numbers network interfaces 1..INT_MAX.
IFINDEX_MAX: Final = 0x7FFFFFFF


@dataclass(frozen=True, order=True, slots=True)
class PciAddress:
    """A PCI function address, ``DDDD:BB:DD.F``."""

    domain: int
    bus: int
    device: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        match = _PCI_RE.match(text.strip())
        if match is None:
            raise InvalidInput(
                f"{text!r} is not a PCI address",
                hint="write it as DDDD:BB:DD.F, for example 0000:41:00.0",
            )
        device = int(match["dev"], 16)
        if device > 0x1F:
            raise InvalidInput(f"{text!r}: PCI device number {device:#x} is above 0x1f")
        return cls(int(match["domain"] or "0", 16), int(match["bus"], 16), device, int(match["fn"]))

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function}"


@dataclass(frozen=True, order=True, slots=True)
class MacAddress:
    """An Ethernet MAC address, kept as six bytes."""

    octets: bytes

    @classmethod
    def parse(cls, text: str) -> MacAddress:
        if _MAC_RE.match(text.strip()) is None:
            raise InvalidInput(
                f"{text!r} is not a MAC address", hint="write six hex pairs, e.g. 52:54:00:12:34:56"
            )
        return cls(bytes.fromhex(text.strip().replace(":", "")))

    @classmethod
    def random_local_unicast(cls) -> MacAddress:
        """A random, locally administered, unicast MAC (the x2/x6/xA/xE first octet)."""
        raw = bytearray(secrets.token_bytes(6))
        raw[0] = (raw[0] & 0xFC) | 0x02
        return cls(bytes(raw))

    @property
    def is_zero(self) -> bool:
        return self.octets == bytes(6)

    @property
    def is_multicast(self) -> bool:
        return bool(self.octets[0] & 0x01)

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.octets)


ZERO_MAC: Final = MacAddress(bytes(6))


def check_vlan(vlan: int, qos: int = 0) -> None:
    """Refuse a VLAN id outside 0..4094 (0 = untagged) or a QoS outside 0..7."""
    if not 0 <= vlan <= VLAN_MAX:
        raise InvalidInput(f"VLAN {vlan} is out of range", hint=f"use 0 (none) to {VLAN_MAX}")
    if not 0 <= qos <= QOS_MAX:
        raise InvalidInput(f"QoS {qos} is out of range", hint=f"use 0 to {QOS_MAX}")
    if qos and not vlan:
        raise InvalidInput("QoS needs a VLAN", hint="give --vlan together with --qos")


def check_vf_index(index: int) -> None:
    """Refuse a VF index no SR-IOV device can have (outside 0..65535)."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise InvalidInput(f"VF index {index!r} is not an integer", hint="give a whole number")
    if not 0 <= index <= VF_INDEX_MAX:
        raise InvalidInput(f"VF index {index} is out of range", hint=f"use 0 to {VF_INDEX_MAX}")


def check_ifindex(ifindex: int) -> None:
    """Refuse an interface index the kernel never gives (outside 1..2^31-1)."""
    if isinstance(ifindex, bool) or not isinstance(ifindex, int):
        raise InvalidInput(f"interface index {ifindex!r} is not an integer")
    if not 1 <= ifindex <= IFINDEX_MAX:
        raise InvalidInput(
            f"interface index {ifindex} is out of range (1 to {IFINDEX_MAX})",
            hint="read the PF's ifindex again (cat /sys/class/net/$pf/ifindex); "
            "the kernel never gives this one",
        )


@dataclass(frozen=True, order=True, slots=True)
class VfId:
    """A VF's identity: its PF (the PF's device name on its bus) and its index.

    Never a netdev name: names change, this does not (FIELD-CASES C10).
    """

    pf: str
    index: int

    def __str__(self) -> str:
        return f"{self.pf}/vf{self.index}"


VM_NAME_MAX: Final = 255  # bytes of UTF-8; libvirt keeps one file per domain name


def check_vm_name(name: str) -> None:
    """Refuse a VM (libvirt domain) name libvirt would refuse, and control characters."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise InvalidInput(
            f"{name!r} is not a VM name", hint="give a non-empty name without outer spaces"
        )
    hint = "give the VM's name as `virsh list --all` shows it"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"VM name {name!r} is not valid Unicode text", hint=hint) from None
    if len(encoded) > VM_NAME_MAX:
        raise InvalidInput(f"VM name is longer than {VM_NAME_MAX} bytes", hint=hint)
    if "/" in name or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise InvalidInput(f"VM name {name!r} contains '/' or a control character", hint=hint)

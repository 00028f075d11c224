"""An in-memory libvirt that behaves like libvirtd + QEMU did in the lab guest.

Implements :class:`qtagent.virt.api.VirtBackend`. Measured behaviour it keeps
(tests/lab/test_libvirt_lab.py proves each on the real stack):

- a PCI device held by one running domain is refused to another: error 55,
  "PCI device X is in use by driver QEMU, domain a" (a VirtConflict);
- ``managed='no'`` needs the device on vfio-pci already (error 55, "must be
  manually detached from the host"); ``managed='yes'`` moves it there;
- detach from a domain whose guest does not answer the ACPI eject (paused or
  OS-less: ``answers_eject`` False) reports success but the device stays; a
  second detach fails with error 1, "already in the process of unplug";
- destroy releases every device (and managed ones go back to their driver).

Two behaviours can be switched on per domain for failure tests: a guest that
never answers the eject (``answers_eject`` False, the default, as a paused or
OS-less guest) and a hot-plug QEMU accepts that never shows in the live XML
(``drops_hotplug``). ``guest_answers_eject`` completes pending unplugs late, and
``refuse_next_attach`` makes the next hot-plug fail with a libvirt error.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from qtagent.model.types import PciAddress
from qtagent.virt.api import DomainInfo, DomainState
from qtagent.virt.domain_xml import (
    AttachedVf,
    VfInterface,
    attached_vfs,
    hostdev_xml,
    safe_parse,
    vf_interface_xml,
)
from qtagent.virt.errors import LibvirtFailure, from_libvirt

VFIO = "vfio-pci"


@dataclass
class FakeDomain:
    name: str
    uuid: uuid.UUID
    state: DomainState = DomainState.SHUTOFF
    devices: list[AttachedVf] = field(default_factory=list)
    unplugging: set[PciAddress] = field(default_factory=set)
    answers_eject: bool = False  # a guest OS that completes hot-unplug
    drops_hotplug: bool = False  # attach succeeds, but the device never shows in the XML


class FakeVirt:
    """Domains and the host drivers of PCI functions (``drivers``: address -> driver).

    ``drivers`` is used as given, not copied: pass a live view of a fake sysfs tree
    (``tests.fakes.pci_bus.DriverView``) so that libvirt and sysfs agree. ``calls``
    lists every request made to libvirt, reads included, in order.
    """

    def __init__(self, drivers: MutableMapping[PciAddress, str | None] | None = None) -> None:
        self.domains: dict[str, FakeDomain] = {}
        self.drivers: MutableMapping[PciAddress, str | None] = (
            drivers if drivers is not None else {}
        )
        self._managed_from: dict[PciAddress, str | None] = {}
        self.calls: list[str] = []
        self.refusals: list[LibvirtFailure] = []

    def refuse_next_attach(self, code: int, message: str) -> None:
        """The next attach fails with libvirt error ``code`` (a QEMU or libvirt refusal
        the fake does not model, e.g. the domain stopped just before)."""
        self.refusals.append(_fail("attach-device", code, message))

    def define_and_start(self, xml: str, *, paused: bool = True) -> DomainInfo:
        root = safe_parse(xml)
        name = root.findtext("name") or ""
        self.calls.append(f"define+start {name}")
        if name in self.domains:
            raise _fail("define", 9, f"domain '{name}' already exists")
        text = root.findtext("uuid")
        dom = FakeDomain(name, uuid.UUID(text) if text else uuid.uuid4())
        dom.state = DomainState.PAUSED if paused else DomainState.RUNNING
        self.domains[name] = dom
        return _info(dom)

    def list_domains(self) -> tuple[DomainInfo, ...]:
        self.calls.append("list")
        return tuple(_info(d) for _, d in sorted(self.domains.items()))

    def domain_exists(self, name: str) -> bool:
        self.calls.append(f"exists {name}")
        return name in self.domains

    def domain_state(self, name: str) -> DomainState | None:
        self.calls.append(f"state {name}")
        dom = self.domains.get(name)
        return dom.state if dom is not None else None

    def domain_xml(self, name: str) -> str:
        self.calls.append(f"xml {name}")
        dom = self._get(name)
        devices = "".join(
            vf_interface_xml(VfInterface(d.address, d.mac, d.vlan, d.managed))
            if d.kind == "interface" and d.mac is not None
            else hostdev_xml(d.address, managed=d.managed)
            for d in dom.devices
        )
        return f"<domain type='qemu'><name>{name}</name><devices>{devices}</devices></domain>"

    def attach_hostdev(self, vm: str, xml: str, *, live: bool = True, config: bool = False) -> None:
        dom = self._get(vm)
        self.calls.append(f"attach {vm}")
        if self.refusals:
            raise self.refusals.pop(0)
        if dom.state is DomainState.SHUTOFF:
            raise _fail("attach-device", 55, "domain is not running")
        for device in attached_vfs(f"<domain><devices>{xml}</devices></domain>"):
            address = device.address
            for other in self.domains.values():
                if any(d.address == address for d in other.devices):
                    raise _fail(
                        "attach-device",
                        55,
                        f"Requested operation is not valid: PCI device {address} is in use "
                        f"by driver QEMU, domain {other.name}",
                    )
            if not device.managed and self.drivers.get(address) != VFIO:
                raise _fail(
                    "attach-device",
                    55,
                    f"Requested operation is not valid: Unmanaged PCI device {address} "
                    "must be manually detached from the host",
                )
            if device.managed:
                self._managed_from[address] = self.drivers.get(address)
                self.drivers[address] = VFIO
            if not dom.drops_hotplug:
                dom.devices.append(device)

    def detach_hostdev(self, vm: str, xml: str, *, live: bool = True, config: bool = False) -> None:
        dom = self._get(vm)
        self.calls.append(f"detach {vm}")
        for device in attached_vfs(f"<domain><devices>{xml}</devices></domain>"):
            held = [d for d in dom.devices if d.address == device.address]
            if not held:
                raise _fail("detach-device", 99, f"device not found: {device.address}")
            if device.address in dom.unplugging:
                raise _fail(
                    "detach-device",
                    1,
                    "internal error: unable to execute QEMU command 'device_del': "
                    "Device hostdev0 is already in the process of unplug",
                )
            if dom.answers_eject and dom.state is DomainState.RUNNING:
                self._release(dom, held[0])
            else:
                dom.unplugging.add(device.address)

    def guest_answers_eject(self, vm: str) -> None:
        """The guest finally answers the eject: every device it was asked to let go of
        leaves the domain."""
        dom = self._get(vm)
        for device in [d for d in dom.devices if d.address in dom.unplugging]:
            self._release(dom, device)

    def attached_vfs(self, vm: str) -> tuple[AttachedVf, ...]:
        return attached_vfs(self.domain_xml(vm))

    def hostdev_addresses(self, vm: str) -> tuple[PciAddress, ...]:
        return tuple(d.address for d in self.attached_vfs(vm))

    def destroy(self, vm: str) -> None:
        dom = self._get(vm)
        self.calls.append(f"destroy {vm}")
        if dom.state is DomainState.SHUTOFF:
            raise _fail("destroy", 55, "Requested operation is not valid: domain is not running")
        for device in list(dom.devices):
            self._release(dom, device)
        dom.state = DomainState.SHUTOFF

    def undefine(self, vm: str) -> None:
        self._get(vm)
        self.calls.append(f"undefine {vm}")
        del self.domains[vm]

    def close(self) -> None:
        pass

    def _release(self, dom: FakeDomain, device: AttachedVf) -> None:
        dom.devices.remove(device)
        dom.unplugging.discard(device.address)
        if device.managed:
            self.drivers[device.address] = self._managed_from.pop(device.address, None)

    def _get(self, name: str) -> FakeDomain:
        try:
            return self.domains[name]
        except KeyError:
            raise _fail("domstate", 42, "Domain not found") from None


def _fail(command: str, code: int, message: str) -> LibvirtFailure:
    return from_libvirt(f"virsh {command}", code, f"VIR_ERR_{code}", message)


def _info(dom: FakeDomain) -> DomainInfo:
    return DomainInfo(dom.name, dom.uuid, dom.state, persistent=True)

"""The narrow, typed interface qtagent uses for libvirt.

Implemented by :class:`qtagent.virt.libvirt_backend.LibvirtBackend` (the only
module importing the libvirt binding) and by the in-memory fake in
``tests/fakes/virt.py``. Failures are :class:`qtagent.virt.errors.LibvirtFailure`
subclasses: NotFound for an unknown domain, Conflict for a device another
domain holds, each keeping libvirt's error code.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Protocol

from qtagent.model.types import PciAddress
from qtagent.virt.domain_xml import AttachedVf


class DomainState(enum.StrEnum):
    """virDomainState, reduced to what qtagent acts on."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    OTHER = "other"  # blocked, shutting down, crashed, suspended, no state


@dataclass(frozen=True, slots=True)
class DomainInfo:
    name: str
    uuid: uuid.UUID
    state: DomainState
    persistent: bool


class VirtBackend(Protocol):
    """One libvirt connection. Every method names its virsh equivalent."""

    def define_and_start(self, xml: str, *, paused: bool = True) -> DomainInfo:
        """virsh define FILE && virsh start [--paused] NAME (undefined again if start fails)."""
        ...

    def list_domains(self) -> tuple[DomainInfo, ...]:
        """virsh list --all"""
        ...

    def domain_exists(self, name: str) -> bool:
        """virsh domstate NAME (exit status)"""
        ...

    def domain_state(self, name: str) -> DomainState | None:
        """virsh domstate NAME (None: no domain of that name)"""
        ...

    def domain_xml(self, name: str) -> str:
        """virsh dumpxml NAME (live XML while running)"""
        ...

    def attach_hostdev(self, vm: str, xml: str, *, live: bool = True, config: bool = False) -> None:
        """virsh attach-device VM FILE [--live] [--config]"""
        ...

    def detach_hostdev(self, vm: str, xml: str, *, live: bool = True, config: bool = False) -> None:
        """virsh detach-device VM FILE [--live] [--config]

        Success means the unplug was requested: the device leaves a running
        domain only when its guest OS answers the ACPI eject. Check
        :meth:`hostdev_addresses` to know.
        """
        ...

    def attached_vfs(self, vm: str) -> tuple[AttachedVf, ...]:
        """The PCI devices passed through to VM (virsh dumpxml VM, parsed)."""
        ...

    def hostdev_addresses(self, vm: str) -> tuple[PciAddress, ...]:
        """The host PCI addresses of :meth:`attached_vfs`."""
        ...

    def destroy(self, vm: str) -> None:
        """virsh destroy VM (hard power-off)"""
        ...

    def undefine(self, vm: str) -> None:
        """virsh undefine VM"""
        ...

    def close(self) -> None: ...

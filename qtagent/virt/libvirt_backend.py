"""The libvirt backend: the only module in qtagent that imports ``libvirt``.

Equivalent to running ``virsh -c $URI ...``: each method's docstring names its
virsh command, and each effect is logged at debug level as that command (the
XML given on stdin). libvirt's errors become :mod:`qtagent.virt.errors`
errors that keep libvirt's code and message. The connection opens on first
use, so building a backend never touches libvirtd. The URI's credentials reach
no message and no log line (:mod:`qtagent.virt.uri`): the backend shows
``shown_uri``, and libvirt's own messages are redacted too.
"""

from __future__ import annotations

import logging
import shlex
import uuid
from collections.abc import Callable
from typing import Any, Final, TypeVar

import libvirt

from qtagent.model.types import PciAddress
from qtagent.virt.api import DomainInfo, DomainState
from qtagent.virt.domain_xml import AttachedVf, attached_vfs, safe_parse
from qtagent.virt.errors import VIR_ERR_NO_DOMAIN, LibvirtFailure, from_libvirt
from qtagent.virt.uri import redact_text, redact_uri

_log = logging.getLogger(__name__)

DEFAULT_URI: Final = "qemu:///system"
_T = TypeVar("_T")

# virErrorLevel shares the VIR_ERR_ prefix (NONE=0, WARNING=1, ERROR=2): not codes.
_LEVELS: Final = frozenset({"VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR"})
_CODE_NAMES: Final[dict[int, str]] = {
    getattr(libvirt, name): name
    for name in dir(libvirt)
    if name.startswith("VIR_ERR_")
    and name not in _LEVELS
    and isinstance(getattr(libvirt, name), int)
}
_STATES: Final[dict[int, DomainState]] = {
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
}


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler is set; we raise instead."""


class LibvirtBackend:
    """One connection to libvirt at ``uri`` (``qemu:///system`` by default).

    Not thread-safe: give each thread its own backend.
    """

    def __init__(self, uri: str = DEFAULT_URI) -> None:
        self.uri = uri
        self.shown_uri = redact_uri(uri)
        self._conn: Any = None

    # ------------------------------------------------------------- domains

    def define_and_start(self, xml: str, *, paused: bool = True) -> DomainInfo:
        """virsh define FILE && virsh start [--paused] NAME

        If the start fails, the just-defined domain is undefined again, so a
        failed call leaves nothing behind.
        """
        name = safe_parse(xml).findtext("name") or "?"
        dom = self._call(f"define /dev/stdin <<< {_one_line(xml)}", self._c.defineXML, xml)
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        try:
            self._call(
                f"start {'--paused ' if paused else ''}{_q(name)}", dom.createWithFlags, flags
            )
        except LibvirtFailure:
            _log.debug("virsh -c %s undefine %s  # the start failed", self.shown_uri, _q(name))
            try:
                dom.undefine()
            except libvirt.libvirtError as e:
                _log.warning("could not undefine %s after a failed start: %s", name, self._shown(e))
            raise
        return _info(dom)

    def list_domains(self) -> tuple[DomainInfo, ...]:
        """virsh list --all"""
        found: list[DomainInfo] = []
        for dom in self._call("list --all", self._c.listAllDomains, 0, effect=False):
            try:
                found.append(_info(dom))
            except libvirt.libvirtError as e:  # it went away while we listed
                if e.get_error_code() != VIR_ERR_NO_DOMAIN:
                    raise self._error("list --all", e) from e
        return tuple(sorted(found, key=lambda d: d.name))

    def domain_exists(self, name: str) -> bool:
        """virsh domstate NAME (exit status 0: it exists)"""
        try:
            self._c.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == VIR_ERR_NO_DOMAIN:
                return False
            raise self._error(f"domstate {_q(name)}", e) from e
        return True

    def domain_state(self, name: str) -> DomainState | None:
        """virsh domstate NAME (None: no domain of that name)"""
        try:
            dom = self._c.lookupByName(name)
            return _STATES.get(int(dom.state()[0]), DomainState.OTHER)
        except libvirt.libvirtError as e:
            if e.get_error_code() == VIR_ERR_NO_DOMAIN:
                return None
            raise self._error(f"domstate {_q(name)}", e) from e

    def domain_xml(self, name: str) -> str:
        """virsh dumpxml NAME (the live XML while it runs)"""
        dom = self._domain(name)
        return str(self._call(f"dumpxml {_q(name)}", dom.XMLDesc, 0, effect=False))

    def destroy(self, vm: str) -> None:
        """virsh destroy VM (hard power-off; libvirt releases its host devices)"""
        dom = self._domain(vm)
        self._call(f"destroy {_q(vm)}", dom.destroy)

    def undefine(self, vm: str) -> None:
        """virsh undefine VM"""
        dom = self._domain(vm)
        self._call(f"undefine {_q(vm)}", dom.undefine)

    # ------------------------------------------------------------- devices

    def attach_hostdev(self, vm: str, xml: str, *, live: bool = True, config: bool = False) -> None:
        """virsh attach-device VM FILE [--live] [--config]

        For ``<interface type='hostdev'>`` libvirt first sets the MAC and VLAN on
        the VF through its PF. A VF another domain holds fails with a
        VirtConflict (libvirt error 55, "in use").
        """
        dom = self._domain(vm)
        self._call(
            f"attach-device {_q(vm)} /dev/stdin{_flags(live, config)} <<< {_one_line(xml)}",
            dom.attachDeviceFlags,
            xml,
            _affect(live, config),
        )

    def detach_hostdev(self, vm: str, xml: str, *, live: bool = True, config: bool = False) -> None:
        """virsh detach-device VM FILE [--live] [--config]

        Returns once the unplug is requested (libvirt waits a few seconds for
        QEMU to confirm). The device leaves only if the guest OS answers the
        ACPI eject: a paused or OS-less domain keeps it while libvirt reports
        success. Check :meth:`hostdev_addresses` to know.
        """
        dom = self._domain(vm)
        self._call(
            f"detach-device {_q(vm)} /dev/stdin{_flags(live, config)} <<< {_one_line(xml)}",
            dom.detachDeviceFlags,
            xml,
            _affect(live, config),
        )

    def attached_vfs(self, vm: str) -> tuple[AttachedVf, ...]:
        """virsh dumpxml VM, reduced to its PCI passthrough devices"""
        return attached_vfs(self.domain_xml(vm))

    def hostdev_addresses(self, vm: str) -> tuple[PciAddress, ...]:
        """virsh dumpxml VM | the host PCI addresses of its hostdevs"""
        return tuple(vf.address for vf in self.attached_vfs(vm))

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except libvirt.libvirtError as e:
                _log.debug("closing %s: %s", self.shown_uri, self._shown(e))

    # ------------------------------------------------------------- helpers

    @property
    def _c(self) -> Any:
        """The connection, opened on first use."""
        if self._conn is None:
            libvirt.registerErrorHandler(_quiet, None)
            _log.debug("virsh -c %s connect", self.shown_uri)
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                err = self._error("connect", e)
                shown = self.shown_uri
                err.hint = f"is libvirtd running and {shown} reachable? try: virsh -c {shown}"
                raise err from e
        return self._conn

    def _domain(self, name: str) -> Any:
        return self._call(f"domstate {_q(name)}", self._c.lookupByName, name, effect=False)

    def _call(self, command: str, fn: Callable[..., _T], *args: Any, effect: bool = True) -> _T:
        if effect:
            _log.debug("virsh -c %s %s", self.shown_uri, command)
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            raise self._error(command, e) from e

    def _error(self, command: str, e: Any) -> LibvirtFailure:
        code = int(e.get_error_code() or 0)
        message = redact_text(str(e.get_error_message() or e), self.uri)
        return from_libvirt(
            f"virsh -c {self.shown_uri} {command.split(' <<< ', maxsplit=1)[0]}",
            code,
            code_name(code),
            message,
        )

    def _shown(self, e: object) -> str:
        """A libvirt error for a log line, the URI's credentials masked."""
        return redact_text(str(e), self.uri)


def code_name(code: int) -> str:
    """libvirt's symbolic name of error ``code`` (``VIR_ERR_OPERATION_INVALID`` for 55)."""
    return _CODE_NAMES.get(code, f"VIR_ERR_{code}")


def _info(dom: Any) -> DomainInfo:
    state = int(dom.state()[0])
    return DomainInfo(
        name=str(dom.name()),
        uuid=uuid.UUID(str(dom.UUIDString())),
        state=_STATES.get(state, DomainState.OTHER),
        persistent=bool(dom.isPersistent()),
    )


def _affect(live: bool, config: bool) -> int:
    flags = (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0) | (
        libvirt.VIR_DOMAIN_AFFECT_CONFIG if config else 0
    )
    return flags or libvirt.VIR_DOMAIN_AFFECT_CURRENT


def _flags(live: bool, config: bool) -> str:
    return (" --live" if live else "") + (" --config" if config else "")


def _q(text: str) -> str:
    return shlex.quote(text)


def _one_line(xml: str) -> str:
    return shlex.quote(" ".join(line.strip() for line in xml.splitlines() if line.strip()))

"""libvirt's refusals as qtagent errors (pure: codes in, errors out).

Each keeps libvirt's error code (``virErrorNumber``), its symbolic name and
libvirt's own message, and also is the matching kind from
:mod:`qtagent.errors`: an unknown domain is a :class:`NotFound`, a device held
by another domain (libvirt error 55, "in use") a :class:`Conflict`, so callers
catch by kind and the API answers with the right status.
"""

from __future__ import annotations

import re
from typing import Final

from qtagent.errors import Conflict, NotFound, Timeout, Unsupported, VirtError

# virErrorNumber values (libvirt's stable ABI; see include/libvirt/virterror.h).
VIR_ERR_NO_SUPPORT: Final = 3
VIR_ERR_DOM_EXIST: Final = 28
VIR_ERR_NO_DOMAIN: Final = 42
VIR_ERR_OPERATION_INVALID: Final = 55
VIR_ERR_CONFIG_UNSUPPORTED: Final = 67
VIR_ERR_OPERATION_TIMEOUT: Final = 68
VIR_ERR_ARGUMENT_UNSUPPORTED: Final = 74
VIR_ERR_OPERATION_UNSUPPORTED: Final = 84
VIR_ERR_DEVICE_MISSING: Final = 99


class LibvirtFailure(VirtError):
    """libvirt refused; ``code``/``code_name`` and ``libvirt_message`` are libvirt's own."""

    def __init__(
        self, message: str, *, code: int, code_name: str, libvirt_message: str, hint: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.code_name = code_name
        self.libvirt_message = libvirt_message

    def diagnostics(self) -> str:
        head, _, rest = super().diagnostics().partition("\n")
        return f"{head} [libvirt {self.code_name} ({self.code})]" + (f"\n{rest}" if rest else "")

    def to_dict(self) -> dict[str, object]:
        return super().to_dict() | {"libvirt_code": self.code, "libvirt_error": self.code_name}


class DomainNotFound(NotFound, LibvirtFailure):
    """The domain (or the device to detach) does not exist."""


class VirtConflict(Conflict, LibvirtFailure):
    """The request conflicts with a domain's state: a device in use, a domain not running.

    ``holder`` names the domain holding the device when libvirt says so
    ("PCI device ... is in use by driver QEMU, domain a").
    """

    holder: str | None = None


class VirtUnsupported(Unsupported, LibvirtFailure):
    """This libvirt driver or hypervisor cannot do what was asked."""


class VirtTimeout(Timeout, LibvirtFailure):
    """libvirt gave up waiting (a busy domain job, a monitor that did not answer)."""


_KINDS: Final[dict[int, type[LibvirtFailure]]] = {
    VIR_ERR_NO_DOMAIN: DomainNotFound,
    VIR_ERR_DEVICE_MISSING: DomainNotFound,
    VIR_ERR_OPERATION_INVALID: VirtConflict,
    VIR_ERR_DOM_EXIST: VirtConflict,
    VIR_ERR_NO_SUPPORT: VirtUnsupported,
    VIR_ERR_CONFIG_UNSUPPORTED: VirtUnsupported,
    VIR_ERR_ARGUMENT_UNSUPPORTED: VirtUnsupported,
    VIR_ERR_OPERATION_UNSUPPORTED: VirtUnsupported,
    VIR_ERR_OPERATION_TIMEOUT: VirtTimeout,
}

_HOLDER_RE: Final = re.compile(r"is in use by driver [^,]+, domain (?P<domain>.+?)\s*$")

_HINTS: Final[dict[type[LibvirtFailure], str]] = {
    DomainNotFound: "list the domains with: virsh list --all",
    VirtConflict: "another domain may hold the device, or the domain is not in the "
    "state this needs; check: virsh list --all; virsh nodedev-list --cap pci",
}


def from_libvirt(action: str, code: int, code_name: str, libvirt_message: str) -> LibvirtFailure:
    """The qtagent error for libvirt error ``code`` raised while doing ``action``.

    ``action`` is the equivalent virsh command, so the message reads
    "virsh attach-device a ... failed: <libvirt's message>".
    """
    kind = _KINDS.get(code, LibvirtFailure)
    err = kind(
        f"{action} failed: {libvirt_message}",
        code=code,
        code_name=code_name,
        libvirt_message=libvirt_message,
        hint=_HINTS.get(kind, ""),
    )
    held = _HOLDER_RE.search(libvirt_message)
    if isinstance(err, VirtConflict) and held:
        err.holder = held["domain"]
        err.hint = f"domain {err.holder!r} holds the device; detach it there first"
    return err

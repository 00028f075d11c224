"""The one error tree of qtagent.

Every failure a user can see is a :class:`QtagentError`. Each carries what went
wrong (``str(err)``), what to do about it (``hint``), an HTTP-like ``status`` for
the API and an ``exit_code`` for the CLI. Adapters re-raise foreign errors as
qtagent errors with ``raise ... from e`` and keep the kernel's ``errno``. An
operation that fails part way adds what it had done already with
``err.add_note(...)``; notes are part of the diagnostics.

Messages never contain key material or other secrets.
"""

from __future__ import annotations

import errno as errno_mod
import os


class QtagentError(Exception):
    """Base of every qtagent error."""

    status = 500
    exit_code = 1
    default_hint = ""

    def __init__(self, message: str, *, hint: str = "", errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint
        self.errno = errno

    @property
    def errno_name(self) -> str | None:
        if self.errno is None:
            return None
        return errno_mod.errorcode.get(self.errno, str(self.errno))

    def diagnostics(self) -> str:
        """The full text for a person: what went wrong and what to do."""
        text = self.message
        if self.errno is not None:
            text += f" [{self.errno_name}: {os.strerror(self.errno)}]"
        for note in self.notes:
            text += f"\n  {note}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    @property
    def notes(self) -> tuple[str, ...]:
        """What the failed operation had done already (``add_note``), in order."""
        return tuple(getattr(self, "__notes__", ()))

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "notes": list(self.notes),
            "hint": self.hint,
            "errno": self.errno_name,
            "status": self.status,
        }


class InvalidInput(QtagentError):
    """The request itself is malformed: a bad MAC, VLAN, count or file."""

    status = 400
    exit_code = 2


class ConfigError(InvalidInput):
    """The host config file cannot be used as written."""


class PermissionDenied(QtagentError):
    """qtagent may not do this as the user it runs as: a file it may not write or
    chmod, a read-only file system. ``errno`` says how (EACCES, EPERM, EROFS)."""

    status = 403
    exit_code = 10


class NotFound(QtagentError):
    """A PF, VF or VM named in the request does not exist."""

    status = 404
    exit_code = 3


class Conflict(QtagentError):
    """The request conflicts with the host's state (a VF in use, a group not viable)."""

    status = 409
    exit_code = 4


class Unsupported(QtagentError):
    """The driver or device cannot do what was asked."""

    status = 422
    exit_code = 5


class KernelError(QtagentError):
    """The kernel refused an operation; ``errno`` says how."""

    status = 502
    exit_code = 6


class TransientKernelError(KernelError):
    """The kernel refused for now (EBUSY, EAGAIN); retrying later may succeed."""


class MalformedAttribute(KernelError):
    """A sysfs attribute holds text the kernel never writes, or is not a file the kernel
    makes (a tampered or broken tree)."""


class Timeout(QtagentError):
    """Something did not happen within its bound."""

    status = 504
    exit_code = 7


class VirtError(QtagentError):
    """libvirt refused an operation."""

    status = 502
    exit_code = 8


class LabError(QtagentError):
    """The emulated lab cannot be set up or booted."""

    exit_code = 9


TRANSIENT_ERRNOS = frozenset({errno_mod.EBUSY, errno_mod.EAGAIN, errno_mod.EINTR})
UNSUPPORTED_ERRNOS = frozenset({errno_mod.EOPNOTSUPP, errno_mod.ENOTSUP, errno_mod.EPROTONOSUPPORT})
PERMISSION_ERRNOS = frozenset({errno_mod.EACCES, errno_mod.EPERM, errno_mod.EROFS})


def from_os_error(err: OSError, action: str, *, hint: str = "") -> QtagentError:
    """Map an OSError from a kernel interface to the matching qtagent error.

    ``action`` says what was attempted, as the equivalent shell command where
    there is one, so the message reads "echo 6 > .../sriov_numvfs failed".
    """
    code = err.errno
    message = f"{action} failed"
    if code in TRANSIENT_ERRNOS:
        return TransientKernelError(message, hint=hint or "retry in a moment", errno=code)
    if code in UNSUPPORTED_ERRNOS:
        return Unsupported(message, hint=hint or "the driver does not offer this", errno=code)
    if code == errno_mod.ENOENT:
        return NotFound(message, hint=hint, errno=code)
    return KernelError(message, hint=hint, errno=code)

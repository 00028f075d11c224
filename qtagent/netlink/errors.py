"""Kernel errno from an rtnetlink request -> the matching qtagent error.

Shared by both backends and the test fake, so every implementation of
:class:`qtagent.netlink.api.VfNetlink` raises the same errors for the same errno.
"""

from __future__ import annotations

import errno
import os

from qtagent.errors import KernelError, NotFound, QtagentError, from_os_error


def netlink_error(code: int, action: str) -> QtagentError:
    """Map errno ``code`` of the request ``action`` (its shell form) to a qtagent error.

    EBUSY/EAGAIN -> TransientKernelError, EOPNOTSUPP/EPROTONOSUPPORT -> Unsupported,
    ENODEV/ENOENT -> NotFound, EINVAL and everything else -> KernelError; the errno
    is kept on the error.
    """
    if code == errno.ENODEV:
        return NotFound(f"{action} failed", hint="the PF's network interface is gone", errno=code)
    err = from_os_error(OSError(code, os.strerror(code)), action)
    if code == errno.EINVAL and isinstance(err, KernelError):
        err.hint = "the driver rejected this value for this VF"
    return err

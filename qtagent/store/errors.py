"""The errors of the allocation database, and OSError -> the matching one."""

from __future__ import annotations

from typing import Final

from qtagent.errors import PERMISSION_ERRNOS, PermissionDenied, QtagentError

PERMISSION_HINT: Final = (
    "run qtagent as root (the database's owner), or give --db (QTAGENT_DB) a path "
    "qtagent's user may write"
)


class StoreError(QtagentError):
    """The allocation database cannot be used (unreadable, corrupt, too new)."""

    status = 500
    exit_code = 1


def file_error(
    err: OSError, message: str, *, hint: str, permission_hint: str = PERMISSION_HINT
) -> QtagentError:
    """``message`` about the database's files as PermissionDenied (exit 10) with
    ``permission_hint`` when the errno says qtagent's user may not (EACCES, EPERM,
    EROFS), else as StoreError with ``hint``. The errno is kept (``diagnostics()``
    shows it)."""
    if err.errno in PERMISSION_ERRNOS:
        return PermissionDenied(message, hint=permission_hint, errno=err.errno)
    return StoreError(message, hint=hint, errno=err.errno)

"""The database file on disk: what may be at its path, safe creation, private modes.

Equivalent to::

    test ! -e $db -o \\( -f $db -a ! -L $db \\)    # nothing there, or a regular file
    install -d -m 0700 $(dirname $db)
    install -m 0600 /dev/null $db                  # only if missing
    chmod 0600 $db $db-wal $db-shm                 # once it is known to be qtagent's

No SQLite here: these look at the file through descriptors of their own, so they
run only before this process's first connection to it (:mod:`qtagent.store.sqlite`
says why). Failures name the path and say what to do; a permission failure
(EACCES, EPERM, EROFS) is :class:`~qtagent.errors.PermissionDenied` (exit 10).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Final

from qtagent.store.errors import StoreError, file_error

_log = logging.getLogger(__name__)

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
SQLITE_HEADER: Final = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite file
NOT_OURS_HINT: Final = (
    "give the path of qtagent's allocation database (--db, QTAGENT_DB), "
    "or move this file away so that a new database is created there"
)
PATH_HINT: Final = (
    "give --db (QTAGENT_DB) the path of a regular file, or of one to be created, in a directory"
)
_KINDS: Final = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def prepare_file(path: Path) -> None:
    """Create the database file 0600 (its directory 0700) without following links.

    An existing file is only looked at, never changed: a path that is not a
    regular file (a symlink, a directory, a FIFO, a device) is refused before it
    is opened, and a file that is neither empty nor an SQLite database is refused
    as it is. (:func:`tighten_mode` changes modes, once the file is known to be
    the allocation database.)
    """
    make_directory(path)
    is_regular_file(path)
    with open_file(path, create=True) as fd:
        check_contents(fd, path)


def check_existing_file(path: Path) -> bool:
    """For reading only: False if nothing is at ``path``; True if an SQLite database
    (or an empty file) is; anything else is refused. Creates and changes nothing."""
    if not is_regular_file(path):
        return False
    with open_file(path, create=False) as fd:
        check_contents(fd, path)
    return True


def is_regular_file(path: Path) -> bool:
    """``test -f $path -a ! -L $path``: True for a regular file, False if nothing is
    there. Anything else is refused before it is opened: opening a FIFO blocks,
    opening a device acts on it, and a symlink could point anywhere."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise file_error(e, f"cannot look at the allocation database {path}", hint=PATH_HINT) from e
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
        raise StoreError(
            f"the allocation database {path} is {kind}, not a regular file; "
            "qtagent leaves it as it is",
            hint=PATH_HINT,
        )
    return True


def make_directory(path: Path) -> None:
    """``install -d -m 0700 $(dirname $path)`` (and its parents); an existing
    directory is left as it is."""
    parent = path.parent
    try:
        parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as e:
        raise file_error(
            e,
            f"cannot create {parent}, the directory of the allocation database {path}",
            hint=f"{parent} or a directory above it is not a directory or cannot hold one: "
            f"{PATH_HINT} that exists or can be created (install -d -m 0700 DIR)",
            permission_hint="run qtagent as root, or give --db (QTAGENT_DB) a path in a "
            f"directory qtagent's user may write, or create it: install -d -m 0700 {parent}",
        ) from e


@contextmanager
def open_file(path: Path, *, create: bool) -> Iterator[int]:
    """A descriptor of the file, read-write and created 0600 if missing (``create``),
    else read-only; a symlink is refused (O_NOFOLLOW), a FIFO does not block."""
    access = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    try:
        fd = os.open(path, access | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, FILE_MODE)
    except OSError as e:
        raise file_error(
            e,
            f"cannot open the allocation database {path}",
            hint="the path must be a regular file (not a symlink) qtagent may "
            f"{'write' if create else 'read'}",
        ) from e
    try:
        yield fd
    finally:
        os.close(fd)


def check_contents(fd: int, path: Path) -> None:
    """Refuse an opened file that is not regular, or holds anything but an SQLite
    database. The first bytes are read whatever the size says: a /proc file shows
    size 0 and still has text."""
    try:
        info = os.fstat(fd)
        head = os.pread(fd, len(SQLITE_HEADER), 0) if stat.S_ISREG(info.st_mode) else b""
    except OSError as e:
        raise file_error(e, f"cannot read the allocation database {path}", hint=PATH_HINT) from e
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"the allocation database {path} is not a regular file", hint=PATH_HINT)
    if head and head != SQLITE_HEADER:
        raise StoreError(
            f"{path} is not an SQLite database; qtagent leaves it as it is", hint=NOT_OURS_HINT
        )


def tighten_mode(path: Path) -> None:
    """Take group and other access away from the database and its -wal and -shm
    files, with a warning (SQLite gives new -wal and -shm files the main file's mode)."""
    with open_file(path, create=True) as fd:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            _log.warning("tightening %s from %o to 0600", path, mode)
            _make_private(path, partial(os.fchmod, fd, FILE_MODE))
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.is_file() and not side.is_symlink() and side.stat().st_mode & 0o077:
            _make_private(side, partial(side.chmod, FILE_MODE))


def _make_private(path: Path, chmod: Callable[[], None]) -> None:
    """``chmod 0600 $path``; a refusal (a file another user owns, a file system
    that has no modes) is an error naming the file, never a traceback."""
    _log.debug("chmod 0600 %s", path)
    try:
        chmod()
    except OSError as e:
        raise file_error(
            e,
            f"cannot make {path} private (chmod 0600)",
            hint=PATH_HINT,
            permission_hint="the allocation database must be a file on a local file system, "
            f"owned by the user qtagent runs as (root): chown root: {path}, "
            "or give --db (QTAGENT_DB) another path",
        ) from e

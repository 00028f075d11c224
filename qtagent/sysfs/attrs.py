"""Tolerant reads of single sysfs entries.

Each reader equals one shell command (``cat``, ``readlink``, ``ls``) and never
raises: a missing file, a dangling link, a device that vanished mid-read, an
attribute the kernel refuses to show (``speed`` of a down link gives EINVAL)
or garbage in a fake tree all become ``None`` (or an empty list) and a debug
log line. Callers decide what an unknown value means.

Paths are plain ``str``: the reader walks hundreds of entries per snapshot and
``pathlib`` costs more than the system calls themselves.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Final

_log = logging.getLogger(__name__)

# sysfs shows at most one page per attribute. O_NONBLOCK keeps a FIFO planted
# in a hostile tree from hanging the reader; regular and sysfs files ignore it.
_MAX_ATTR: Final = 4096
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def read_bytes(path: str, *, missing_ok: bool = False) -> bytes | None:
    """``cat $path`` as raw bytes; None if it cannot be opened or read.

    ``missing_ok`` skips the debug line when the file does not exist: for probes
    such as "is this function SR-IOV capable", where absence is the usual answer.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        if not (missing_ok and err.errno == errno.ENOENT):
            _log.debug("cat %s: %s", path, err.strerror)
        return None
    try:
        return os.read(fd, _MAX_ATTR)
    except OSError as err:
        _log.debug("cat %s: %s", path, err.strerror)
        return None
    finally:
        os.close(fd)


def read_text(path: str) -> str | None:
    """``cat $path``, stripped; None if it cannot be read or is not ASCII text."""
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        _log.debug("cat %s: not ASCII text", path)
        return None


def read_int(path: str, base: int = 10) -> int | None:
    """``cat $path`` as an integer in ``base`` (16 also takes a ``0x`` prefix)."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        _log.debug("cat %s: %r is not a base-%d integer", path, text[:40], base)
        return None


def read_count(path: str) -> int | None:
    """``cat $path`` as a non-negative decimal count (sriov_numvfs, ifindex, ...)."""
    value = read_int(path)
    if value is None or value < 0:
        return None
    return value


def link_name(path: str) -> str | None:
    """``basename $(readlink $path)``: the name a link points at (a driver, a group)."""
    try:
        target = os.readlink(path)
    except OSError as err:
        _log.debug("readlink %s: %s", path, err.strerror)
        return None
    name = target.rpartition("/")[2]
    return name or None


def list_dir(path: str) -> list[str]:
    """``ls $path``; empty if it is missing or not a directory."""
    try:
        return os.listdir(path)
    except OSError as err:
        _log.debug("ls %s: %s", path, err.strerror)
        return []


def is_dir(path: str) -> bool:
    """``test -d $path`` (follows links, so a dangling link is False)."""
    return os.path.isdir(path)

"""Tolerant reads of single sysfs entries.

Each reader equals one shell command (``cat``, ``readlink``, ``ls``) and never
raises: a missing file, a dangling link, a device that vanished mid-read, an
attribute the kernel refuses to show (``speed`` of a down link gives EINVAL)
or garbage in a fake tree all become ``None`` (or an empty list) and a debug
log line. Callers decide what an unknown value means.

Numbers are parsed strictly (:func:`parse_int`): only what the kernel's
``sysfs_emit`` format writes, never what Python's ``int()`` would also take
(``" 1_0 "``, ``"+3"``, ``"٣"``). An attribute that holds anything else is not
the kernel's text: it becomes ``None`` with a warning naming the file.

Paths are plain ``str``: the reader walks hundreds of entries per snapshot and
``pathlib`` costs more than the system calls themselves.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from enum import Enum
from typing import Final

from qtagent.errors import MalformedAttribute

_log = logging.getLogger(__name__)

# sysfs shows at most one page per attribute. O_NONBLOCK keeps a FIFO planted
# in a hostile tree from hanging the reader; regular and sysfs files ignore it.
_MAX_ATTR: Final = 4096
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_NAME_NUMBER: Final = re.compile(r"0|[1-9][0-9]{0,19}")  # %u, ASCII digits only


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


class IntFormat(Enum):
    """How the kernel prints an integer attribute: (its printf format, the pattern of
    exactly that output with the optional trailing newline, the base)."""

    DECIMAL = ("%d", rb"(0|-?[1-9][0-9]{0,19})\n?", 10)  # numa_node, speed
    COUNT = ("%u", rb"(0|[1-9][0-9]{0,19})\n?", 10)  # sriov_numvfs, ifindex
    HEX = ("0x%x", rb"0x([0-9a-f]{1,16})\n?", 16)  # vendor, device, class
    BARE_HEX = ("%x", rb"([0-9a-f]{1,16})\n?", 16)  # sriov_vf_device

    def __init__(self, printf: str, pattern: bytes, base: int) -> None:
        self.printf = printf
        self.pattern = re.compile(pattern)
        self.base = base


def parse_int(data: bytes, form: IntFormat, path: str) -> int:
    """The integer the kernel wrote into ``path`` in ``form``; anything else raises
    :class:`MalformedAttribute` naming the file."""
    match = form.pattern.fullmatch(data)
    if match is None:
        raise MalformedAttribute(
            f"{path} holds {data[:40]!r}, not an integer as the kernel writes it ({form.printf!r})",
            hint="something other than the kernel wrote this file, or the sysfs root is not sysfs",
        )
    return int(match[1], form.base)


def read_int(path: str, form: IntFormat = IntFormat.DECIMAL) -> int | None:
    """``cat $path`` as an integer printed in ``form``; None if unreadable or malformed."""
    data = read_bytes(path)
    return None if data is None else int_or_none(data, form, path)


def int_or_none(data: bytes, form: IntFormat, path: str) -> int | None:
    """:func:`parse_int`, with a malformed attribute logged as a warning and None."""
    try:
        return parse_int(data, form, path)
    except MalformedAttribute as err:
        _log.warning("%s; taken as unknown", err.message)
        return None


def at_most(value: int | None, maximum: int, path: str) -> int | None:
    """``value`` if it is at most ``maximum``; else None with a warning, like any
    malformed attribute: no kernel writes it (a VF count above 65535, an ifindex
    above INT_MAX)."""
    if value is None or value <= maximum:
        return value
    _log.warning(
        "%s holds %d, above %d, which the kernel never writes; taken as unknown",
        path, value, maximum,
    )  # fmt: skip
    return None


def read_count(path: str, maximum: int | None = None) -> int | None:
    """``cat $path`` as a non-negative decimal count (sriov_numvfs, ifindex, ...);
    one above ``maximum`` is malformed (None, with a warning: :func:`at_most`)."""
    value = read_int(path, IntFormat.COUNT)
    return value if maximum is None else at_most(value, maximum, path)


def number_in_name(name: str, prefix: str = "") -> int | None:
    """N of a name the kernel made as ``prefix`` + ``%u`` (``virtfn3``, ``netdevsim1``,
    an IOMMU group ``12``); None for any other name (``virtfn03``, ``virtfn٣``)."""
    if not name.startswith(prefix) or _NAME_NUMBER.fullmatch(name, len(prefix)) is None:
        return None
    return int(name[len(prefix) :])


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

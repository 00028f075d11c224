"""Reading an operator's TOML file safely and checking its values, for every file
qtagent reads (the host config, VM specs): pure but for :func:`read_regular_file`.

Only a regular file is read, up to a limit: a device, a FIFO or a directory is refused
without reading from it, and the open does not wait for a FIFO's writer. Every
message names where a value is (file, section, key), what it holds and what is
allowed, in the file's own terms; a value is quoted back cut short, with control
characters escaped, so no file can forge a message.
"""

from __future__ import annotations

import datetime
import difflib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from qtagent.errors import ConfigError

_SHOWN_MAX: Final = 40  # characters of a value quoted back in a message


@dataclass(frozen=True, slots=True)
class FileKind:
    """What kind of file is read, for its messages: ``name`` ("host config"),
    ``max_bytes``, and what a right one looks like (``looks_like``, ``nests``, what its
    ``numbers`` are)."""

    name: str
    max_bytes: int
    looks_like: str
    nests: str
    numbers: str


def read_regular_file(path: Path, kind: FileKind) -> bytes:
    """The bytes of ``path``: a regular file, read up to one byte past its kind's
    ``max_bytes`` (so that :func:`parse_toml` can say it is too large).

    Opened with O_NONBLOCK, so that a FIFO without a writer does not hang the open,
    then checked with fstat before anything is read from it.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise _unreadable(path, "cannot open", err) from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"{path} is not a regular file: it is {_file_kind(mode)}",
                hint=f"give the path of the TOML {kind.name} file itself",
            )
        return _read_at_most(fd, kind.max_bytes + 1)
    except OSError as err:
        raise _unreadable(path, "cannot read", err) from err
    finally:
        os.close(fd)


def parse_toml(raw: bytes, source: str, kind: FileKind) -> dict[str, Any]:
    """``raw`` as TOML; ``source`` names the file in messages."""
    if len(raw) > kind.max_bytes:
        raise ConfigError(
            f"{source} is larger than {_size(kind.max_bytes)} ({kind.max_bytes} bytes), the "
            f"most a {kind.name} may be",
            hint=f"{kind.looks_like}: check that this is the right file",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{source} is not UTF-8 text: line {line} has a byte that is not UTF-8",
            hint="save the file as UTF-8",
        ) from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{source} is not valid TOML: {err}", hint="fix the syntax at that line and column"
        ) from err
    except RecursionError as err:
        raise ConfigError(
            f"{source} is malformed: its arrays or tables are nested too deeply to read",
            hint=f"a {kind.name} nests only {kind.nests}",
        ) from err
    except ValueError as err:  # an integer of thousands of digits, which tomllib will not convert
        raise ConfigError(
            f"{source} is malformed: a value in it cannot be read (a number far too long?)",
            hint=f"{kind.numbers} are small whole numbers",
        ) from err


def only_keys(body: Mapping[str, Any], allowed: set[str], where: str, section: str = "") -> None:
    """Refuse a key not in ``allowed`` (``section``: the inline table it is in, if any)."""
    unknown = sorted(set(body) - allowed)
    if not unknown:
        return
    prefix = f"{section}." if section else ""
    close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
    suggestion = f"did you mean {prefix}{close[0]}? " if close else ""
    raise ConfigError(
        f"{where}: unknown key {shown(prefix + unknown[0])}",
        hint=f"{suggestion}allowed {f'in {section}' if section else 'here'}: "
        + ", ".join(sorted(allowed)),
    )


def whole_number(
    value: object, key: str, where: str, bounds: tuple[int, int], about: str = ""
) -> int:
    """``value`` of ``key`` as a whole number within ``bounds`` (``about``: its unit or
    meaning, for the hint)."""
    low, high = bounds
    allowed = f"use {low} to {high} for {key}" + (f" ({about})" if about else "")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(
            f"{where}: {key} must be a whole number, not {describe(value)}",
            hint=f"write {key} = N without quotes; {allowed}",
        )
    if not low <= value <= high:
        raise ConfigError(f"{where}: {key} = {shown(value)} is out of range", hint=allowed)
    return value


def boolean(value: object, key: str, where: str) -> bool:
    """``value`` of ``key`` as true or false."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"{where}: {key} must be true or false, not {describe(value)}",
            hint=f"write {key.rpartition('.')[2]} = true or false (no quotes)",
        )
    return value


def describe(value: object) -> str:
    """What a TOML value is, for "must be X, not ...": its kind, and a scalar's value."""
    if isinstance(value, list | dict):
        return "an array" if isinstance(value, list) else "a table"
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (int, "a whole number"),
        (float, "a float"),
        (str, "a string"),
        (datetime.datetime, "a date-time"),
        (datetime.date, "a date"),
        (datetime.time, "a time"),
    )
    kind = next((name for cls, name in kinds if isinstance(value, cls)), "a value")
    return f"{kind} {shown(value)}"


def shown(value: object) -> str:
    """A value as TOML writes it, cut short, control characters as \\u escapes;
    an array or table as [...] or {...}."""
    if isinstance(value, list | dict):
        return "[...]" if isinstance(value, list) else "{...}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = "".join(_escaped(c) for c in value[:_SHOWN_MAX])
        return f'"{text}"' + ("..." if len(value) > _SHOWN_MAX else "")
    text = value.isoformat() if isinstance(value, datetime.date | datetime.time) else str(value)
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "..."


def _escaped(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    return char if char.isprintable() else f"\\u{ord(char):04x}"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit >> 10} KiB"


def _unreadable(path: Path, what: str, err: OSError) -> ConfigError:
    return ConfigError(
        f"{what} {path}",
        hint="check the path and that this user may read the file",
        errno=err.errno,
    )


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), "not a file")

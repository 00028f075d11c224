"""How the CLI prints: aligned tables for people, JSON for machines.

Text for people shows control characters as escapes: names from the system
(netdevs, drivers, pci.ids, libvirt domains) can hold any byte, and an escape
sequence printed raw would drive the operator's terminal. JSON needs no care:
``json.dumps`` escapes them all. A value the user typed is escaped newlines and
all (:func:`shown`, :func:`escape_echoes`): printed raw, "x\nhint: ..." would
forge a line of qtagent's own advice.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

# C0, DEL, C1, and lone surrogates (bytes that were not UTF-8, or no character at all)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_NEWLINE: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Options:
    """Global CLI options, stored on the click context."""

    json: bool


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table; None prints as '-'."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return visible(str(value))


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with each control character (C0, DEL, C1; newlines too unless kept)
    shown as its ``\\xNN`` escape, so that printing it cannot drive a terminal.

    A byte that is not UTF-8 (read from the system as a lone surrogate, as Python's
    file names are) is shown as the same escape of that byte: printed raw it would
    not encode, and the command would end in a traceback."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(lambda m: _escape(ord(m[0])), text)


def _escape(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def shown(value: object) -> str:
    """A value the user gave, for a message: every control character escaped,
    newlines too, so that it stays on its line."""
    return visible(os.fspath(value) if isinstance(value, os.PathLike) else str(value))


def escape_echoes(text: str, values: Iterable[str]) -> str:
    """``text`` with each of ``values`` that holds a control character escaped
    (:func:`shown`) wherever it appears, as given or as a path names it (normalised,
    or a parent directory): a message that echoes it raw cannot forge a line.

    Values without any visible character are left: replacing a lone newline would
    join every line of the message."""
    forms = {form for value in values for form in _path_forms(value)}
    risky = [form for form in forms if _CONTROL.search(form) and _CONTROL.sub("", form).strip()]
    for form in sorted(risky, key=len, reverse=True):
        text = text.replace(form, shown(form))
    return text


def _path_forms(value: str) -> set[str]:
    path = Path(value)
    return {value, str(path), *(str(parent) for parent in path.parents)}


class VisibleFormatter(logging.Formatter):
    """Log lines for a terminal: control characters escaped as in :func:`visible`,
    newlines too in the values a message is formatted with (they may be the user's)."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple):
            record = logging.makeLogRecord(
                {**record.__dict__, "args": tuple(_arg(a) for a in record.args)}
            )
        return visible(super().format(record), keep_newlines=True)


def _arg(value: object) -> object:
    return shown(value) if isinstance(value, str | os.PathLike) else value


def emit(data: object, text: str) -> None:
    """Print ``data`` as JSON when --json was given, else ``text`` (its control
    characters escaped, see :func:`visible`)."""
    options = click.get_current_context().find_object(Options)
    if options is not None and options.json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(visible(text, keep_newlines=True))

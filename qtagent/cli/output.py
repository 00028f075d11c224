"""How the CLI prints: aligned tables for people, JSON for machines.

Text for people shows control characters as escapes: names from the system
(netdevs, drivers, pci.ids, libvirt domains) can hold any byte, and an escape
sequence printed raw would drive the operator's terminal. JSON needs no care:
``json.dumps`` escapes them all.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import click

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1
_CONTROL_BUT_NEWLINE: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


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
    shown as its ``\\xNN`` escape, so that printing it cannot drive a terminal."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


class VisibleFormatter(logging.Formatter):
    """Log lines for a terminal: control characters escaped as in :func:`visible`."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), keep_newlines=True)


def emit(data: object, text: str) -> None:
    """Print ``data`` as JSON when --json was given, else ``text`` (its control
    characters escaped, see :func:`visible`)."""
    options = click.get_current_context().find_object(Options)
    if options is not None and options.json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(visible(text, keep_newlines=True))

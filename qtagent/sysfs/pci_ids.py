"""Vendor and device names from the PCI ID database (``pci.ids``, as lspci uses).

The file (about 1.3 MB) is read once, on the first lookup, and never parsed as
a whole: a lookup finds the vendor's line and searches only that vendor's
block for the device. Answers are cached, so a daemon that reads the host over
and over pays for each ID once. A missing or unreadable database gives no
names, never an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

_log = logging.getLogger(__name__)

DEFAULT_PATHS: Final = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))

# A vendor block ends at the next line that is neither indented nor a comment.
_BLOCK_END: Final = re.compile(rb"\n(?=[^\t#\n])")


class PciIdDatabase:
    """Lazy lookups in the first readable file of ``paths``.

    Equivalent to ``lspci -nn``'s naming: ``grep -A... '^8086  ' pci.ids``.
    """

    def __init__(self, paths: Sequence[Path] = DEFAULT_PATHS) -> None:
        self._paths = tuple(paths)
        self._data: bytes | None = None
        self._loaded = False
        self._vendors: dict[int, tuple[str | None, int, int]] = {}
        self._devices: dict[tuple[int, int], str | None] = {}

    @classmethod
    def disabled(cls) -> PciIdDatabase:
        """A database that knows no names (no file is ever opened)."""
        return cls(())

    def vendor_name(self, vendor: int) -> str | None:
        """The vendor's name, e.g. ``Intel Corporation`` for 0x8086; None if unknown."""
        return self._vendor(vendor)[0]

    def device_name(self, vendor: int, device: int) -> str | None:
        """The device's name within its vendor's block; None if unknown."""
        key = (vendor, device)
        if key in self._devices:
            return self._devices[key]
        name = None
        data = self._load()
        _, start, end = self._vendor(vendor)
        if data is not None and start < end:
            needle = b"\n\t%04x  " % device
            at = data.find(needle, start, end)
            if at >= 0:
                name = _line(data, at + len(needle))
        self._devices[key] = name
        return name

    def _vendor(self, vendor: int) -> tuple[str | None, int, int]:
        """The vendor's name and the byte span of its device lines."""
        found = self._vendors.get(vendor)
        if found is not None:
            return found
        found = (None, 0, 0)
        data = self._load()
        if data is not None and 0 <= vendor <= 0xFFFF:
            needle = b"\n%04x  " % vendor
            at = data.find(needle)
            if at >= 0:
                name_at = at + len(needle)
                block_start = data.find(b"\n", name_at)
                if block_start < 0:
                    block_start = len(data)
                match = _BLOCK_END.search(data, block_start)
                found = (_line(data, name_at), block_start, match.start() if match else len(data))
        self._vendors[vendor] = found
        return found

    def _load(self) -> bytes | None:
        if not self._loaded:
            self._loaded = True
            for path in self._paths:
                try:
                    self._data = b"\n" + path.read_bytes()
                except OSError as err:
                    _log.debug("cat %s: %s", path, err.strerror)
                    continue
                _log.debug("PCI ID database: %s", path)
                break
        return self._data


def _line(data: bytes, start: int) -> str | None:
    end = data.find(b"\n", start)
    text = data[start : end if end >= 0 else len(data)].decode("utf-8", "replace").strip()
    return text or None

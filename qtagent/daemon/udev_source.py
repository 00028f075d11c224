"""PCI and net uevents through pyudev: the one module that monitors with pyudev.

Equivalent to: ``udevadm monitor --kernel --subsystem-match=pci --subsystem-match=net``
(``--udev`` instead of ``--kernel`` where udevd runs). Non-blocking; the loop
selects on :meth:`UdevSource.fileno` and calls :meth:`UdevSource.drain`.

Which source: udev's events come after its rules ran (names settled), the kernel's
as soon as the kernel saw the change. libudev subscribes to udev's events even when
no udevd runs, as long as /dev is a devtmpfs, and then silently receives nothing,
as inside the lab guest. pyudev cannot say whether udevd runs, but it gives udev's
run directory (``Context.run_path``); udevd's control socket ``control`` there is
what libudev itself looks for. So: "udev" when that socket exists, else "kernel".
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import pyudev

from qtagent.daemon.events import SUBSYSTEMS, Overrun, UdevEvent
from qtagent.errors import from_os_error

_log = logging.getLogger(__name__)

Source = Literal["udev", "kernel"]
SOURCE_NAME: Final = "udev"
SOCKET_BUFFER: Final = 4 * 1024 * 1024  # a VF count change of 256 VFs makes ~1500 uevents
MAX_EVENTS: Final = 4096  # per drain, so one flood cannot starve the other sources


def pick_source(run_path: Path) -> Source:
    """ "udev" when udevd runs (its control socket is in ``run_path``), else "kernel"."""
    return "udev" if (run_path / "control").exists() else "kernel"


class UdevSource:
    """A started pyudev monitor of the pci and net subsystems.

    ``source``: "udev" or "kernel"; None picks one (:func:`pick_source`).
    """

    def __init__(self, *, source: Source | None = None, rcvbuf: int = SOCKET_BUFFER) -> None:
        context = pyudev.Context()
        self.source: Source = source or pick_source(Path(context.run_path))
        try:
            monitor = pyudev.Monitor.from_netlink(context, source=self.source)
            for subsystem in SUBSYSTEMS:
                monitor.filter_by(subsystem)
            monitor.start()  # non-blocking from here on
        except OSError as err:
            raise from_os_error(err, f"udevadm monitor --{self.source}") from err
        try:
            monitor.set_receive_buffer_size(rcvbuf)  # needs CAP_NET_ADMIN
        except OSError as err:
            _log.info("udev monitor keeps the default receive buffer: %s", err)
        self._monitor: Any = monitor
        _log.info("following %s uevents of %s", self.source, ", ".join(SUBSYSTEMS))

    def fileno(self) -> int:
        fd: int = self._monitor.fileno()
        return fd

    def drain(self) -> list[UdevEvent | Overrun]:
        """Every uevent queued now, without blocking."""
        found: list[UdevEvent | Overrun] = []
        for _ in range(MAX_EVENTS):
            try:
                device = self._monitor.poll(timeout=0)
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise from_os_error(err, f"udevadm monitor --{self.source} (recv)") from err
                _log.warning("uevents lost (ENOBUFS): the daemon will resync")
                found.append(Overrun(SOURCE_NAME, "ENOBUFS: the socket's queue overran"))
                continue
            if device is None:
                break
            try:
                props: Mapping[str, str] = dict(device.properties.items())
            except UnicodeDecodeError as err:  # an interface named with bytes not UTF-8
                _log.warning("undecodable uevent (%s): the daemon will resync", err.reason)
                found.append(Overrun(SOURCE_NAME, f"undecodable uevent: {err.reason}"))
                continue
            event = UdevEvent.from_properties(props)
            if event is None:
                _log.debug("uevent not understood: %s", props)
            else:
                found.append(event)
        return found

    def close(self) -> None:
        self._monitor = None

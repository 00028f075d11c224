"""An sd_notify client without libsystemd: datagrams to $NOTIFY_SOCKET.

Equivalent to ``systemd-notify --ready --status=TEXT`` (and ``--stopping``,
``--reloading``, ``WATCHDOG=1``). With NOTIFY_SOCKET unset (not started by systemd,
or not Type=notify) every method does nothing. A notification that cannot be sent
(systemd gone, the socket removed) is logged, never raised: the daemon's work
does not depend on systemd hearing about it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import unicodedata
from collections.abc import Callable, Mapping
from typing import Final

_log = logging.getLogger(__name__)

STATUS_MAX: Final = 1024  # characters: a status line, not a report
_SUN_PATH_MAX: Final = 107  # sizeof(sockaddr_un.sun_path) - 1 for the NUL


def one_line(text: str, limit: int = STATUS_MAX) -> str:
    """``text`` as one line: white space (newlines too) becomes one space, other
    control characters (C0, DEL, C1) are dropped, and it is cut at ``limit``."""
    kept = []
    for char in text:
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) != "Cc":
            kept.append(char)
    return " ".join("".join(kept).split())[:limit]


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(value: str) -> str | bytes | None:
    """The address NOTIFY_SOCKET names: a path (``/run/systemd/notify``) or an
    abstract name (``@name`` -> ``\\0name``); None for anything else (systemd's
    ``vsock:`` addresses are not supported). The environment's bytes need not be
    UTF-8: Python hands them over with surrogate escapes, which ``os.fsencode`` undoes."""
    raw = os.fsencode(value)
    if raw.startswith(b"/") and len(raw) <= _SUN_PATH_MAX:
        return value
    if raw.startswith(b"@") and 1 < len(raw) <= _SUN_PATH_MAX + 1:
        return b"\0" + raw[1:]
    return None


class Notifier:
    """Sends sd_notify messages to ``address`` (None: a notifier that does nothing).

    ``watchdog_usec``: the watchdog timeout systemd set (WatchdogSec=), for this
    process; None without one.
    """

    def __init__(
        self,
        address: str | bytes | None,
        *,
        watchdog_usec: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._monotonic_usec = monotonic_usec
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, pid: int | None = None) -> Notifier:
        """From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID as systemd sets them.

        The watchdog counts only when WATCHDOG_PID is unset or names ``pid`` (this
        process by default): a child that inherited the variables is not watched.
        """
        raw = environ.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            _log.warning("NOTIFY_SOCKET=%r is no AF_UNIX address; not notifying systemd", raw)
        return cls(
            address, watchdog_usec=_watchdog_usec(environ, os.getpid() if pid is None else pid)
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """How often to send WATCHDOG=1 (seconds): half the timeout, as sd_watchdog_enabled(3)
        advises; None without a watchdog (or without a socket to send it to)."""
        if self.watchdog_usec is None or not self.enabled:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def ready(self, status: str) -> None:
        """``systemd-notify --ready --status=STATUS``: start-up (or a reload) is done."""
        self.send(f"READY=1\nSTATUS={one_line(status)}")

    def status(self, text: str) -> None:
        """``systemd-notify --status=TEXT``: shown by ``systemctl status``."""
        self.send(f"STATUS={one_line(text)}")

    def watchdog(self) -> None:
        """``systemd-notify WATCHDOG=1``: still alive."""
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """``systemd-notify --stopping``: shutting down."""
        self.send("STOPPING=1")

    def reloading(self) -> None:
        """``systemd-notify --reloading``: RELOADING=1 with MONOTONIC_USEC, which
        Type=notify-reload (systemd >= 253) wants; READY=1 ends the reload."""
        self.send(f"RELOADING=1\nMONOTONIC_USEC={self._monotonic_usec()}")

    def send(self, message: str) -> bool:
        """Send one datagram without ever blocking; True when it went out.

        A manager that stops reading its socket fills the queue; a blocking send
        would then stop the event loop for good (seen in the lab with a reader that
        stopped after READY=1). Such a message is dropped instead, and the loop goes on.
        """
        if self.address is None:
            return False
        kind = message.split("=", 1)[0]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            flags = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
            self._sock.sendto(message.encode("utf-8", "replace"), flags, self.address)
        except BlockingIOError:
            level = logging.DEBUG if kind == "STATUS" else logging.WARNING
            _log.log(level, "sd_notify %s dropped: the service manager is not reading", kind)
            return False
        except OSError as err:
            _log.warning("sd_notify %s failed: %s", kind, err)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isascii() or not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isascii() or not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec)

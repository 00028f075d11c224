"""Link notifications from the kernel: a NETLINK_ROUTE socket in RTMGRP_LINK.

Equivalent to: ``ip monitor link``. Non-blocking; the loop selects on
:meth:`RtnlMonitor.fileno` and calls :meth:`RtnlMonitor.drain`. What the socket
lost is reported as an :class:`~qtagent.daemon.events.Overrun`, so the daemon
re-enumerates: the kernel's ENOBUFS (the receive buffer overran while the daemon
was busy), a datagram cut by the buffer, or one that does not decode. Messages not
sent by the kernel (netlink port id 0), which another local process could unicast
to this socket, are dropped.
"""

from __future__ import annotations

import errno
import logging
import socket
from types import TracebackType
from typing import Final

from qtagent.daemon.events import LinkEvent, Overrun
from qtagent.errors import from_os_error
from qtagent.netlink import rtnl_wire as wire
from qtagent.netlink.link_events import decode_link_events

_log = logging.getLogger(__name__)

SOURCE: Final = "rtnetlink"
RECV_BUFFER: Final = 256 * 1024  # one datagram; a link notification is a few KiB
SOCKET_BUFFER: Final = 4 * 1024 * 1024  # the kernel's queue: a VF count change of 256 VFs
MAX_DATAGRAMS: Final = 1024  # per drain, so one flood cannot starve the other sources


class RtnlMonitor:
    """An open RTMGRP_LINK socket. ``rcvbuf``: the kernel queue's size in bytes
    (SO_RCVBUFFORCE when permitted, else SO_RCVBUF, which the kernel caps)."""

    def __init__(self, *, rcvbuf: int = SOCKET_BUFFER) -> None:
        try:
            sock = socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                socket.NETLINK_ROUTE,
            )
        except OSError as err:
            raise from_os_error(err, "ip monitor link (socket AF_NETLINK NETLINK_ROUTE)") from err
        try:
            _set_rcvbuf(sock, rcvbuf)
            sock.bind((0, wire.RTMGRP_LINK))
        except OSError as err:
            sock.close()
            raise from_os_error(err, "ip monitor link (bind RTMGRP_LINK)") from err
        self._sock = sock
        self._buffer = bytearray(RECV_BUFFER)

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def port_id(self) -> int:
        """The netlink port id the kernel gave this socket."""
        port: int = self._sock.getsockname()[0]
        return port

    def drain(self) -> list[LinkEvent | Overrun]:
        """Every link event queued now, without blocking."""
        found: list[LinkEvent | Overrun] = []
        view = memoryview(self._buffer)
        for _ in range(MAX_DATAGRAMS):
            try:
                size, (port, _groups) = self._sock.recvfrom_into(view, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise from_os_error(err, "ip monitor link (recv)") from err
                _log.warning("link notifications lost (ENOBUFS): the daemon will resync")
                found.append(Overrun(SOURCE, "ENOBUFS: the socket's queue overran"))
                continue
            if port != 0:
                _log.debug("dropped a netlink message from port %d, not the kernel", port)
                continue
            if size > len(view):
                found.append(Overrun(SOURCE, f"a {size}-byte datagram was cut"))
                continue
            try:
                found += decode_link_events(view[:size])
            except wire.WireError as err:
                _log.warning("undecodable link notification: %s", err)
                found.append(Overrun(SOURCE, f"undecodable message: {err}"))
        return found

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtnlMonitor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

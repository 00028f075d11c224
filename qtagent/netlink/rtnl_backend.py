"""VfNetlink over a plain AF_NETLINK socket: no third-party import, one socket per object.

The wire format lives in :mod:`qtagent.netlink.rtnl_wire`; this module only sends,
receives and maps errno. It exists next to the pyroute2 backend because importing
pyroute2 costs about 0.3 s on the host and 13-60 s inside the TCG lab guest, and its
generic request layer made a 256-knob request about 7x slower than ``ip -batch`` where
this backend took 0.5-1.1x its time (bench/bench_vf_knobs.py, docs/adr/0004).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Mapping
from functools import partial
from types import TracebackType

from qtagent.errors import KernelError, Timeout
from qtagent.model.host import VfSettings
from qtagent.model.types import check_ifindex, check_vf_index
from qtagent.netlink import rtnl_wire as wire
from qtagent.netlink.api import Knob, KnobValue
from qtagent.netlink.errors import netlink_error
from qtagent.netlink.knob_values import check_knob_value, knob_value
from qtagent.netlink.shell import link_name, set_command

log = logging.getLogger(__name__)

RECV_BUFFER = 256 * 1024  # a GETLINK reply with VF info stays below 64 KiB + headers
TIMEOUT_S = 10.0  # a kernel that does not answer an rtnetlink request within this is stuck


class RtnlVfNetlink:
    """VF settings through one NETLINK_ROUTE socket, opened on first use.

    Not thread-safe (one socket, one receive buffer): use one object per thread.
    """

    def __init__(self, *, timeout_s: float = TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._seq = 0
        self._buffer = bytearray(RECV_BUFFER)

    def __enter__(self) -> RtnlVfNetlink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read_vfs(self, pf_ifindex: int) -> Mapping[int, VfSettings]:
        """Every VF's settings. Equivalent to: ``ip link show $pf``."""
        check_ifindex(pf_ifindex)

        def action() -> str:
            return f"ip link show {link_name(pf_ifindex)}"

        reply = self._request(partial(wire.getlink_request, ifindex=pf_ifindex), action)
        if reply.type == wire.NLMSG_ERROR:
            raise netlink_error(wire.error_code(reply) or errno.EPROTO, action())
        try:
            return wire.decode_vfs(reply)
        except wire.WireError as e:
            raise KernelError(
                f"cannot read the VF table of {link_name(pf_ifindex)}: {e}",
                hint="with hundreds of VFs the kernel's VF list overflows its 64 KiB attribute",
            ) from e

    def set_knob(self, pf_ifindex: int, vf: int, knob: Knob, value: KnobValue) -> None:
        """Set one knob of one VF with one RTM_SETLINK carrying one IFLA_VF_* attribute.

        Equivalent to: ``ip link set $pf vf $vf mac $mac`` (or ``vlan $v qos $q``,
        ``spoofchk on|off``, ``trust on|off``, ``state auto|enable|disable``,
        ``min_tx_rate $min max_tx_rate $max``). A rate keeps the other rate at its
        current read-back value, so setting one rate costs one extra read.
        """
        check_ifindex(pf_ifindex)
        check_vf_index(vf)
        check_knob_value(knob, value)
        other = self._other_rate(pf_ifindex, vf, knob)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", set_command(pf_ifindex, vf, knob, value, other))
        attr = wire.vf_attribute(vf, knob, value, other_rate=other)
        build = partial(wire.setlink_vf_request, ifindex=pf_ifindex, vf_attr=attr)
        reply = self._request(build, lambda: set_command(pf_ifindex, vf, knob, value, other))
        code = wire.error_code(reply)
        if code:
            raise netlink_error(code, set_command(pf_ifindex, vf, knob, value, other))

    def _other_rate(self, pf_ifindex: int, vf: int, knob: Knob) -> int:
        if knob not in (Knob.MAX_TX_RATE, Knob.MIN_TX_RATE):
            return 0
        other = Knob.MIN_TX_RATE if knob is Knob.MAX_TX_RATE else Knob.MAX_TX_RATE
        settings = self.read_vfs(pf_ifindex).get(vf)
        value = knob_value(settings, other) if settings is not None else None
        return value if isinstance(value, int) else 0

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            try:
                sock.bind((0, 0))
                sock.settimeout(self._timeout_s)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _request(self, build: Callable[[int], bytes], action: Callable[[], str]) -> wire.Reply:
        """Send the request ``build(seq)``; return the reply carrying its sequence number
        (the answer or an NLMSG_ERROR). Replies to earlier, abandoned requests are skipped."""
        seq = self._next_seq()
        sock = self._socket()
        try:
            sock.send(build(seq))
            while True:
                size = sock.recv_into(self._buffer, 0, socket.MSG_TRUNC)
                if size > len(self._buffer):
                    raise KernelError(f"{action()}: a reply of {size} bytes does not fit")
                for reply in wire.replies(memoryview(self._buffer)[:size]):
                    if reply.seq == seq:
                        return reply
        except TimeoutError as e:
            raise Timeout(f"{action()}: no answer from the kernel in {self._timeout_s} s") from e
        except OSError as e:
            raise netlink_error(e.errno or errno.EIO, action()) from e
        except wire.WireError as e:
            raise KernelError(f"{action()}: unreadable reply: {e}") from e

"""Names for log lines and messages written as the equivalent iproute2 command."""

from __future__ import annotations

import socket

from qtagent.netlink.api import Knob, KnobValue
from qtagent.netlink.knob_values import shell_args


def link_name(ifindex: int) -> str:
    """The interface's current name, or ``if<N>`` (which iproute2 also accepts) when
    it has none any more. Names change (FIELD-CASES C10): use for text only."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"if{ifindex}"


def set_command(pf_ifindex: int, vf: int, knob: Knob, value: KnobValue, other_rate: int = 0) -> str:
    """``ip link set $pf vf $vf <knob> <value>``: the shell form of one knob change."""
    args = shell_args(knob, value, other_rate=other_rate)
    return f"ip link set {link_name(pf_ifindex)} vf {vf} {args}"

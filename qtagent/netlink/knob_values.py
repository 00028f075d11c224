"""What each VF knob's value is: its type, its neutral value, how it reads and prints.

Pure helpers shared by the netlink backends, the test fake and the knob planner.
The shell form is iproute2's: ``ip link set $pf vf $n <knob_args>``.
"""

from __future__ import annotations

from typing import Final

from qtagent.errors import InvalidInput
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress, check_vlan
from qtagent.netlink.api import Knob, KnobValue, Vlan

# Canonical order: security knobs first, rates last (the order knobs are sent in
# when no other rule applies, and the order reports list them in).
KNOB_ORDER: Final = (
    Knob.SPOOFCHK,
    Knob.TRUST,
    Knob.MAC,
    Knob.VLAN,
    Knob.LINK_STATE,
    Knob.MAX_TX_RATE,
    Knob.MIN_TX_RATE,
)

# The value a VF behaves as when its driver lacks the knob: no admin MAC, no VLAN,
# no spoof checking, not trusted, no rate limit or guarantee, link follows the PF.
NEUTRAL: Final[dict[Knob, KnobValue]] = {
    Knob.MAC: ZERO_MAC,
    Knob.VLAN: Vlan(0, 0),
    Knob.SPOOFCHK: False,
    Knob.TRUST: False,
    Knob.MAX_TX_RATE: 0,
    Knob.MIN_TX_RATE: 0,
    Knob.LINK_STATE: LinkState.AUTO,
}

_TYPES: Final[dict[Knob, type]] = {
    Knob.MAC: MacAddress,
    Knob.VLAN: Vlan,
    Knob.SPOOFCHK: bool,
    Knob.TRUST: bool,
    Knob.MAX_TX_RATE: int,
    Knob.MIN_TX_RATE: int,
    Knob.LINK_STATE: LinkState,
}

RATE_MAX: Final = 0xFFFFFFFF  # the kernel carries rates as u32 Mbit/s


def check_knob_value(knob: Knob, value: KnobValue) -> None:
    """Refuse a value of the wrong type or range for ``knob``, before anything is sent."""
    expected = _TYPES[knob]
    wrong_type = not isinstance(value, expected) or (
        expected is int and isinstance(value, bool)  # bool is an int subclass
    )
    if wrong_type:
        raise InvalidInput(
            f"{knob}: {value!r} is not a {expected.__name__}",
            hint=f"give {knob} as a {expected.__name__}",
        )
    if isinstance(value, Vlan):
        check_vlan(value.vlan, value.qos)
    elif isinstance(value, MacAddress) and value.is_multicast:
        raise InvalidInput(
            f"mac {value} is a multicast address",
            hint="a VF MAC must be unicast: the first octet's lowest bit clear",
        )
    elif isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= RATE_MAX:
        raise InvalidInput(
            f"{knob} {value} is out of range", hint="give a rate in Mbit/s, 0 for none"
        )


_FIELDS: Final = {
    Knob.MAC: "mac",
    Knob.SPOOFCHK: "spoofchk",
    Knob.TRUST: "trust",
    Knob.MAX_TX_RATE: "max_tx_rate",
    Knob.MIN_TX_RATE: "min_tx_rate",
    Knob.LINK_STATE: "link_state",
}


def knob_value(settings: VfSettings, knob: Knob) -> KnobValue | None:
    """The value of ``knob`` in ``settings``; None when the driver does not report it."""
    if knob is Knob.VLAN:
        return Vlan(settings.vlan, settings.qos)
    value: KnobValue | None = getattr(settings, _FIELDS[knob])
    return value


def value_text(knob: Knob, value: KnobValue | None) -> str:
    """A value as a person reads it: ``on``, ``100 qos 3``, ``auto``, ``-`` for unknown."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Vlan):
        return f"{value.vlan} qos {value.qos}" if value.qos else str(value.vlan)
    if knob in (Knob.MAX_TX_RATE, Knob.MIN_TX_RATE):
        return f"{value} Mbit/s"
    return str(value)


def shell_args(knob: Knob, value: KnobValue, *, other_rate: int = 0) -> str:
    """The iproute2 arguments after ``ip link set $pf vf $n`` that send this knob.

    Rates travel together (IFLA_VF_RATE), so a rate's shell form names both;
    ``other_rate`` is the one not being changed.
    """
    match knob:
        case Knob.MAC:
            return f"mac {value}"
        case Knob.VLAN:
            assert isinstance(value, Vlan)
            return f"vlan {value.vlan} qos {value.qos}"
        case Knob.SPOOFCHK | Knob.TRUST:
            return f"{knob} {'on' if value else 'off'}"
        case Knob.MAX_TX_RATE:
            return f"min_tx_rate {other_rate} max_tx_rate {value}"
        case Knob.MIN_TX_RATE:
            return f"min_tx_rate {value} max_tx_rate {other_rate}"
        case Knob.LINK_STATE:
            return f"state {value}"

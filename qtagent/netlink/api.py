"""The narrow, typed interface qtagent uses for VF settings over rtnetlink.

Every VF setting goes through the PF (its ifindex) and the VF index, never the
VF's own netdev (FIELD-CASES C10). One call sets one knob: the kernel applies
the attributes of one RTM_SETLINK in order and stops at the first failure,
so sending several at once could leave a VF half-configured without saying so.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress


class Knob(enum.StrEnum):
    """One independently settable VF attribute (one IFLA_VF_* attribute each)."""

    MAC = "mac"
    VLAN = "vlan"  # VLAN id and QoS travel together in IFLA_VF_VLAN
    SPOOFCHK = "spoofchk"
    TRUST = "trust"
    MAX_TX_RATE = "max_tx_rate"
    MIN_TX_RATE = "min_tx_rate"
    LINK_STATE = "link_state"


@dataclass(frozen=True, slots=True)
class Vlan:
    vlan: int
    qos: int = 0


KnobValue = MacAddress | Vlan | bool | int | LinkState


class VfNetlink(Protocol):
    """What qtagent needs from rtnetlink. Implemented by the pyroute2 backend and
    by the in-memory fake in tests/fakes."""

    def read_vfs(self, pf_ifindex: int) -> Mapping[int, VfSettings]:
        """Every VF's settings as the PF driver reports them (``ip link show $pf``)."""
        ...

    def set_knob(self, pf_ifindex: int, vf: int, knob: Knob, value: KnobValue) -> None:
        """Set one knob of one VF (``ip link set $pf vf $vf <knob> <value>``).

        Raises a :class:`qtagent.errors.QtagentError` keeping the kernel's errno.
        """
        ...

    def close(self) -> None: ...

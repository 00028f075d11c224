"""What the operator wants a PF's VFs to look like (pure values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from qtagent.model.host import LinkState


class DriftPolicy(enum.StrEnum):
    """What the daemon does when a PF or its VFs drift from what qtagent set up:
    put it back where that is safe (``repair``), or only say so (``report``)."""

    REPAIR = "repair"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class VfDefaults:
    """Settings every VF of a PF gets when created (from ``qtagent apply``).

    ``None`` leaves a knob as the driver sets it. ``vlan`` 0 means untagged and
    ``qos`` (0-7) needs a VLAN. ``max_tx_rate`` and ``min_tx_rate`` are in Mbit/s,
    0 meaning unlimited. Values are range-checked where they are parsed
    (qtagent.config) and where they are stored (qtagent.store).
    """

    vlan: int | None = None
    qos: int | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    max_tx_rate: int | None = None
    min_tx_rate: int | None = None
    link_state: LinkState | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)

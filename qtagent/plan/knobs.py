"""Plan a VF knob request (FIELD-CASES C5, C6). Pure: a request and a VF's settings in,
the knobs to send out.

Only what differs is sent; a request equal to the VF's settings sends nothing. A knob
the driver does not report, asked for at its default (the value a VF behaves as when
its driver lacks the knob), is settled as "unsupported, nothing sent" - a warning,
not a failure. Knobs are sent one per RTM_SETLINK, required ones first, so a failing
required knob is found before optional ones are touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qtagent.errors import InvalidInput
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress
from qtagent.netlink.api import Knob, KnobValue, Vlan
from qtagent.netlink.knob_values import (
    KNOB_ORDER,
    NEUTRAL,
    check_knob_value,
    knob_value,
    value_text,
)
from qtagent.plan.knob_report import KnobOutcome, KnobResult

# Knobs that guard the host and other tenants: required by default when requested.
SECURITY_KNOBS = frozenset({Knob.SPOOFCHK, Knob.TRUST})


@dataclass(frozen=True, slots=True)
class KnobRequest:
    """What an operator asks of one VF; ``None`` leaves a knob as it is.

    Rates are in Mbit/s (``max_tx_rate`` 0 = unlimited, ``min_tx_rate`` 0 = no
    guarantee). ``qos`` (0-7) needs ``vlan``. ``required`` names the knobs whose
    failure fails the whole request and rolls it back; ``None`` means the requested
    security knobs (spoofchk, trust). Invalid requests raise InvalidInput here,
    before anything is sent.
    """

    mac: MacAddress | None = None
    vlan: int | None = None
    qos: int = 0
    spoofchk: bool | None = None
    trust: bool | None = None
    max_tx_rate: int | None = None
    min_tx_rate: int | None = None
    link_state: LinkState | None = None
    required: frozenset[Knob] | None = None

    def __post_init__(self) -> None:
        if self.qos and self.vlan is None:
            raise InvalidInput("QoS needs a VLAN", hint="give vlan together with qos")
        wanted = self.wanted()
        for knob, value in wanted.items():
            check_knob_value(knob, value)
        if self.required is not None and not self.required <= wanted.keys():
            missing = ", ".join(sorted(self.required - wanted.keys()))
            raise InvalidInput(
                f"required knob(s) {missing} not requested",
                hint="give a value for every knob you mark as required",
            )
        if self.min_tx_rate and self.max_tx_rate and self.min_tx_rate > self.max_tx_rate:
            raise InvalidInput(
                f"min_tx_rate {self.min_tx_rate} is above max_tx_rate {self.max_tx_rate}",
                hint="the guaranteed rate must not exceed the limit (0 = unlimited)",
            )

    def wanted(self) -> dict[Knob, KnobValue]:
        """The requested knobs and values, in canonical order."""
        values: dict[Knob, KnobValue | None] = {
            Knob.SPOOFCHK: self.spoofchk,
            Knob.TRUST: self.trust,
            Knob.MAC: self.mac,
            Knob.VLAN: None if self.vlan is None else Vlan(self.vlan, self.qos),
            Knob.LINK_STATE: self.link_state,
            Knob.MAX_TX_RATE: self.max_tx_rate,
            Knob.MIN_TX_RATE: self.min_tx_rate,
        }
        return {knob: value for knob, value in values.items() if value is not None}

    @property
    def required_knobs(self) -> frozenset[Knob]:
        if self.required is not None:
            return self.required
        return SECURITY_KNOBS & self.wanted().keys()


@dataclass(frozen=True, slots=True)
class KnobStep:
    """One knob to send: ``value`` now, ``previous`` to restore on rollback."""

    knob: Knob
    value: KnobValue
    previous: KnobValue | None
    required: bool


@dataclass(frozen=True, slots=True)
class KnobPlan:
    """``steps`` to send, in order; ``settled``: knobs decided without sending."""

    vf: int
    steps: tuple[KnobStep, ...]
    settled: tuple[KnobResult, ...]


def plan_knobs(vf: int, current: VfSettings, request: KnobRequest) -> KnobPlan:
    """Compare the request with the VF's current settings and decide what to send."""
    required = request.required_knobs
    steps: list[KnobStep] = []
    settled: list[KnobResult] = []
    for knob, value in request.wanted().items():
        previous = knob_value(current, knob)
        is_required = knob in required
        if previous == value:
            settled.append(
                KnobResult(
                    knob,
                    KnobOutcome.UNCHANGED,
                    value,
                    previous,
                    previous,
                    is_required,
                    reason="already set",
                )
            )
        elif previous is None and value == NEUTRAL[knob]:
            settled.append(
                KnobResult(
                    knob,
                    KnobOutcome.UNSUPPORTED,
                    value,
                    required=is_required,
                    reason=(
                        f"the driver does not report {knob}; asked for its default "
                        f"({value_text(knob, value)}): nothing sent"
                    ),
                )
            )
        else:
            steps.append(KnobStep(knob, value, previous, is_required))
    return KnobPlan(vf, _send_order(steps, current), tuple(settled))


def _send_order(steps: Sequence[KnobStep], current: VfSettings) -> tuple[KnobStep, ...]:
    """Required knobs first, then canonical order - except that when both rates change
    and the new max is below the current min, min goes first, so that no request in
    between carries min > max."""
    order = list(KNOB_ORDER)
    new = {step.knob: step.value for step in steps}
    new_max = new.get(Knob.MAX_TX_RATE)
    cur_min = current.min_tx_rate or 0
    if Knob.MIN_TX_RATE in new and isinstance(new_max, int) and 0 < new_max < cur_min:
        order.remove(Knob.MIN_TX_RATE)
        order.insert(order.index(Knob.MAX_TX_RATE), Knob.MIN_TX_RATE)
    return tuple(sorted(steps, key=lambda s: (not s.required, order.index(s.knob))))


def rollback_steps(
    applied: Sequence[KnobStep],
) -> tuple[tuple[KnobStep, ...], tuple[KnobStep, ...]]:
    """Undo ``applied`` (in the order sent): their inverse steps in reverse order, and
    the steps that cannot be undone because their previous value was not reported."""
    undo = tuple(
        KnobStep(step.knob, step.previous, step.value, step.required)
        for step in reversed(applied)
        if step.previous is not None
    )
    impossible = tuple(step for step in applied if step.previous is None)
    return undo, impossible

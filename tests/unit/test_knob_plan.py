"""The pure knob planner: send only what differs, required first, safe rate order."""

from __future__ import annotations

import pytest

from qtagent.errors import InvalidInput
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress
from qtagent.netlink.api import Knob, Vlan
from qtagent.plan.knob_report import KnobOutcome
from qtagent.plan.knobs import KnobRequest, KnobStep, plan_knobs, rollback_steps

MAC = MacAddress.parse("02:11:22:33:44:55")
IGB_DEFAULT = VfSettings(
    mac=ZERO_MAC,
    spoofchk=True,
    trust=False,
    max_tx_rate=0,
    min_tx_rate=0,
    link_state=LinkState.AUTO,
)


def test_equal_request_sends_nothing() -> None:
    current = VfSettings(
        mac=MAC,
        vlan=100,
        qos=3,
        spoofchk=True,
        trust=True,
        max_tx_rate=100,
        min_tx_rate=10,
        link_state=LinkState.ENABLE,
    )
    request = KnobRequest(
        mac=MAC,
        vlan=100,
        qos=3,
        spoofchk=True,
        trust=True,
        max_tx_rate=100,
        min_tx_rate=10,
        link_state=LinkState.ENABLE,
    )
    plan = plan_knobs(0, current, request)
    assert plan.steps == ()
    assert [r.outcome for r in plan.settled] == [KnobOutcome.UNCHANGED] * 7


def test_only_differences_are_sent() -> None:
    request = KnobRequest(mac=MAC, vlan=100, spoofchk=True, trust=True)
    plan = plan_knobs(2, IGB_DEFAULT, request)
    assert [(s.knob, s.value) for s in plan.steps] == [
        (Knob.TRUST, True),
        (Knob.MAC, MAC),
        (Knob.VLAN, Vlan(100, 0)),
    ]
    assert [(r.knob, r.outcome) for r in plan.settled] == [(Knob.SPOOFCHK, KnobOutcome.UNCHANGED)]
    assert plan.steps[1].previous == ZERO_MAC  # what a rollback restores


def test_vlan_and_qos_compare_together() -> None:
    current = VfSettings(vlan=100, qos=0)
    plan = plan_knobs(0, current, KnobRequest(vlan=100, qos=5))
    assert [(s.knob, s.value, s.previous) for s in plan.steps] == [
        (Knob.VLAN, Vlan(100, 5), Vlan(100, 0))
    ]


def test_security_knobs_are_required_by_default_and_go_first() -> None:
    request = KnobRequest(mac=MAC, vlan=7, spoofchk=False, trust=True)
    plan = plan_knobs(0, IGB_DEFAULT, request)
    assert request.required_knobs == {Knob.SPOOFCHK, Knob.TRUST}
    assert [(s.knob, s.required) for s in plan.steps] == [
        (Knob.SPOOFCHK, True),
        (Knob.TRUST, True),
        (Knob.MAC, False),
        (Knob.VLAN, False),
    ]


def test_operator_required_knobs_go_first_and_replace_the_default() -> None:
    request = KnobRequest(mac=MAC, vlan=7, trust=True, required=frozenset({Knob.VLAN}))
    plan = plan_knobs(0, IGB_DEFAULT, request)
    assert [(s.knob, s.required) for s in plan.steps] == [
        (Knob.VLAN, True),
        (Knob.TRUST, False),
        (Knob.MAC, False),
    ]


def test_unreported_knob_asked_at_its_default_is_not_sent() -> None:
    current = VfSettings(mac=ZERO_MAC, spoofchk=None, trust=None)
    plan = plan_knobs(0, current, KnobRequest(spoofchk=False, trust=True))
    assert [s.knob for s in plan.steps] == [Knob.TRUST]  # non-default: the kernel decides
    (settled,) = plan.settled
    assert settled.knob is Knob.SPOOFCHK
    assert settled.outcome is KnobOutcome.UNSUPPORTED
    assert settled.attempts == 0 and not settled.refused  # a warning, not a failure
    assert "nothing sent" in settled.reason


def test_lowering_max_below_current_min_sends_min_first() -> None:
    current = VfSettings(max_tx_rate=1000, min_tx_rate=500)
    plan = plan_knobs(0, current, KnobRequest(max_tx_rate=200, min_tx_rate=100))
    assert [s.knob for s in plan.steps] == [Knob.MIN_TX_RATE, Knob.MAX_TX_RATE]


def test_raising_rates_sends_max_first() -> None:
    current = VfSettings(max_tx_rate=100, min_tx_rate=50)
    plan = plan_knobs(0, current, KnobRequest(max_tx_rate=1000, min_tx_rate=500))
    assert [s.knob for s in plan.steps] == [Knob.MAX_TX_RATE, Knob.MIN_TX_RATE]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"qos": 3}, "QoS needs a VLAN"),
        ({"vlan": 4095}, "out of range"),
        ({"vlan": 10, "qos": 8}, "out of range"),
        ({"mac": MacAddress.parse("01:00:5e:00:00:01")}, "multicast"),
        ({"max_tx_rate": -1}, "out of range"),
        ({"max_tx_rate": 10, "min_tx_rate": 20}, "above max_tx_rate"),
        ({"mac": MAC, "required": frozenset({Knob.TRUST})}, "not requested"),
        ({"spoofchk": 1}, "not a bool"),
        ({"max_tx_rate": True}, "not a int"),
    ],
)
def test_invalid_requests_are_refused_before_planning(
    kwargs: dict[str, object], words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        KnobRequest(**kwargs)  # type: ignore[arg-type]


def test_rollback_restores_previous_values_in_reverse_order() -> None:
    applied = [
        KnobStep(Knob.TRUST, True, False, True),
        KnobStep(Knob.MAC, MAC, ZERO_MAC, False),
        KnobStep(Knob.SPOOFCHK, True, None, False),
    ]
    undo, impossible = rollback_steps(applied)
    assert [(s.knob, s.value) for s in undo] == [(Knob.MAC, ZERO_MAC), (Knob.TRUST, False)]
    assert [s.knob for s in impossible] == [Knob.SPOOFCHK]

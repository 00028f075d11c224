"""Applying VF knobs against the in-memory fake kernel (FIELD-CASES C5, C6)."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest

from qtagent.effects.knobs import KnobsNotApplied, apply_knobs, apply_knobs_many
from qtagent.effects.knobs_retry import RetryPolicy
from qtagent.errors import KernelError, NotFound
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress
from qtagent.netlink.api import Knob, Vlan
from qtagent.netlink.knob_values import knob_value
from qtagent.plan.knob_report import KnobOutcome, KnobReport, Rollback
from qtagent.plan.knobs import KnobRequest
from tests.fakes.netlink import IGB, NETDEVSIM, DriverProfile, FakeVfNetlink

PF = 3
MAC = MacAddress.parse("02:11:22:33:44:55")
C6_REQUEST = KnobRequest(
    mac=MAC,
    vlan=100,
    spoofchk=True,
    trust=True,
    link_state=LinkState.ENABLE,
    max_tx_rate=100,
    min_tx_rate=10,
)


class FakeTime:
    """A clock that only moves when slept on, recording each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


def kernel(profile: DriverProfile = IGB, num_vfs: int = 4) -> FakeVfNetlink:
    nl = FakeVfNetlink()
    nl.add_pf(PF, profile, num_vfs, name="pf0")
    return nl


def apply(nl: FakeVfNetlink, request: KnobRequest, time_: FakeTime, vf: int = 0) -> KnobReport:
    return apply_knobs(nl, PF, vf, request, pf_name="pf0", sleep=time_.sleep, clock=time_.clock)


def outcomes(report: KnobReport) -> dict[Knob, KnobOutcome]:
    return {r.knob: r.outcome for r in report.results}


def assert_matches_readback(report: KnobReport, nl: FakeVfNetlink, vf: int = 0) -> None:
    """Each knob's read-back in the report is what the kernel holds now, and an
    applied or unchanged knob holds its requested value."""
    now = nl.read_vfs(PF)[vf]
    for r in report.results:
        assert r.readback == knob_value(now, r.knob), r.knob
        if (
            r.outcome in (KnobOutcome.APPLIED, KnobOutcome.UNCHANGED)
            and r.rollback is Rollback.NONE
        ):
            assert r.confirmed, r.knob


# -- C5: transient errors ------------------------------------------------------------


def test_c5_ebusy_twice_then_success_is_applied_after_retry_and_read_back(
    time_: FakeTime,
) -> None:
    nl = kernel()
    nl.fail_next(PF, 0, Knob.MAC, errno.EBUSY, times=2)
    report = apply(nl, KnobRequest(mac=MAC, required=frozenset({Knob.MAC})), time_)
    result = report.result(Knob.MAC)
    assert result.outcome is KnobOutcome.APPLIED
    assert result.attempts == 3
    assert result.confirmed and result.readback == MAC
    assert time_.sleeps == [0.05, 0.1]  # bounded exponential backoff
    assert nl.read_vfs(PF)[0].mac == MAC
    assert report.complete


def test_c5_eagain_is_transient_too(time_: FakeTime) -> None:
    nl = kernel()
    nl.fail_next(PF, 0, Knob.TRUST, errno.EAGAIN, times=1)
    report = apply(nl, KnobRequest(trust=True), time_)
    assert report.result(Knob.TRUST).outcome is KnobOutcome.APPLIED
    assert report.result(Knob.TRUST).attempts == 2


def test_c5_busy_forever_stops_at_the_bound(time_: FakeTime) -> None:
    nl = kernel()
    nl.fail_next(PF, 0, Knob.VLAN, errno.EBUSY, times=100)
    report = apply(nl, KnobRequest(vlan=10), time_)  # optional: reported, not raised
    result = report.result(Knob.VLAN)
    assert result.outcome is KnobOutcome.REJECTED
    assert result.errno == errno.EBUSY
    assert result.attempts == 5
    assert time_.sleeps == [0.05, 0.1, 0.2, 0.4]  # 0.75 s in all
    assert "still busy after 5 attempts" in result.reason
    assert nl.read_vfs(PF)[0].vlan == 0


def test_c5_retry_budget_bounds_the_wall_time(time_: FakeTime) -> None:
    nl = kernel()
    nl.fail_next(PF, 0, Knob.VLAN, errno.EBUSY, times=100)
    policy = RetryPolicy(attempts=50, first_delay_s=0.1, factor=2.0, budget_s=1.0)
    apply_knobs(nl, PF, 0, KnobRequest(vlan=10), retry=policy, sleep=time_.sleep, clock=time_.clock)
    assert sum(time_.sleeps) <= 1.0
    assert time_.sleeps == [0.1, 0.2, 0.4]


def test_c5_einval_is_not_retried_and_the_assignment_is_rolled_back(time_: FakeTime) -> None:
    nl = kernel()
    before = nl.read_vfs(PF)[0]
    nl.fail_next(PF, 0, Knob.VLAN, errno.EINVAL)
    request = KnobRequest(
        mac=MAC, vlan=100, trust=True, required=frozenset({Knob.TRUST, Knob.MAC, Knob.VLAN})
    )
    with pytest.raises(KnobsNotApplied) as caught:
        apply(nl, request, time_)
    (report,) = caught.value.reports
    vlan = report.result(Knob.VLAN)
    assert vlan.outcome is KnobOutcome.REJECTED
    assert vlan.errno == errno.EINVAL and vlan.attempts == 1
    assert time_.sleeps == []
    assert report.result(Knob.TRUST).rollback is Rollback.ROLLED_BACK
    assert report.result(Knob.MAC).rollback is Rollback.ROLLED_BACK
    assert nl.read_vfs(PF)[0] == before
    assert caught.value.errno == errno.EINVAL
    assert "rolled back" in str(caught.value)
    assert_matches_readback(report, nl)
    # sent: trust, mac, vlan (refused), then the undo in reverse order: mac, trust
    assert [k for _, k, _ in nl.sent_knobs()] == [
        Knob.TRUST,
        Knob.MAC,
        Knob.VLAN,
        Knob.MAC,
        Knob.TRUST,
    ]


# -- C6: knobs the driver lacks --------------------------------------------------------


def test_c6_igb_answers_per_knob_and_matches_read_back(time_: FakeTime) -> None:
    nl = kernel(IGB)
    nl.set_vf(PF, 0, spoofchk=False)  # so that spoofchk on is really sent
    report = apply(nl, C6_REQUEST, time_)
    assert outcomes(report) == {
        Knob.SPOOFCHK: KnobOutcome.APPLIED,
        Knob.TRUST: KnobOutcome.APPLIED,
        Knob.MAC: KnobOutcome.APPLIED,
        Knob.VLAN: KnobOutcome.APPLIED,
        Knob.LINK_STATE: KnobOutcome.UNSUPPORTED,
        Knob.MAX_TX_RATE: KnobOutcome.APPLIED,
        Knob.MIN_TX_RATE: KnobOutcome.REJECTED,
    }
    assert report.result(Knob.LINK_STATE).errno == errno.EOPNOTSUPP
    assert report.result(Knob.LINK_STATE).readback is LinkState.AUTO
    assert report.result(Knob.MIN_TX_RATE).errno == errno.EINVAL
    assert report.result(Knob.MIN_TX_RATE).readback == 0
    assert not report.complete and report.half_configured  # said so, not raised: optional
    assert len(report.warnings()) == 2
    assert_matches_readback(report, nl)
    assert time_.sleeps == []  # neither EOPNOTSUPP nor EINVAL is retried
    assert [k for _, k, _ in nl.sent_knobs()].count(Knob.MIN_TX_RATE) == 1


def test_c6_igb_max_rate_needs_the_pf_link_up(time_: FakeTime) -> None:
    nl = kernel(IGB)
    nl.pfs[PF].link_up = False
    report = apply(nl, KnobRequest(max_tx_rate=100), time_)
    assert report.result(Knob.MAX_TX_RATE).outcome is KnobOutcome.REJECTED
    nl.pfs[PF].link_up = True
    report = apply(nl, KnobRequest(max_tx_rate=100), time_)
    assert report.result(Knob.MAX_TX_RATE).outcome is KnobOutcome.APPLIED


def test_c6_netdevsim_accepts_every_knob(time_: FakeTime) -> None:
    nl = kernel(NETDEVSIM)
    report = apply(nl, C6_REQUEST, time_)
    assert set(outcomes(report).values()) == {KnobOutcome.APPLIED}
    assert report.complete and not report.half_configured
    assert nl.read_vfs(PF)[0] == VfSettings(
        mac=MAC,
        vlan=100,
        qos=0,
        spoofchk=True,
        trust=True,
        max_tx_rate=100,
        min_tx_rate=10,
        link_state=LinkState.ENABLE,
    )
    assert_matches_readback(report, nl)


NO_SPOOFCHK = DriverProfile(
    name="nospoof",
    defaults=dataclasses.replace(IGB.defaults, spoofchk=None),
    unsupported={Knob.SPOOFCHK: errno.EOPNOTSUPP},
    unreported=frozenset({Knob.SPOOFCHK}),
)


def test_c6_required_security_knob_unsupported_fails_and_rolls_back(time_: FakeTime) -> None:
    nl = kernel(NO_SPOOFCHK)
    before = nl.read_vfs(PF)[0]
    request = KnobRequest(mac=MAC, vlan=100, spoofchk=True, trust=True)
    with pytest.raises(KnobsNotApplied) as caught:
        apply(nl, request, time_)
    err = caught.value
    (report,) = err.reports
    assert report.result(Knob.SPOOFCHK).outcome is KnobOutcome.UNSUPPORTED
    assert report.result(Knob.SPOOFCHK).required
    # spoofchk went first (required, canonical order): nothing else was touched
    assert outcomes(report)[Knob.TRUST] is KnobOutcome.SKIPPED
    assert outcomes(report)[Knob.MAC] is KnobOutcome.SKIPPED
    assert nl.read_vfs(PF)[0] == before
    assert err.status == 422 and err.exit_code == 5
    assert "spoofchk on (unsupported)" in str(err)
    assert "KNOB" in err.diagnostics()  # the per-knob table
    json.dumps(err.to_dict())


def test_c6_unsupported_knob_at_its_default_only_warns_and_sends_nothing(
    time_: FakeTime,
) -> None:
    nl = kernel(NO_SPOOFCHK)
    report = apply(nl, KnobRequest(mac=MAC, spoofchk=False), time_)  # spoofchk required
    spoof = report.result(Knob.SPOOFCHK)
    assert spoof.outcome is KnobOutcome.UNSUPPORTED and spoof.attempts == 0
    assert report.failed_required == ()
    assert [k for _, k, _ in nl.sent_knobs()] == [Knob.MAC]
    assert any("nothing sent" in line for line in report.warnings())


def test_c6_failed_rollback_says_the_vf_is_half_configured(time_: FakeTime) -> None:
    nl = kernel(IGB)
    nl.fail_next(PF, 0, Knob.TRUST, errno.EINVAL, after=1)  # the undo of trust fails
    nl.fail_next(PF, 0, Knob.MAC, errno.EINVAL)
    request = KnobRequest(mac=MAC, trust=True, required=frozenset({Knob.TRUST, Knob.MAC}))
    with pytest.raises(KnobsNotApplied) as caught:
        apply(nl, request, time_)
    (report,) = caught.value.reports
    trust = report.result(Knob.TRUST)
    assert trust.rollback is Rollback.FAILED
    assert trust.readback is True
    assert "restoring off failed" in trust.reason
    assert "HALF-CONFIGURED" in str(caught.value)
    assert report.half_configured
    assert_matches_readback(report, nl)


def test_a_driver_that_ignores_a_required_knob_is_caught_by_read_back(time_: FakeTime) -> None:
    liar = dataclasses.replace(NETDEVSIM, ignored=frozenset({Knob.TRUST}))
    nl = kernel(liar)
    request = KnobRequest(mac=MAC, trust=True, required=frozenset({Knob.TRUST, Knob.MAC}))
    with pytest.raises(KnobsNotApplied) as caught:
        apply(nl, request, time_)
    (report,) = caught.value.reports
    trust = report.result(Knob.TRUST)
    assert trust.outcome is KnobOutcome.REJECTED and trust.errno is None
    assert "reads back off" in trust.reason
    assert report.result(Knob.MAC).rollback is Rollback.ROLLED_BACK
    assert nl.reads == 3  # before, after, after the rollback
    assert nl.read_vfs(PF)[0].mac == ZERO_MAC


def test_an_optional_knob_the_driver_does_not_report_is_applied_unconfirmed(
    time_: FakeTime,
) -> None:
    hides_trust = dataclasses.replace(NETDEVSIM, unreported=frozenset({Knob.TRUST}))
    nl = kernel(hides_trust)
    report = apply(nl, KnobRequest(trust=True, required=frozenset()), time_)
    trust = report.result(Knob.TRUST)
    assert trust.outcome is KnobOutcome.APPLIED and not trust.confirmed
    assert "cannot confirm" in trust.reason


def test_a_required_knob_must_be_confirmed(time_: FakeTime) -> None:
    hides_trust = dataclasses.replace(NETDEVSIM, unreported=frozenset({Knob.TRUST}))
    nl = kernel(hides_trust)
    with pytest.raises(KnobsNotApplied) as caught:
        apply(nl, KnobRequest(trust=True), time_)
    (report,) = caught.value.reports
    assert report.result(Knob.TRUST).outcome is KnobOutcome.REJECTED
    assert report.result(Knob.TRUST).rollback is Rollback.FAILED  # previous was unknown
    assert "HALF-CONFIGURED" in str(caught.value)


# -- requests, reads and reports -------------------------------------------------------


def test_equal_request_sends_nothing_and_reads_once(time_: FakeTime) -> None:
    nl = kernel(IGB)
    report = apply(nl, KnobRequest(mac=ZERO_MAC, vlan=0, spoofchk=True, trust=False), time_)
    assert set(outcomes(report).values()) == {KnobOutcome.UNCHANGED}
    assert nl.sent == [] and nl.reads == 1


def test_many_vfs_read_the_table_twice_in_all(time_: FakeTime) -> None:
    nl = kernel(NETDEVSIM, num_vfs=16)
    requests = {
        vf: KnobRequest(mac=MacAddress(bytes([2, 0, 0, 0, 0, vf])), vlan=vf + 1, trust=True)
        for vf in range(16)
    }
    reports = apply_knobs_many(nl, PF, requests, sleep=time_.sleep, clock=time_.clock)
    assert [r.vf for r in reports] == list(range(16))
    assert all(r.complete for r in reports)
    assert nl.reads == 2
    assert len(nl.sent) == 16 * 3
    assert nl.read_vfs(PF)[9].vlan == 10


def test_a_failing_vf_rolls_back_alone(time_: FakeTime) -> None:
    nl = kernel(NETDEVSIM, num_vfs=3)
    nl.fail_next(PF, 1, Knob.MAC, errno.EINVAL)
    req = KnobRequest(mac=MAC, trust=True, required=frozenset({Knob.MAC, Knob.TRUST}))
    with pytest.raises(KnobsNotApplied) as caught:
        apply_knobs_many(nl, PF, dict.fromkeys(range(3), req), sleep=time_.sleep, clock=time_.clock)
    reports = caught.value.reports
    assert [r.complete for r in reports] == [True, False, True]
    state = nl.read_vfs(PF)
    assert state[0].trust and state[2].trust and not state[1].trust
    assert "vf 1" in str(caught.value) and "vf 0" not in str(caught.value)


def test_missing_vf_is_refused_before_anything_is_sent(time_: FakeTime) -> None:
    nl = kernel(IGB, num_vfs=2)
    with pytest.raises(NotFound, match="no VF 5"):
        apply_knobs_many(nl, PF, {0: KnobRequest(trust=True), 5: KnobRequest(trust=True)})
    assert nl.sent == []


def test_unknown_pf_is_not_found() -> None:
    with pytest.raises(NotFound):
        apply_knobs(kernel(), 99, 0, KnobRequest(trust=True))


def test_transient_read_is_retried(time_: FakeTime) -> None:
    nl = kernel(IGB)
    nl.fail_next_read(PF, errno.EBUSY, times=2)
    report = apply(nl, KnobRequest(trust=True), time_)
    assert report.complete
    assert time_.sleeps == [0.05, 0.1]


def test_read_back_failure_says_the_vf_may_be_half_configured(time_: FakeTime) -> None:
    nl = kernel(IGB)
    nl.fail_next_read(PF, errno.EIO, after=1)  # the read before works, the read-back not
    with pytest.raises(KernelError, match="may be half-configured"):
        apply(nl, KnobRequest(trust=True), time_)
    assert nl.read_vfs(PF)[0].trust is True  # it was sent


def test_report_serialises_and_prints(time_: FakeTime) -> None:
    nl = kernel(IGB)
    report = apply(nl, C6_REQUEST, time_)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["vf"] == 0 and not data["complete"]
    by_knob = {k["knob"]: k for k in data["knobs"]}
    assert by_knob["link_state"]["errno"] == "EOPNOTSUPP"
    assert by_knob["min_tx_rate"]["outcome"] == "rejected"
    assert by_knob["vlan"]["readback"] == "100"
    table = report.table().splitlines()
    assert table[0].split() == ["KNOB", "REQUESTED", "OUTCOME", "READ", "BACK", "DETAIL"]
    assert any(line.startswith("trust*") for line in table)
    assert Vlan(100, 0) == report.result(Knob.VLAN).readback


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"first_delay_s": -1.0}, {"factor": 0.5}, {"budget_s": -1.0}]
)
def test_unbounded_or_senseless_retry_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="unusable retry policy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]

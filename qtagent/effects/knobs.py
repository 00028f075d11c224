"""Apply VF knob requests over netlink, knob by knob, with read-back (FIELD-CASES C5, C6).

For each VF: plan (send only what differs), send each knob in its own RTM_SETLINK,
retry transient errors (EBUSY/EAGAIN) within a bound, never retry EINVAL, then read
back and confirm. When a required knob fails, the knobs this request already applied
to that VF are restored to their previous values and :class:`KnobsNotApplied` is
raised with every knob's outcome. A VF left half-configured is always said so: in the
report (optional knobs that failed) or in the error (a rollback that failed).

The VF table is read once before and once after the whole request - not once per
knob - whatever the number of VFs: the kernel returns every VF of the PF in one
message, and each knob is confirmed against that single read.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from qtagent.effects.knobs_retry import RetryPolicy, retry_transient
from qtagent.errors import (
    KernelError,
    NotFound,
    QtagentError,
    TransientKernelError,
    Unsupported,
)
from qtagent.model.host import VfSettings
from qtagent.netlink.api import Knob, KnobValue, VfNetlink
from qtagent.netlink.knob_values import KNOB_ORDER, knob_value, value_text
from qtagent.netlink.shell import link_name
from qtagent.plan.knob_report import KnobOutcome, KnobReport, KnobResult, Rollback
from qtagent.plan.knobs import KnobPlan, KnobRequest, KnobStep, plan_knobs, rollback_steps

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()


class KnobsNotApplied(QtagentError):
    """A required VF knob could not be applied. ``reports`` holds every VF's per-knob
    outcomes (including the VFs that succeeded)."""

    status = 502
    exit_code = 6

    def __init__(self, reports: Sequence[KnobReport]) -> None:
        self.reports = tuple(reports)
        failed = [r for r in self.reports if r.failed_required]
        super().__init__(
            "; ".join(_failure_line(r) for r in failed),
            hint="see each knob's outcome below; optional knobs do not fail a request "
            "(mark fewer knobs required, or use a PF whose driver has them)",
            errno=next((k.errno for r in failed for k in r.failed_required if k.errno), None),
        )
        if all(k.outcome is KnobOutcome.UNSUPPORTED for r in failed for k in r.failed_required):
            self.status, self.exit_code = Unsupported.status, Unsupported.exit_code

    def diagnostics(self) -> str:
        tables = "\n".join(f"{r.pf} vf {r.vf}:\n{r.table()}" for r in self.reports)
        return f"{super().diagnostics()}\n{tables}"

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "reports": [r.to_dict() for r in self.reports]}


def _failure_line(report: KnobReport) -> str:
    knobs = ", ".join(
        f"{k.knob} {value_text(k.knob, k.requested)} ({k.outcome})" for k in report.failed_required
    )
    stuck = [k for k in report.results if k.rollback is Rollback.FAILED]
    if stuck:
        state = "VF LEFT HALF-CONFIGURED, rollback failed for " + ", ".join(
            f"{k.knob} (now {value_text(k.knob, k.readback)})" for k in stuck
        )
    elif report.rolled_back:
        state = "the knobs applied before were rolled back"
    else:
        state = "nothing had been changed"
    return f"{report.pf} vf {report.vf}: required {knobs} failed; {state}"


def apply_knobs(
    nl: VfNetlink,
    pf_ifindex: int,
    vf: int,
    request: KnobRequest,
    *,
    pf_name: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    unsupported: Mapping[Knob, str] | None = None,
) -> KnobReport:
    """Apply ``request`` to one VF; see :func:`apply_knobs_many`."""
    (report,) = apply_knobs_many(
        nl, pf_ifindex, {vf: request}, pf_name=pf_name, retry=retry, sleep=sleep, clock=clock,
        unsupported=unsupported,
    )  # fmt: skip
    return report


def apply_knobs_many(
    nl: VfNetlink,
    pf_ifindex: int,
    requests: Mapping[int, KnobRequest],
    *,
    pf_name: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    unsupported: Mapping[Knob, str] | None = None,
) -> tuple[KnobReport, ...]:
    """Apply a request to each of several VFs of one PF; reports in VF order.

    Each VF is its own request: a required knob failing on one VF rolls back that VF
    only. Raises NotFound before sending anything when a VF does not exist, and
    KnobsNotApplied (carrying every report) when any VF's required knob failed.
    ``unsupported``: knobs the PF's driver is known to lack (knob -> how it is known);
    they are answered unsupported without being sent.
    """
    kernel = _Kernel(nl, pf_ifindex, retry, sleep, clock, unsupported=unsupported or {})
    name = pf_name or link_name(pf_ifindex)
    before = kernel.read()
    missing = sorted(set(requests) - before.keys())
    if missing:
        raise NotFound(
            f"{name} has no VF {', '.join(map(str, missing))}",
            hint=f"it has {len(before)} VFs" if before else "it has no VFs",
        )
    runs = [_VfRun(plan_knobs(vf, before[vf], requests[vf])) for vf in sorted(requests)]
    for run in runs:
        run.send_all(kernel)
    if not any(run.plan.steps for run in runs):
        return _finish(tuple(run.report(name, before.get(run.plan.vf)) for run in runs))
    try:
        after = kernel.read()
    except QtagentError as e:
        raise KernelError(
            f"knobs were sent to {name} but cannot be read back: the VFs may be half-configured",
            hint="check with: ip link show " + name,
            errno=e.errno,
        ) from e
    if any([run.confirm(after.get(run.plan.vf), kernel) for run in runs]):
        after = kernel.read()
    return _finish(tuple(run.report(name, after.get(run.plan.vf)) for run in runs))


def _finish(reports: tuple[KnobReport, ...]) -> tuple[KnobReport, ...]:
    for report in reports:
        for line in report.warnings():
            log.warning("%s", line)
    if any(report.failed_required for report in reports):
        raise KnobsNotApplied(reports)
    return reports


@dataclass(frozen=True, slots=True)
class _Sent:
    """How sending one step ended."""

    outcome: KnobOutcome
    attempts: int = 0
    errno: int | None = None
    reason: str = ""


class _Kernel:
    """The netlink backend with retries, for one PF."""

    def __init__(
        self,
        nl: VfNetlink,
        pf_ifindex: int,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        *,
        unsupported: Mapping[Knob, str],
    ) -> None:
        self.nl, self.pf_ifindex, self.retry, self.sleep, self.clock = (
            nl,
            pf_ifindex,
            retry,
            sleep,
            clock,
        )
        self.unsupported = unsupported

    def read(self) -> Mapping[int, VfSettings]:
        box: list[Mapping[int, VfSettings]] = []
        done = retry_transient(
            lambda: box.append(self.nl.read_vfs(self.pf_ifindex)),
            self.retry,
            sleep=self.sleep,
            clock=self.clock,
        )
        if done.error is not None:
            raise done.error
        return box[0]

    def send(self, vf: int, step: KnobStep) -> _Sent:
        known = self.unsupported.get(step.knob)
        if known is not None:
            return _Sent(KnobOutcome.UNSUPPORTED, 0, errno.EOPNOTSUPP, f"not sent: {known}")
        done = retry_transient(
            lambda: self.nl.set_knob(self.pf_ifindex, vf, step.knob, step.value),
            self.retry,
            sleep=self.sleep,
            clock=self.clock,
        )
        err = done.error
        if err is None:
            note = f"applied after {done.attempts} attempts" if done.attempts > 1 else ""
            return _Sent(KnobOutcome.APPLIED, done.attempts, reason=note)
        if isinstance(err, Unsupported):
            what = "protocol" if err.errno == errno.EPROTONOSUPPORT else "setting"
            reason = f"the driver does not support this VF {what}"
            return _Sent(KnobOutcome.UNSUPPORTED, done.attempts, err.errno, reason)
        if isinstance(err, TransientKernelError):
            reason = f"still busy after {done.attempts} attempts over {done.waited_s:.2f} s"
        elif err.errno == errno.EINVAL:
            reason = "the driver rejected this value"
        else:
            reason = err.message
        return _Sent(KnobOutcome.REJECTED, done.attempts, err.errno, reason)


@dataclass
class _VfRun:
    """The state of one VF's request while it runs."""

    plan: KnobPlan
    sent: dict[Knob, _Sent] = field(default_factory=dict)
    applied: list[KnobStep] = field(default_factory=list)
    rollback: dict[Knob, tuple[Rollback, str]] = field(default_factory=dict)

    def send_all(self, kernel: _Kernel) -> None:
        for i, step in enumerate(self.plan.steps):
            sent = kernel.send(self.plan.vf, step)
            self.sent[step.knob] = sent
            if sent.outcome is KnobOutcome.APPLIED:
                self.applied.append(step)
            elif step.required:
                for later in self.plan.steps[i + 1 :]:
                    reason = f"not sent: required {step.knob} failed first"
                    self.sent[later.knob] = _Sent(KnobOutcome.SKIPPED, reason=reason)
                self._roll_back(kernel)
                return

    def confirm(self, settings: VfSettings | None, kernel: _Kernel) -> bool:
        """Check every applied knob against the read-back; roll back when a required one
        does not show. True when something was sent since the read-back."""
        if self.rollback:
            return False
        unconfirmed_required = False
        for step in self.applied:
            seen = knob_value(settings, step.knob) if settings is not None else None
            if seen == step.value:
                continue
            sent = self.sent[step.knob]
            if seen is None and not step.required:
                reason = "accepted; the driver does not report it, so read-back cannot confirm it"
                self.sent[step.knob] = _Sent(KnobOutcome.APPLIED, sent.attempts, reason=reason)
                continue
            reason = (
                f"accepted, but reads back {value_text(step.knob, seen)}"
                if seen is not None
                else "accepted, but the driver does not report it: a required knob "
                "must be confirmed by read-back"
            )
            self.sent[step.knob] = _Sent(KnobOutcome.REJECTED, sent.attempts, None, reason)
            unconfirmed_required |= step.required
        if unconfirmed_required:
            self._roll_back(kernel)
        return unconfirmed_required

    def _roll_back(self, kernel: _Kernel) -> None:
        undo, impossible = rollback_steps(self.applied)
        for step in impossible:
            reason = "its previous value was not reported, so it cannot be restored"
            self.rollback[step.knob] = (Rollback.FAILED, reason)
        for step in undo:
            sent = kernel.send(self.plan.vf, step)
            if sent.outcome is KnobOutcome.APPLIED:
                self.rollback[step.knob] = (Rollback.ROLLED_BACK, "")
            else:
                errno_note = f" [{errno.errorcode.get(sent.errno, '')}]" if sent.errno else ""
                self.rollback[step.knob] = (
                    Rollback.FAILED,
                    f"restoring {value_text(step.knob, step.value)} failed: "
                    f"{sent.reason}{errno_note}",
                )

    def report(self, pf: str, settings: VfSettings | None) -> KnobReport:
        settled = {result.knob: result for result in self.plan.settled}
        steps = {step.knob: step for step in self.plan.steps}
        results: list[KnobResult] = []
        for knob in KNOB_ORDER:
            readback = knob_value(settings, knob) if settings is not None else None
            if knob in settled:
                base = settled[knob]
                results.append(replace(base, readback=readback))
            elif knob in steps:
                results.append(self._result(steps[knob], readback))
        return KnobReport(pf, self.plan.vf, tuple(results))

    def _result(self, step: KnobStep, readback: KnobValue | None) -> KnobResult:
        sent = self.sent[step.knob]
        state, note = self.rollback.get(step.knob, (Rollback.NONE, ""))
        if state is Rollback.ROLLED_BACK and readback != step.previous:
            state = Rollback.FAILED
            note = f"restored {value_text(step.knob, step.previous)}, but reads back "
            note += value_text(step.knob, readback)
        reason = "; ".join(part for part in (sent.reason, note) if part)
        return KnobResult(
            knob=step.knob,
            outcome=sent.outcome,
            requested=step.value,
            previous=step.previous,
            readback=readback,
            required=step.required,
            errno=sent.errno,
            reason=reason,
            attempts=sent.attempts,
            rollback=state,
        )

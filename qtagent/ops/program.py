"""Program VF knobs through the PF, with what the PF's driver is known to lack
(:mod:`qtagent.store.capabilities`): such knobs are answered unsupported at once,
without a netlink round trip, and every answer the driver gives teaches the table.

Every operation that sets knobs goes through here (vf set, attach, release, VF
defaults, drift repair), so capabilities are learned wherever the driver speaks.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from qtagent.effects.knobs import KnobsNotApplied, apply_knobs_many
from qtagent.errors import UNSUPPORTED_ERRNOS, Conflict, InvalidInput, Unsupported
from qtagent.model.host import PfInfo
from qtagent.netlink.api import Knob
from qtagent.ops.context import HostContext
from qtagent.plan.knob_report import KnobOutcome, KnobReport
from qtagent.plan.knobs import KnobRequest
from qtagent.store.capabilities import CapabilityTable
from qtagent.store.quarantine import EventLog


def set_vf_knobs(ctx: HostContext, pf_name: str, index: int, request: KnobRequest) -> KnobReport:
    """`qtagent vf set`: apply ``request`` to a VF no VM holds, under the host lock.

    A VF a VM holds is refused (Conflict) before anything is sent: qtagent set it up
    for the VM and restores it from what it recorded when the VF is released."""
    from qtagent.ops.recover import changing

    with changing(ctx):
        pf = ctx.pf(pf_name, settings=False)
        vf = pf.vf(index)
        holder = ctx.store.allocation(vf.id)
        if holder is not None:
            vm = holder.vm.name
            raise Conflict(
                f"{vf.id} is assigned to VM {vm!r}; qtagent manages its settings; nothing was "
                "changed",
                hint=f"detach it first: qtagent vm detach {shlex.quote(vm)} {vf.id.pf} {index}",
            )
        if pf.ifindex is None:
            raise Unsupported(f"PF {pf.name} has no network interface to send VF settings through")
        report = program_vf(ctx, pf, index, request)
        changed = [f"{r.knob} {r.outcome}" for r in report.results if r.attempts]
        EventLog(ctx.store).add("vf_set", str(vf.id), ", ".join(changed) or "nothing to send")
        return report


def program_vf(ctx: HostContext, pf: PfInfo, index: int, request: KnobRequest) -> KnobReport:
    """Apply ``request`` to VF ``index`` of ``pf`` (see :func:`program_vfs`)."""
    (report,) = program_vfs(ctx, pf, {index: request})
    return report


def program_vfs(
    ctx: HostContext, pf: PfInfo, requests: Mapping[int, KnobRequest]
) -> tuple[KnobReport, ...]:
    """Apply each request to its VF of ``pf``, one knob per message, read back."""
    if pf.ifindex is None:
        raise InvalidInput(
            f"PF {pf.name} has no network interface, so its VFs cannot be set over netlink",
            hint="check that its driver is bound: qtagent pf list",
        )
    driver = pf.driver or "unknown"
    known = CapabilityTable(ctx.store).unsupported(driver)
    try:
        reports = apply_knobs_many(
            ctx.netlink, pf.ifindex, requests, pf_name=pf.netdev or pf.name, unsupported=known
        )
    except KnobsNotApplied as err:
        _learn(ctx, driver, err.reports)
        raise
    _learn(ctx, driver, reports)
    return reports


def _learn(ctx: HostContext, driver: str, reports: tuple[KnobReport, ...]) -> None:
    """Record each knob the driver answered (only what is new: no write otherwise)."""
    table = CapabilityTable(ctx.store)
    seen: dict[Knob, tuple[bool, str]] = {}
    for report in reports:
        for result in report.results:
            if result.attempts == 0:
                continue  # not sent: nothing was learned
            if result.outcome is KnobOutcome.UNSUPPORTED and result.errno in UNSUPPORTED_ERRNOS:
                seen[result.knob] = (False, result.errno_name or "?")
            elif result.outcome is KnobOutcome.APPLIED and result.confirmed:
                seen.setdefault(result.knob, (True, "a confirmed set"))
    known = {c.knob: (c.supported, c.detail) for c in table.of(driver)}
    for knob, (supported, detail) in seen.items():
        if known.get(knob) != (supported, detail):
            table.learn(driver, knob, supported=supported, detail=detail)

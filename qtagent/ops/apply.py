"""`qtagent apply FILE`: bring every PF named in a host config to its VF count and
VF defaults, idempotently.

Everything that can be checked is checked for every PF before the first write:
VF defaults that cannot be sent, an unknown PF, a count above the PF's limit or a
count change that would destroy an allocated VF refuses the whole file and
changes nothing. The desired count
is recorded first and marked applied only once the kernel shows every VF
(FIELD-CASES C1: never recorded as applied after a failed write).

PFs are then changed one after the other. If one fails, the error that stopped
the run gets a note per PF saying whether it was changed (with its VF count read
back) or not, so the operator knows the host's state; running the same file
again changes only what still differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from qtagent.config import HostConfig, PfConfig, pf_section
from qtagent.effects.vfcount import VfCountResult
from qtagent.errors import ConfigError, Conflict, InvalidInput, QtagentError
from qtagent.journal.runner import Runner
from qtagent.model.host import PfInfo
from qtagent.model.types import VfId
from qtagent.ops.context import HostContext
from qtagent.ops.provision import apply_defaults, change_vf_count
from qtagent.ops.recover import changing
from qtagent.plan.drift import defaults_request
from qtagent.plan.knob_report import KnobOutcome, KnobReport
from qtagent.plan.vfcount import VfCountPlan, plan_vf_count

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PfApplied:
    name: str
    pf: str
    count: VfCountResult
    defaults: tuple[KnobReport, ...]

    @property
    def knobs_applied(self) -> int:
        """How many VF knobs the defaults changed."""
        return sum(
            result.outcome is KnobOutcome.APPLIED
            for report in self.defaults
            for result in report.results
        )

    @property
    def changed(self) -> bool:
        return bool(self.count.writes) or self.knobs_applied > 0

    def to_dict(self) -> dict[str, object]:
        return {
            "pf": self.pf,
            "as_named": self.name,
            "writes": list(self.count.writes),
            "num_vfs": len(self.count.ready) + len(self.count.missing),
            "missing": [{"index": i, "reason": why} for i, why in self.count.missing],
            "changed": self.changed,
            "defaults": [report.to_dict() for report in self.defaults],
        }


def apply_config(ctx: HostContext, config: HostConfig) -> tuple[PfApplied, ...]:
    """Apply ``config`` under the host lock, each PF's count change journaled."""
    with changing(ctx) as runner:
        return _apply_config(ctx, runner, config)


def _apply_config(ctx: HostContext, runner: Runner, config: HostConfig) -> tuple[PfApplied, ...]:
    snapshot = ctx.snapshot(settings=False)
    planned: list[tuple[PfConfig, PfInfo, VfCountPlan]] = []
    seen: dict[str, str] = {}
    for wanted in config.pfs:
        _check_defaults(wanted)
        pf = snapshot.pf(wanted.name)
        if pf.name in seen:
            raise ConfigError(
                f"PF {pf.name} is named twice in the config: as {pf_section(seen[pf.name])} "
                f"and as {pf_section(wanted.name)}",
                hint="keep one section per PF: delete or merge one of them",
            )
        seen[pf.name] = wanted.name
        held = {a.vf: a.vm.name for a in ctx.store.allocations(pf=pf.name)}
        planned.append((wanted, pf, _plan_count(wanted, pf, held)))
    results: list[PfApplied] = []
    for wanted, pf, plan in planned:
        count = None
        try:
            count = _apply_count(ctx, runner, wanted, pf, plan)
            defaults = _apply_vf_defaults(ctx, wanted, pf, count)
        except QtagentError as err:
            _note_progress(err, ctx, planned, results, in_defaults=count is not None)
            raise
        results.append(PfApplied(wanted.name, pf.name, count, defaults))
        log.info("PF %s: %d VFs, writes %s", pf.name, wanted.num_vfs, list(count.writes))
    return tuple(results)


def _check_defaults(wanted: PfConfig) -> None:
    """Build the knob request the VF defaults will send, so that defaults no VF could
    take (min_tx_rate above max_tx_rate, QoS without a VLAN) refuse the whole file
    before the first write - not after the PF's VF count has changed. The parser
    refuses these already; this holds for a HostConfig built any other way."""
    try:
        defaults_request(wanted.vf_defaults)
    except InvalidInput as err:
        raise ConfigError(
            f"PF {wanted.name}: its vf_defaults cannot be applied: {err.message}",
            hint=f"fix vf_defaults in {pf_section(wanted.name)}: {err.hint}",
        ) from err


def _plan_count(wanted: PfConfig, pf: PfInfo, held: dict[VfId, str]) -> VfCountPlan:
    """The PF's count plan; a refusal gets a hint in the file's terms (its num_vfs),
    not in `pf set-vfs` terms (--drain, which apply does not have)."""
    section = pf_section(wanted.name)
    try:
        return plan_vf_count(pf, wanted.num_vfs, held)
    except Conflict as err:
        raise Conflict(
            err.message,
            hint=f"detach them first (qtagent vm detach VM {pf.name} INDEX), or keep "
            f"num_vfs = {pf.num_vfs} in {section}",
        ) from err
    except InvalidInput as err:
        raise InvalidInput(err.message, hint=f"lower num_vfs in {section}; {err.hint}") from err


def _apply_count(
    ctx: HostContext, runner: Runner, wanted: PfConfig, pf: PfInfo, plan: VfCountPlan
) -> VfCountResult:
    ctx.store.set_desired(pf.name, wanted.num_vfs, wanted.vf_defaults, wanted.drift)
    count = change_vf_count(ctx, runner, plan)
    if not count.partial:
        ctx.store.mark_applied(pf.name, wanted.num_vfs)
    return count


def _apply_vf_defaults(
    ctx: HostContext, wanted: PfConfig, pf: PfInfo, count: VfCountResult
) -> tuple[KnobReport, ...]:
    """The file's VF defaults, on every ready VF no VM holds."""
    now = ctx.pf(pf.name, settings=False)
    held_now = {a.vf.index for a in ctx.store.allocations(pf=pf.name)}
    free_ready = [i for i in count.ready if i not in held_now]
    return apply_defaults(ctx, now, wanted.vf_defaults, free_ready)


def _note_progress(
    err: QtagentError,
    ctx: HostContext,
    planned: list[tuple[PfConfig, PfInfo, VfCountPlan]],
    done: list[PfApplied],
    *,
    in_defaults: bool,
) -> None:
    """Note on ``err``, PF by PF, what the run had changed when it stopped
    (``in_defaults``: while setting the VF defaults of the PF it stopped at)."""
    at = len(done)
    err.add_note(f"apply stopped at PF {at + 1} of {len(planned)} in the file")
    for index, (wanted, _, plan) in enumerate(planned):
        changed: bool | None
        if index < at:
            changed, detail = _what_changed(done[index], plan)
        elif index == at:
            changed, detail = _where_it_stopped(ctx, plan, in_defaults=in_defaults)
        else:
            changed, detail = False, "not reached"
        status = "unknown" if changed is None else "changed" if changed else "not changed"
        named = "" if wanted.name == plan.pf else f" ({wanted.name})"
        err.add_note(f"{status}: {plan.pf}{named}: {detail}")
    err.add_note("once the cause is fixed, apply the same file again: it changes only what differs")


def _what_changed(result: PfApplied, plan: VfCountPlan) -> tuple[bool, str]:
    parts = [f"VF count {plan.current} -> {plan.desired}"] if result.count.writes else []
    if result.knobs_applied:
        parts.append(f"{result.knobs_applied} VF knobs set")
    return bool(parts), ", ".join(parts) or "it was as configured"


def _where_it_stopped(
    ctx: HostContext, plan: VfCountPlan, *, in_defaults: bool
) -> tuple[bool | None, str]:
    """Whether the PF it stopped at was changed (None: cannot tell), by its VF count
    read back now; VF defaults that failed part way may have been set on some VFs."""
    try:
        now = ctx.pf(plan.pf, settings=False).num_vfs
    except QtagentError:
        return None, "where it stopped; `qtagent pf list` shows its state"
    count_changed = now != plan.current
    detail = "where it stopped; " + (
        f"VF count {plan.current} -> {now}" if count_changed else f"VF count still {now}"
    )
    if in_defaults:
        detail += "; its VF defaults may be set on some VFs"
        return (True if count_changed else None), detail
    return count_changed, detail

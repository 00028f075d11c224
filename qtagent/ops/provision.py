"""Change a PF's VF count and program VF defaults (FIELD-CASES C1, C2, C3).

The count change is planned from a fresh snapshot and the database's
allocations, so a request that would destroy a VF a VM holds is refused before
any write. ``drain`` is the one explicit way through: it detaches and
releases every VF of the PF first, then changes the count.

The change is journaled and goes forward: ``clear`` (write 0 when VFs exist and
others are wanted), ``write`` (the desired count), ``wait`` (every VF ready, or
the bound for N VFs passed). After a crash, or a write the kernel refused,
recovery finishes it, with backoff. Before each write the PF is checked again
for allocated VFs: nothing, crash or retry, ever writes 0 under a VM's VF (C2).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from qtagent.effects.vfcount import VfCountResult, WaitPolicy, wait_for_vfs, write_num_vfs
from qtagent.errors import Conflict, InvalidInput
from qtagent.journal.runner import Plan, Runner, Step
from qtagent.model.desired import VfDefaults
from qtagent.model.host import PfInfo
from qtagent.ops.context import HostContext
from qtagent.ops.program import program_vfs
from qtagent.ops.recover import changing
from qtagent.ops.release import detach
from qtagent.plan.drift import defaults_request
from qtagent.plan.knob_report import KnobReport
from qtagent.plan.vfcount import VfCountPlan, plan_vf_count
from qtagent.store.journal import ChangeKind, Direction, JournalEntry, JsonValue
from qtagent.store.quarantine import EventLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    count: VfCountResult
    defaults: tuple[KnobReport, ...] = ()
    drained: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        count = self.count
        return {
            "pf": count.pf,
            "writes": list(count.writes),
            "ready": list(count.ready),
            "missing": [{"index": i, "reason": why} for i, why in count.missing],
            "waited_s": round(count.waited_s, 3),
            "drained": list(self.drained),
            "defaults": [report.to_dict() for report in self.defaults],
        }


VF_COUNT_STEPS = ("clear", "write", "wait")


def set_vf_count(
    ctx: HostContext, pf_name: str, desired: int, *, drain: bool = False
) -> ProvisionResult:
    """Give ``pf_name`` exactly ``desired`` VFs (nothing is written if it has them)."""
    with changing(ctx) as runner:
        pf = ctx.pf(pf_name, settings=False)
        drained: list[int] = []
        if drain and desired != pf.num_vfs:
            for allocation in ctx.store.allocations(pf=pf.name):
                detach(ctx, allocation.vm.name, pf.name, allocation.vf.index)
                drained.append(allocation.vf.index)
            pf = ctx.pf(pf_name, settings=False)
        held = {a.vf: a.vm.name for a in ctx.store.allocations(pf=pf.name)}
        plan = plan_vf_count(pf, desired, held)
        result = change_vf_count(ctx, runner, plan)
    return ProvisionResult(result, drained=tuple(drained))


def change_vf_count(ctx: HostContext, runner: Runner, plan: VfCountPlan) -> VfCountResult:
    """Carry out ``plan`` as a journaled change (no journal entry when nothing is
    written). A newer request for the PF replaces one still waiting in the journal."""
    if not plan.writes:
        read = partial(ctx.pf, plan.pf, settings=False)
        return wait_for_vfs(plan, read, clock=ctx.clock, sleep=ctx.sleep)
    for entry in runner.journal.open_entries():
        if entry.kind is ChangeKind.VF_COUNT and entry.subject == vf_count_subject(plan.pf):
            EventLog(ctx.store).add("vf_count", entry.subject, "replaced by a newer request")
            runner.journal.finish(entry)
    results: list[VfCountResult] = []
    intent: dict[str, JsonValue] = {"pf": plan.pf, "desired": plan.desired}
    runner.run(vf_count_plan(ctx, intent, results))
    return results[-1]


def vf_count_subject(pf: str) -> str:
    return f"PF {pf}"


def vf_count_plan(
    ctx: HostContext, intent: dict[str, JsonValue], results: list[VfCountResult] | None = None
) -> Plan:
    """The count change of ``intent`` ({pf, desired}) as a plan; recovery rebuilds it."""
    pf_name, desired = intent.get("pf"), intent.get("desired")
    if not (isinstance(pf_name, str) and type(desired) is int):
        raise InvalidInput(f"a VF count intent needs pf and desired, not {intent!r}")
    found = results if results is not None else []
    writes: list[int] = []

    def read() -> PfInfo:
        return ctx.pf(pf_name, settings=False)

    def write(count: int) -> None:
        held = ctx.store.allocations(pf=pf_name)
        if held:
            names = ", ".join(f"VF{a.vf.index} (VM {a.vm.name!r})" for a in held)
            raise Conflict(
                f"PF {pf_name}: not writing {count} VFs while VFs are allocated: {names}",
                hint="detach them first; the count change waits in the journal",
            )
        write_num_vfs(ctx.writer, pf_name, count, WaitPolicy().write_timeout_s)
        writes.append(count)

    def clear() -> None:
        pf = read()
        if pf.num_vfs > 0 and desired > 0 and pf.num_vfs != desired:
            write(0)

    def write_desired() -> None:
        if read().num_vfs != desired:
            write(desired)

    def wait() -> None:
        plan = VfCountPlan(pf_name, read().num_vfs, desired, tuple(writes))
        found.append(wait_for_vfs(plan, read, clock=ctx.clock, sleep=ctx.sleep))

    def complete() -> None:
        EventLog(ctx.store).add("vf_count", vf_count_subject(pf_name), f"{desired} VFs")

    steps = (Step("clear", clear), Step("write", write_desired), Step("wait", wait))
    assert tuple(s.name for s in steps) == VF_COUNT_STEPS
    return Plan(
        ChangeKind.VF_COUNT, vf_count_subject(pf_name), intent, steps, Direction.FORWARD, complete
    )


def rebuild_vf_count(ctx: HostContext, entry: JournalEntry) -> Plan:
    return vf_count_plan(ctx, dict(entry.intent))


def apply_defaults(
    ctx: HostContext, pf: PfInfo, defaults: VfDefaults, indexes: Iterable[int]
) -> tuple[KnobReport, ...]:
    """Program ``defaults`` into the given VFs of ``pf`` (each knob on its own, read back)."""
    request = defaults_request(defaults)
    targets = sorted(indexes)
    if request is None or not targets or pf.ifindex is None:
        return ()
    return program_vfs(ctx, pf, dict.fromkeys(targets, request))

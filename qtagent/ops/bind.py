"""Move a VF no VM holds between its host driver and vfio-pci, as a journaled change
(FIELD-CASES C7, C9): `qtagent vf bind`.

One step, ``bind``, whose undo puts the VF back on the driver it had: a failure,
or a crash (through recovery), never leaves it without a driver. The binder
itself checks the IOMMU group before any unbind (C7).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

from qtagent.effects.binding import VFIO, BindResult
from qtagent.errors import Conflict, InvalidInput
from qtagent.journal.runner import Plan, Step
from qtagent.model.host import VfInfo
from qtagent.model.types import VfId
from qtagent.ops.context import HostContext
from qtagent.ops.recover import changing
from qtagent.store.journal import ChangeKind, Direction, JournalEntry, JsonValue
from qtagent.store.quarantine import OperatorVfio
from qtagent.sysfs.pci import driver_of

Target = Literal["vfio-pci", "host"]
BIND_STEPS = ("bind",)


@dataclass(frozen=True, slots=True)
class _Outcome:
    results: list[BindResult]


def bind_vf(ctx: HostContext, pf_name: str, index: int, target: Target) -> BindResult:
    """Bind VF ``index`` of ``pf_name`` to vfio-pci, or back to a host driver."""
    with changing(ctx) as runner:
        vf = ctx.pf(pf_name, settings=False).vf(index)
        holder = ctx.store.allocation(vf.id)
        if holder is not None:
            vm = holder.vm.name
            raise Conflict(
                f"{vf.id} is assigned to VM {vm!r}; qtagent manages its driver; nothing was "
                "changed",
                hint=f"detach it first: qtagent vm detach {shlex.quote(vm)} {vf.id.pf} {index}",
            )
        outcome = _Outcome([])
        intent: dict[str, JsonValue] = {
            "pf": vf.id.pf, "index": index, "target": target, "original": vf.driver,
        }  # fmt: skip
        runner.run(bind_plan(ctx, intent, outcome))
    return outcome.results[-1]


def bind_plan(
    ctx: HostContext, intent: dict[str, JsonValue], outcome: _Outcome | None = None
) -> Plan:
    """The binding of ``intent`` ({pf, index, target, original}) as a plan."""
    pf_name, index = intent.get("pf"), intent.get("index")
    target, original = intent.get("target"), intent.get("original")
    if not (
        isinstance(pf_name, str) and type(index) is int and target in ("vfio-pci", "host")
        and (original is None or isinstance(original, str))
    ):  # fmt: skip
        raise InvalidInput(f"a bind intent needs pf, index, target and original: {intent!r}")
    found = outcome if outcome is not None else _Outcome([])

    def current() -> VfInfo:
        return ctx.pf(pf_name, settings=False).vf(index)

    def bind() -> None:
        vf = current()
        if target == VFIO:
            found.results.append(ctx.binder.to_vfio(vf, remember=lambda _driver: None))
        else:
            found.results.append(ctx.binder.to_host(vf, None if original == VFIO else original))

    def unbind() -> None:
        vf = current()
        if vf.address is None or driver_of(ctx.paths.sysfs_root, vf.address) == original:
            return
        if original == VFIO:
            ctx.binder.to_vfio(vf, remember=lambda _driver: None)
        else:
            ctx.binder.to_host(vf, original)

    def complete() -> None:
        vf_id = VfId(pf_name, index)
        if target == VFIO:
            OperatorVfio(ctx.store).add(vf_id)
        else:
            OperatorVfio(ctx.store).remove(vf_id)

    subject = f"{pf_name} VF {index} to {target}"
    steps = (Step("bind", bind, unbind, "put back its driver"),)
    return Plan(ChangeKind.BIND, subject, intent, steps, Direction.BACKWARD, complete)


def rebuild_bind(ctx: HostContext, entry: JournalEntry) -> Plan:
    return bind_plan(ctx, dict(entry.intent))

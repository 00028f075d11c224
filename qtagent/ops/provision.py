"""Change a PF's VF count and program VF defaults (FIELD-CASES C1, C2, C3).

The count change is planned from a fresh snapshot and the database's
allocations, so a request that would destroy a VF a VM holds is refused before
any write. ``drain`` is the one explicit way through: it detaches and
releases every VF of the PF first, then changes the count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from qtagent.effects.knobs import apply_knobs_many
from qtagent.effects.vfcount import VfCountResult, apply_vf_count
from qtagent.model.desired import VfDefaults
from qtagent.model.host import PfInfo
from qtagent.ops.assign import detach
from qtagent.ops.context import HostContext
from qtagent.plan.knob_report import KnobReport
from qtagent.plan.knobs import KnobRequest
from qtagent.plan.vfcount import plan_vf_count

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


def set_vf_count(
    ctx: HostContext, pf_name: str, desired: int, *, drain: bool = False
) -> ProvisionResult:
    """Give ``pf_name`` exactly ``desired`` VFs (nothing is written if it has them)."""
    pf = ctx.pf(pf_name, settings=False)
    drained: list[int] = []
    if drain and desired != pf.num_vfs:
        for allocation in ctx.store.allocations(pf=pf.name):
            detach(ctx, allocation.vm.name, pf.name, allocation.vf.index)
            drained.append(allocation.vf.index)
        pf = ctx.pf(pf_name, settings=False)
    held = {a.vf: a.vm.name for a in ctx.store.allocations(pf=pf.name)}
    plan = plan_vf_count(pf, desired, held)
    result = apply_vf_count(
        plan, ctx.writer, lambda: ctx.pf(pf.name, settings=False), clock=ctx.clock, sleep=ctx.sleep
    )
    return ProvisionResult(result, drained=tuple(drained))


def defaults_request(defaults: VfDefaults) -> KnobRequest | None:
    """The knob request that gives a VF these defaults; None if they set nothing."""
    if defaults.is_empty():
        return None
    return KnobRequest(
        vlan=defaults.vlan if defaults.vlan is not None or defaults.qos else None,
        qos=defaults.qos or 0,
        spoofchk=defaults.spoofchk,
        trust=defaults.trust,
        max_tx_rate=defaults.max_tx_rate,
        min_tx_rate=defaults.min_tx_rate,
        link_state=defaults.link_state,
    )


def apply_defaults(
    ctx: HostContext, pf: PfInfo, defaults: VfDefaults, indexes: Iterable[int]
) -> tuple[KnobReport, ...]:
    """Program ``defaults`` into the given VFs of ``pf`` (each knob on its own, read back)."""
    request = defaults_request(defaults)
    targets = sorted(indexes)
    if request is None or not targets or pf.ifindex is None:
        return ()
    return apply_knobs_many(
        ctx.netlink, pf.ifindex, dict.fromkeys(targets, request), pf_name=pf.netdev or pf.name
    )

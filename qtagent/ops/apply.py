"""`qtagent apply FILE`: bring every PF named in a host config to its VF count and
VF defaults, idempotently.

Everything that can be checked is checked for every PF before the first write:
an unknown PF, a count above sriov_totalvfs or a count change that would destroy
an allocated VF refuses the whole file and changes nothing. The desired count
is recorded first and marked applied only once the kernel shows every VF
(FIELD-CASES C1: never recorded as applied after a failed write).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from qtagent.config import HostConfig, PfConfig
from qtagent.effects.vfcount import VfCountResult, apply_vf_count
from qtagent.errors import ConfigError
from qtagent.model.host import PfInfo
from qtagent.ops.context import HostContext
from qtagent.ops.provision import apply_defaults
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
    def changed(self) -> bool:
        return bool(self.count.writes) or any(
            result.outcome is KnobOutcome.APPLIED
            for report in self.defaults
            for result in report.results
        )

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
    snapshot = ctx.snapshot(settings=False)
    planned: list[tuple[PfConfig, PfInfo, VfCountPlan]] = []
    seen: dict[str, str] = {}
    for wanted in config.pfs:
        pf = snapshot.pf(wanted.name)
        if pf.name in seen:
            raise ConfigError(
                f"PF {pf.name} is named twice: as {seen[pf.name]!r} and {wanted.name!r}",
                hint="keep one entry per PF",
            )
        seen[pf.name] = wanted.name
        held = {a.vf: a.vm.name for a in ctx.store.allocations(pf=pf.name)}
        planned.append((wanted, pf, plan_vf_count(pf, wanted.num_vfs, held)))
    results = []
    for wanted, pf, plan in planned:
        ctx.store.set_desired(pf.name, wanted.num_vfs, wanted.vf_defaults)
        read_pf = partial(ctx.pf, pf.name, settings=False)
        count = apply_vf_count(plan, ctx.writer, read_pf, clock=ctx.clock, sleep=ctx.sleep)
        if not count.partial:
            ctx.store.mark_applied(pf.name, wanted.num_vfs)
        now = ctx.pf(pf.name, settings=False)
        held_now = {a.vf.index for a in ctx.store.allocations(pf=pf.name)}
        free_ready = [i for i in count.ready if i not in held_now]
        defaults = apply_defaults(ctx, now, wanted.vf_defaults, free_ready)
        results.append(PfApplied(wanted.name, pf.name, count, defaults))
        log.info("PF %s: %d VFs, writes %s", pf.name, wanted.num_vfs, list(count.writes))
    return tuple(results)

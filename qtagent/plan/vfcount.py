"""Plan a change of a PF's VF count (FIELD-CASES C1, C2). Pure: values in, a plan out.

The kernel's rules: a count above sriov_totalvfs fails (ERANGE), on netdevsim one
above max_vfs (ENOMEM; the reader gives it as ``total_vfs``); writing the current
count is a no-op; going from N>0 to M>0 fails (EBUSY), so the only way is through
0, which destroys every VF. Hence: no write when nothing changes,
refusal before any write when the request cannot succeed or would destroy a VF
that a VM holds, and [0, M] when VFs exist already.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qtagent.errors import Conflict, InvalidInput, Unsupported
from qtagent.model.host import PfBus, PfInfo
from qtagent.model.types import VfId


@dataclass(frozen=True, slots=True)
class VfCountPlan:
    """The sriov_numvfs writes to make, in order. Empty: nothing to do."""

    pf: str
    current: int
    desired: int
    writes: tuple[int, ...]

    @property
    def destroys_vfs(self) -> bool:
        return self.current > 0 and bool(self.writes)


def plan_vf_count(pf: PfInfo, desired: int, allocations: Mapping[VfId, str]) -> VfCountPlan:
    """Decide the writes that take ``pf`` from its VF count to ``desired``.

    ``allocations`` maps each allocated VF to the VM holding it. Raises
    InvalidInput, Unsupported or Conflict - always before any write.
    """
    if desired < 0:
        raise InvalidInput(f"VF count {desired} is negative", hint="give a count from 0 up")
    if desired > pf.total_vfs:
        raise InvalidInput(
            f"PF {pf.name} supports at most {pf.total_vfs} VFs; {desired} were asked for",
            hint=f"ask for 0 to {pf.total_vfs} ({_limit_source(pf)})",
        )
    if desired == pf.num_vfs:
        return VfCountPlan(pf.name, pf.num_vfs, desired, ())
    if pf.driver is None:
        raise Unsupported(
            f"PF {pf.name} has no driver bound; its VF count cannot change",
            hint="bind the PF's driver first (see `qtagent pf list`)",
        )
    if pf.bus is PfBus.PCI and pf.netdev is None:
        raise Unsupported(
            f"PF {pf.name} (driver {pf.driver}) has no network interface; it may be failing",
            hint="check `dmesg` for the driver's errors and reload it",
        )
    held = sorted((vf_id, vm) for vf_id, vm in allocations.items() if vf_id.pf == pf.name)
    if held:
        names = ", ".join(f"VF{vf_id.index} (VM {vm!r})" for vf_id, vm in held)
        raise Conflict(
            f"PF {pf.name} has VFs in use: {names}; changing its VF count would destroy them",
            hint="detach them first, or pass --drain to detach and release every VF first",
        )
    writes = (0, desired) if pf.num_vfs > 0 and desired > 0 else (desired,)
    return VfCountPlan(pf.name, pf.num_vfs, desired, writes)


def _limit_source(pf: PfInfo) -> str:
    """Where ``pf.total_vfs`` comes from, for the hint of a count above it."""
    if pf.bus is PfBus.NETDEVSIM:
        return (
            f"max_vfs, from debugfs netdevsim/{pf.name}/max_vfs, or netdevsim's default "
            "where debugfs is not mounted; write a larger max_vfs there for more VFs"
        )
    return "sriov_totalvfs"

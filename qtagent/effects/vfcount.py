"""Carry out a VF count plan and wait for the VFs to appear (FIELD-CASES C1, C3).

After the write, VFs, their drivers and their netdevs appear over seconds
(about 65 s for 125 VFs on one real NIC). We wait with a bound that grows
with N until every VF is there and ready; a VF that never gets its driver or
netdev is reported as missing, so nothing configures it, and a later rescan
that finds it clears the condition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qtagent.errors import QtagentError, Timeout
from qtagent.model.host import PfBus, PfInfo, VfInfo
from qtagent.plan.vfcount import VfCountPlan
from qtagent.sysfs.writer import SysfsWriter

log = logging.getLogger(__name__)

# Drivers that bind VFs for passthrough: they give the VF no netdev.
PASSTHROUGH_DRIVERS = frozenset({"vfio-pci", "pci-stub"})


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How long to wait for N VFs: ``base_s + per_vf_s * N`` seconds (a real NIC took
    65 s for 125 VFs; the lab's emulated igb under load takes up to 20 s for 4), polling every
    ``poll_s`` seconds. The write itself may block (disabling SR-IOV waits for
    VFIO users); it is bounded by ``write_timeout_s``."""

    base_s: float = 30.0
    per_vf_s: float = 1.0
    poll_s: float = 0.1
    write_timeout_s: float = 60.0

    def bound(self, count: int) -> float:
        return self.base_s + self.per_vf_s * count


@dataclass(frozen=True, slots=True)
class VfCountResult:
    """What a VF count change did. ``missing`` names VFs that never became ready,
    each with the reason; such a change is partial and those VFs get no config."""

    pf: str
    writes: tuple[int, ...]
    ready: tuple[int, ...]
    missing: tuple[tuple[int, str], ...] = field(default_factory=tuple)
    waited_s: float = 0.0

    @property
    def partial(self) -> bool:
        return bool(self.missing)


def vf_not_ready_reason(pf: PfInfo, vf: VfInfo | None) -> str | None:
    """Why a VF is not usable yet, or None when it is ready."""
    if vf is None:
        return "no virtfn link yet"
    if pf.bus is PfBus.NETDEVSIM:
        return None
    if vf.driver is None:
        return "no driver bound"
    if vf.driver not in PASSTHROUGH_DRIVERS and vf.netdev is None:
        return f"driver {vf.driver} has not created its network interface"
    return None


def never_coming(pf: PfInfo, desired: int) -> str | None:
    """Why the VFs still missing will not appear however long we wait, or None: the PF
    lost its driver (an unbind under way takes its VFs with it) or its sriov_numvfs
    was set to another count behind us (the kernel goes from 0 to N, never N to M)."""
    if pf.bus is PfBus.PCI and pf.driver is None:
        return "the PF lost its driver"
    if pf.num_vfs not in (0, desired):
        return f"the PF's sriov_numvfs now reads {pf.num_vfs}"
    return None


def readiness(pf: PfInfo, count: int) -> tuple[tuple[int, ...], tuple[tuple[int, str], ...]]:
    """Split VF indexes 0..count-1 into ready ones and missing ones (with reasons)."""
    by_index = {vf.index: vf for vf in pf.vfs}
    ready: list[int] = []
    missing: list[tuple[int, str]] = []
    for index in range(count):
        reason = vf_not_ready_reason(pf, by_index.get(index))
        if reason is None:
            ready.append(index)
        else:
            missing.append((index, reason))
    return tuple(ready), tuple(missing)


def apply_vf_count(
    plan: VfCountPlan,
    writer: SysfsWriter,
    read_pf: Callable[[], PfInfo],
    *,
    policy: WaitPolicy = WaitPolicy(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> VfCountResult:
    """Write the plan's counts in order, then wait until the VFs are ready.

    A failed write raises (with the kernel's errno) and leaves whatever the
    kernel did; callers record the desired count as applied only on success.
    (The journaled change of :mod:`qtagent.ops.provision` runs the same two
    parts as separate steps.)
    """
    for count in plan.writes:
        write_num_vfs(writer, plan.pf, count, policy.write_timeout_s)
    return wait_for_vfs(plan, read_pf, policy=policy, clock=clock, sleep=sleep)


def wait_for_vfs(
    plan: VfCountPlan,
    read_pf: Callable[[], PfInfo],
    *,
    policy: WaitPolicy = WaitPolicy(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> VfCountResult:
    """Wait, within the policy's bound for N VFs, until every VF of the plan is ready."""
    start = clock()
    deadline = start + policy.bound(plan.desired)
    while True:
        pf = read_pf()
        ready, missing = readiness(pf, plan.desired)
        lost = never_coming(pf, plan.desired)
        if lost is not None:
            missing = tuple((index, lost) for index, _ in missing)
        if not missing or lost is not None or clock() >= deadline:
            break
        sleep(policy.poll_s)
    waited = clock() - start
    if missing:
        log.warning(
            "PF %s: %d of %d VFs not ready after %.1f s: %s",
            plan.pf, len(missing), plan.desired, waited,
            ", ".join(f"VF{i} ({why})" for i, why in missing),
        )  # fmt: skip
    return VfCountResult(plan.pf, plan.writes, ready, missing, waited)


def write_num_vfs(writer: SysfsWriter, pf: str, count: int, timeout_s: float) -> None:
    """Write sriov_numvfs, giving up after ``timeout_s``: disabling SR-IOV blocks in
    the kernel while a VFIO user holds a VF, and a blocked write cannot be cancelled."""
    errors: list[QtagentError] = []

    def write() -> None:
        try:
            writer.write_num_vfs(pf, count)
        except QtagentError as err:
            errors.append(err)

    worker = threading.Thread(target=write, name=f"numvfs-{pf}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise Timeout(
            f"writing {count} to sriov_numvfs of PF {pf} has not returned after {timeout_s:.0f} s",
            hint="a process (a VM) still holds one of its VFs through VFIO; stop it",
        )
    if errors:
        raise errors[0]

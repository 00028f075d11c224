"""Drift: where the host differs from what qtagent set up (FIELD-CASES C8; issue 3).
Pure: a snapshot and the desired state in, drift and the repairs to make out.

What is desired:

- each PF with a recorded count (``qtagent apply``): that many VFs;
- each VF a VM holds: on vfio-pci, with the MAC and VLAN/QoS the VM was given and
  spoof checking on;
- each free VF of a PF with VF defaults: those defaults; and a host driver.

What is done about it, per PF (``drift = "repair"`` or ``"report"`` in the host
config; repair by default): repair where it is safe, report otherwise. Never
repaired, only reported: a VF count while any VF of the PF is allocated (a write
of 0 would destroy it, C2) or set aside (quarantined, or the operator's on
vfio-pci: a process may hold it through VFIO), the driver of a VF a VM holds, a free VF on vfio-pci
(another tool may be using it), a PF that lost its driver. A knob the driver
does not report cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qtagent.model.desired import DriftPolicy, VfDefaults
from qtagent.model.drift import Drift
from qtagent.model.host import HostSnapshot, PfInfo, VfInfo
from qtagent.model.types import VfId
from qtagent.netlink.api import Knob
from qtagent.netlink.knob_values import value_text
from qtagent.plan.knobs import KnobRequest, plan_knobs
from qtagent.store.records import Allocation, AllocationState

VFIO = "vfio-pci"
__all__ = ["Desired", "Drift", "DriftPlan", "DriftPolicy", "defaults_request", "plan_drift"]


@dataclass(frozen=True, slots=True)
class DriftPlan:
    """The drift found, and the repairs: VF counts to write, knobs to send (through
    the PF), VFs to give back to a host driver."""

    drift: tuple[Drift, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    knobs: tuple[tuple[VfId, KnobRequest], ...] = ()
    host_drivers: tuple[VfId, ...] = ()

    @property
    def repairs(self) -> int:
        return len(self.counts) + len(self.knobs) + len(self.host_drivers)


@dataclass(frozen=True, slots=True)
class Desired:
    """What qtagent wants of one PF: its VF count (None: not recorded), its VF
    defaults, and the drift policy."""

    num_vfs: int | None = None
    defaults: VfDefaults = field(default_factory=VfDefaults)
    policy: DriftPolicy = DriftPolicy.REPAIR


def plan_drift(
    snapshot: HostSnapshot,
    desired: Mapping[str, Desired],
    allocations: Iterable[Allocation],
    set_aside: Iterable[VfId] = (),
) -> DriftPlan:
    """Compare ``snapshot`` with ``desired`` (by PF device name) and the allocations.
    ``set_aside``: VFs left alone (quarantined, or the operator's on vfio-pci)."""
    owned = {a.vf: a for a in allocations}
    aside = set(set_aside)
    drift: list[Drift] = []
    counts: list[tuple[str, int]] = []
    knobs: list[tuple[VfId, KnobRequest]] = []
    host_drivers: list[VfId] = []
    for pf in snapshot.pfs:
        want = desired.get(pf.name, Desired())
        repair = want.policy is DriftPolicy.REPAIR
        held = [vf.id for vf in pf.vfs if vf.id in owned]
        kept = [vf.id for vf in pf.vfs if vf.id in aside and vf.id not in owned]
        count = _count_drift(pf, want, held, kept, repair)
        if count is not None:
            drift.append(count)
            if count.repair and want.num_vfs is not None:
                counts.append((pf.name, want.num_vfs))
            continue  # the VFs are about to change: their own drift waits
        for vf in pf.vfs:
            allocation = owned.get(vf.id)
            if allocation is not None:
                request = _vm_request(allocation)
                found = _driver_of_held(vf, allocation)
                found += _knob_drift(vf, request, repair) if request else []
            elif vf.id in aside:
                continue
            else:
                request = defaults_request(want.defaults, required=frozenset())
                free = _free_driver_drift(vf, repair)
                found = free + (_knob_drift(vf, request, repair) if request else [])
                if any(d.aspect == "driver" and d.repair for d in free):
                    host_drivers.append(vf.id)
            drift += found
            if request is not None and any(d.repair and d.aspect != "driver" for d in found):
                knobs.append((vf.id, request))
    return DriftPlan(tuple(drift), tuple(counts), tuple(knobs), tuple(host_drivers))


def _count_drift(
    pf: PfInfo, want: Desired, held: list[VfId], kept: list[VfId], repair: bool
) -> Drift | None:
    subject = f"PF {pf.name}"
    if pf.driver is None:
        return Drift(subject, "driver", "a PF driver", "none", False, "a PF without a driver")
    if want.num_vfs is None or pf.num_vfs == want.num_vfs:
        return None
    have, wanted = f"{pf.num_vfs} VFs", f"{want.num_vfs} VFs"
    if held:
        names = ", ".join(f"VF{vf.index}" for vf in held)
        return Drift(subject, "VF count", wanted, have, False, f"VFs are allocated ({names})")
    if kept:  # a process may hold one through VFIO: writing 0 would take it away
        names = ", ".join(f"VF{vf.index}" for vf in kept)
        why = f"VFs are quarantined or the operator's on vfio-pci ({names})"
        return Drift(subject, "VF count", wanted, have, False, why)
    if not repair:
        return Drift(subject, "VF count", wanted, have, False, "the PF's drift policy is report")
    return Drift(subject, "VF count", wanted, have, True)


def _driver_of_held(vf: VfInfo, allocation: Allocation) -> list[Drift]:
    if vf.address is None or allocation.state is not AllocationState.ATTACHED:
        return []
    if vf.driver == VFIO:
        return []
    why = f"VM {allocation.vm.name!r} holds it: release it and attach it again"
    return [Drift(str(vf.id), "driver", VFIO, vf.driver or "none", False, why)]


def _free_driver_drift(vf: VfInfo, repair: bool) -> list[Drift]:
    if vf.address is None:
        return []
    if vf.driver == VFIO:
        why = "no VM holds it through qtagent; another tool may use it"
        return [Drift(str(vf.id), "driver", "a host driver", VFIO, False, why)]
    if vf.driver is None:
        why = "" if repair else "the PF's drift policy is report"
        return [Drift(str(vf.id), "driver", "a host driver", "none", repair, why)]
    return []


def _knob_drift(vf: VfInfo, request: KnobRequest, repair: bool) -> list[Drift]:
    """The knobs of ``request`` that differ from what the driver reports (a knob it
    does not report is not drift: there is nothing to compare)."""
    plan = plan_knobs(vf.index, vf.settings, request)
    why = "" if repair else "the PF's drift policy is report"
    return [
        Drift(
            str(vf.id),
            str(step.knob),
            value_text(step.knob, step.value),
            value_text(step.knob, step.previous),
            repair,
            why,
        )
        for step in plan.steps
        if step.previous is not None
    ]


def _vm_request(allocation: Allocation) -> KnobRequest | None:
    if allocation.state is not AllocationState.ATTACHED:
        return None  # being set up or released: its journal entry owns it
    return KnobRequest(
        mac=allocation.mac,
        vlan=allocation.vlan,
        qos=allocation.qos,
        spoofchk=True,
        required=frozenset(),
    )


def defaults_request(
    defaults: VfDefaults, *, required: frozenset[Knob] | None = None
) -> KnobRequest | None:
    """The knob request that gives a VF these defaults; None if they set nothing.
    ``required``: as in :class:`KnobRequest` (None: the security knobs asked for)."""
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
        required=required,
    )

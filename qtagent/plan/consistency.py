"""Does the database agree with the kernel and libvirt? Pure: values in, findings out.

The invariants a crash must never break (issue 3), checked after every restart
by the fault-injection test and shown by `qtagent status`:

- no VF is on vfio-pci without an owner (an allocation, a quarantine, or the
  operator, who bound it there with `qtagent vf bind`);
- no VF is held by two VMs, or by a VM the database does not name;
- no free VF carries a VM's MAC or VLAN;
- every attached allocation's VF is on vfio-pci and in its VM's live XML;
- no allocation is reserved or releasing without a journal entry finishing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qtagent.model.host import HostSnapshot, VfSettings
from qtagent.model.types import MacAddress, PciAddress, VfId
from qtagent.store.records import Allocation, AllocationState

VFIO = "vfio-pci"


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken invariant, about one VF."""

    vf: VfId
    problem: str

    def __str__(self) -> str:
        return f"{self.vf}: {self.problem}"


def check_consistency(
    snapshot: HostSnapshot,
    allocations: Iterable[Allocation],
    set_aside: Iterable[VfId],
    hostdevs: Mapping[str, Iterable[PciAddress]],
    in_journal: Iterable[VfId],
    *,
    vm_settings: Iterable[tuple[MacAddress | None, int]] = (),
) -> tuple[Finding, ...]:
    """Every broken invariant. ``set_aside``: quarantined VFs and the operator's
    vfio-pci ones. ``hostdevs``: each running VM's VF addresses, from its
    live XML. ``in_journal``: the VFs a journal entry is changing. Free VFs must
    carry none of the MACs and VLANs given to VMs: those of the allocations, and
    ``vm_settings`` (MAC, VLAN) of hand-outs since released."""
    owned = {a.vf: a for a in allocations}
    held_aside = set(set_aside)
    changing = set(in_journal)
    given = [(a.mac, a.vlan) for a in owned.values()] + list(vm_settings)
    vm_macs = {mac for mac, _ in given if mac is not None}
    vm_vlans = {vlan for _, vlan in given if vlan}
    users: dict[PciAddress, list[str]] = {}
    for vm, addresses in hostdevs.items():
        for address in addresses:
            users.setdefault(address, []).append(vm)
    findings: list[Finding] = []
    for pf in snapshot.pfs:
        for vf in pf.vfs:
            allocation = owned.get(vf.id)
            vms = sorted(users.get(vf.address, [])) if vf.address is not None else []
            findings += _check_vf(vf.id, vf.driver, vms, allocation, vf.id in held_aside)
            if allocation is None and vf.id not in held_aside:
                findings += _check_free(vf.id, vf.settings, vm_macs, vm_vlans)
            unfinished = allocation is not None and allocation.state is not AllocationState.ATTACHED
            if unfinished and vf.id not in changing:
                assert allocation is not None
                findings.append(
                    Finding(vf.id, f"allocation is {allocation.state} with no journal entry")
                )
    return tuple(findings)


def _check_vf(
    vf: VfId,
    driver: str | None,
    vms: list[str],
    allocation: Allocation | None,
    quarantined: bool,
) -> list[Finding]:
    found = []
    if driver == VFIO and allocation is None and not quarantined:
        found.append(Finding(vf, "on vfio-pci with no owner"))
    if len(vms) > 1:
        found.append(Finding(vf, f"held by several VMs: {', '.join(vms)}"))
    for vm in vms:
        if allocation is None or allocation.vm.name != vm:
            owner = "nobody" if allocation is None else f"VM {allocation.vm.name!r}"
            found.append(Finding(vf, f"in VM {vm!r}, but the database gives it to {owner}"))
    if allocation is not None and allocation.state is AllocationState.ATTACHED:
        if driver != VFIO:
            found.append(Finding(vf, f"attached to VM {allocation.vm.name!r} but on {driver}"))
        if allocation.vm.name not in vms:
            found.append(
                Finding(vf, f"attached to VM {allocation.vm.name!r} but not in its live XML")
            )
    return found


def _check_free(
    vf: VfId, settings: VfSettings, vm_macs: set[MacAddress], vm_vlans: set[int]
) -> list[Finding]:
    found = []
    if settings.mac is not None and settings.mac in vm_macs:
        found.append(Finding(vf, f"free, but carries a VM's MAC {settings.mac}"))
    if settings.vlan in vm_vlans:
        found.append(Finding(vf, f"free, but carries a VM's VLAN {settings.vlan}"))
    return found

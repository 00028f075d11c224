"""Drift planning (FIELD-CASES C8; issue 3): pure values in, drift and repairs out."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from qtagent.model.desired import DriftPolicy, VfDefaults
from qtagent.model.host import HostSnapshot, PfInfo, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress, VfId
from qtagent.plan.drift import Desired, plan_drift
from qtagent.store.records import Allocation, AllocationState, VmRef
from tests.unit.factories import PF_ADDR, make_pf

VM_MAC = MacAddress.parse("52:54:00:aa:00:01")
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def host(pf: PfInfo) -> HostSnapshot:
    return HostSnapshot((pf,))


def with_settings(pf: PfInfo, index: int, **changes: Any) -> PfInfo:
    vfs = list(pf.vfs)
    base = VfSettings(mac=ZERO_MAC, vlan=0, spoofchk=True, trust=False)
    vfs[index] = dataclasses.replace(vfs[index], settings=dataclasses.replace(base, **changes))
    return dataclasses.replace(pf, vfs=tuple(vfs))


def all_default(pf: PfInfo) -> PfInfo:
    for index in range(len(pf.vfs)):
        pf = with_settings(pf, index)
    return pf


def held(
    index: int, *, vlan: int = 100, state: AllocationState = AllocationState.ATTACHED
) -> Allocation:
    return Allocation(VfId(PF_ADDR, index), VmRef("a"), VM_MAC, vlan, 0, state, NOW, NOW)


def test_nothing_drifted_plans_nothing() -> None:
    pf = all_default(make_pf(4))
    pf = with_settings(pf, 1, mac=VM_MAC, vlan=100)
    pf = dataclasses.replace(pf, vfs=tuple(
        dataclasses.replace(vf, driver="vfio-pci", netdev=None) if vf.index == 1 else vf
        for vf in pf.vfs
    ))  # fmt: skip
    plan = plan_drift(host(pf), {PF_ADDR: Desired(4, VfDefaults(spoofchk=True))}, [held(1)])
    assert plan.drift == () and plan.repairs == 0


def test_a_vm_vfs_vlan_changed_behind_qtagent_is_put_back() -> None:
    pf = all_default(make_pf(4))
    pf = with_settings(pf, 1, mac=VM_MAC, vlan=7, spoofchk=False)
    pf = dataclasses.replace(pf, vfs=tuple(
        dataclasses.replace(vf, driver="vfio-pci") if vf.index == 1 else vf for vf in pf.vfs
    ))  # fmt: skip
    plan = plan_drift(host(pf), {}, [held(1)])
    assert {(d.subject, d.aspect, d.want, d.have, d.repair) for d in plan.drift} == {
        (f"{PF_ADDR}/vf1", "vlan", "100", "7", True),
        (f"{PF_ADDR}/vf1", "spoofchk", "on", "off", True),
    }
    ((vf, request),) = plan.knobs
    assert vf == VfId(PF_ADDR, 1) and (request.vlan, request.spoofchk) == (100, True)


def test_report_policy_reports_and_repairs_nothing() -> None:
    pf = with_settings(all_default(make_pf(2)), 0, trust=True)
    desired = {PF_ADDR: Desired(2, VfDefaults(trust=False), DriftPolicy.REPORT)}
    plan = plan_drift(host(pf), desired, [])
    ((drift,),) = (plan.drift,)
    assert (drift.aspect, drift.want, drift.have, drift.repair) == ("trust", "off", "on", False)
    assert "drift policy is report" in drift.why and plan.repairs == 0


def test_a_count_changed_externally_is_repaired_only_while_no_vf_is_allocated() -> None:
    pf = all_default(make_pf(2))
    free = plan_drift(host(pf), {PF_ADDR: Desired(4)}, [])
    assert free.counts == ((PF_ADDR, 4),) and free.drift[0].repair
    busy = plan_drift(host(pf), {PF_ADDR: Desired(4)}, [held(1)])
    assert busy.counts == () and not busy.drift[0].repair
    assert "VFs are allocated (VF1)" in busy.drift[0].why


def test_an_unbound_free_vf_gets_a_host_driver_and_a_held_one_is_only_reported() -> None:
    pf = all_default(make_pf(3))
    pf = dataclasses.replace(pf, vf_identity=pf.identity, vfs=tuple(
        dataclasses.replace(vf, driver=None, netdev=None) for vf in pf.vfs
    ))  # fmt: skip
    plan = plan_drift(host(pf), {}, [held(2, vlan=0)])
    assert plan.host_drivers == (VfId(PF_ADDR, 0), VfId(PF_ADDR, 1))
    (vm_vf,) = [d for d in plan.drift if d.subject.endswith("vf2") and d.aspect == "driver"]
    assert (vm_vf.aspect, vm_vf.repair) == ("driver", False) and "VM 'a' holds it" in vm_vf.why


def test_vfs_being_set_up_or_released_belong_to_their_journal_entry() -> None:
    pf = with_settings(all_default(make_pf(2)), 1, vlan=55)
    plan = plan_drift(host(pf), {}, [held(1, state=AllocationState.RESERVED)])
    assert plan.drift == ()


def test_quarantined_vfs_are_left_alone() -> None:
    pf = with_settings(all_default(make_pf(2)), 1, trust=True)
    plan = plan_drift(host(pf), {PF_ADDR: Desired(2, VfDefaults(trust=False))}, [], [
        VfId(PF_ADDR, 1)
    ])  # fmt: skip
    assert plan.drift == ()


def test_a_pf_without_its_driver_is_reported() -> None:
    pf = make_pf(0, driver=None)
    (drift,) = plan_drift(host(pf), {PF_ADDR: Desired(4)}, []).drift
    assert (drift.aspect, drift.repair) == ("driver", False)

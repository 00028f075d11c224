"""Give a VF to a running VM (FIELD-CASES C2, C7, C9), as a journaled change.

Every check first (the VM exists and runs, the VF exists, is free, not
quarantined, and its IOMMU group is viable). Then one transaction reserves the
VF (so nothing is handed out twice), keeps its original settings and driver,
and writes the journal entry, before the first effect. The steps:

1. ``bind``: vfio-pci (the original driver is already on record);
2. ``knobs``: the VM's MAC, VLAN/QoS and spoofchk on, through the PF;
3. ``plug``: hot-plug, confirmed by libvirt's live XML.

The allocation becomes ``attached`` with the journal entry's deletion. A
failure at any step, or a crash (through recovery), undoes the steps newest
first: the VF gets its original settings back exactly (its MAC too, all-zero
or not) and its host driver, and the reservation goes.

Taking a VF back is :mod:`qtagent.ops.release`.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass

from qtagent.effects.vfcount import readiness
from qtagent.errors import Conflict, InvalidInput, NotFound, Unsupported
from qtagent.journal.runner import Plan, Step
from qtagent.model.host import PfBus, PfInfo, VfInfo
from qtagent.model.types import MacAddress, VfId, check_vlan, check_vm_name
from qtagent.netlink.api import Knob
from qtagent.ops.context import HostContext
from qtagent.ops.program import program_vf
from qtagent.ops.recover import changing
from qtagent.ops.release import (
    DetachResult,
    UnplugPolicy,
    detach,
    restore_knobs,
    unplug_and_wait,
)
from qtagent.plan.binding import check_vfio_viable
from qtagent.plan.knob_report import KnobReport
from qtagent.plan.knobs import KnobRequest
from qtagent.store.journal import ChangeKind, Direction, Journal, JournalEntry, JsonValue
from qtagent.store.quarantine import EventLog, OperatorVfio, QuarantineTable
from qtagent.store.records import AllocationState, VmRef
from qtagent.virt.api import DomainState
from qtagent.virt.domain_xml import hostdev_xml

log = logging.getLogger(__name__)

VFIO = "vfio-pci"
ATTACH_STEPS = ("bind", "knobs", "plug")
__all__ = ["ATTACH_STEPS", "AttachResult", "DetachResult", "UnplugPolicy", "attach", "detach"]


@dataclass(frozen=True, slots=True)
class AttachResult:
    vm: str
    vf: VfInfo
    mac: MacAddress | None
    vlan: int
    knobs: KnobReport

    def to_dict(self) -> dict[str, object]:
        return {
            "vm": self.vm,
            "pf": self.vf.id.pf,
            "index": self.vf.index,
            "address": str(self.vf.address),
            "mac": str(self.mac) if self.mac else None,
            "vlan": self.vlan,
            "knobs": self.knobs.to_dict(),
        }


def attach(
    ctx: HostContext,
    vm: str,
    pf_name: str,
    *,
    index: int | None = None,
    mac: MacAddress | None = None,
    vlan: int = 0,
    qos: int = 0,
) -> AttachResult:
    """Hot-plug a free VF of ``pf_name`` (``index``, or the first free one) into ``vm``."""
    check_vm_name(vm)
    check_vlan(vlan, qos)
    if mac is not None and (mac.is_zero or mac.is_multicast):
        raise InvalidInput(f"{mac} cannot be a VM's MAC", hint="give a unicast, non-zero MAC")
    with changing(ctx) as runner:
        _check_running(ctx, vm)
        pf = ctx.pf(pf_name)
        vf = _choose_vf(ctx, pf, index)
        check_vfio_viable(vf)
        assert vf.address is not None  # check_vfio_viable refuses VFs that are not PCI functions
        intent: dict[str, JsonValue] = {
            "vm": vm, "pf": pf.name, "index": vf.index,
            "mac": str(mac) if mac else None, "vlan": vlan, "qos": qos,
        }  # fmt: skip
        reports: list[KnobReport] = []
        plan = attach_plan(ctx, intent, reports)

        def begin() -> None:
            ctx.store.reserve(vf.id, VmRef(vm), mac=mac, vlan=vlan, qos=qos)
            ctx.store.record_originals(vf.id, vf.settings, vf.driver)

        runner.run(plan, begin=begin)
    log.info("attached %s (%s) to VM %r", vf.id, vf.address, vm)
    return AttachResult(vm, vf, mac, vlan, reports[-1])


def attach_subject(vf: VfId, vm: str) -> str:
    return f"{vf.pf} VF {vf.index} to VM {vm!r}"


def attach_plan(
    ctx: HostContext, intent: dict[str, JsonValue], reports: list[KnobReport] | None = None
) -> Plan:
    """The assignment of ``intent`` as a plan; recovery rebuilds it the same way."""
    vm, pf_name, index, mac, vlan, qos = _attach_intent(intent)
    vf_id = VfId(pf_name, index)
    knob_reports = reports if reports is not None else []

    def current() -> tuple[PfInfo, VfInfo]:
        pf = ctx.pf(pf_name, settings=False)
        return pf, pf.vf(index)

    def original_driver() -> str | None:
        original = ctx.store.originals(vf_id)
        return original.driver if original else None

    def bind() -> None:
        _, vf = current()
        ctx.binder.to_vfio(vf, remember=lambda _driver: None)  # on record since begin

    def unbind() -> None:
        _, vf = current()
        ctx.binder.to_host(vf, original_driver())

    def knobs() -> None:
        pf, _ = current()
        required = frozenset({Knob.SPOOFCHK, Knob.VLAN} | ({Knob.MAC} if mac else set()))
        request = KnobRequest(mac=mac, vlan=vlan, qos=qos, spoofchk=True, required=required)
        knob_reports.append(program_vf(ctx, pf, index, request))

    def unknobs() -> None:
        pf, vf = current()
        restore_knobs(ctx, pf, vf, exact=True)

    def plug() -> None:
        _, vf = current()
        assert vf.address is not None
        if vf.address not in ctx.virt.hostdev_addresses(vm):
            ctx.virt.attach_hostdev(vm, hostdev_xml(vf.address, managed=False), live=True)
        if vf.address not in ctx.virt.hostdev_addresses(vm):
            raise Conflict(
                f"libvirt accepted {vf_id} for VM {vm!r} but its live XML does not show it"
            )

    def unplug() -> None:
        _, vf = current()
        if vf.address is not None and ctx.virt.domain_exists(vm):
            unplug_and_wait(ctx, vm, vf.address, vf_id, policy=UnplugPolicy())

    def complete() -> None:
        ctx.store.set_state(vf_id, expected=AllocationState.RESERVED, new=AllocationState.ATTACHED)
        EventLog(ctx.store).add("attach", attach_subject(vf_id, vm), "attached")

    def abandon() -> None:
        ctx.store.remove(vf_id, expected=AllocationState.RESERVED)
        EventLog(ctx.store).add("attach", attach_subject(vf_id, vm), "undone")

    steps = (
        Step("bind", bind, unbind, "rebind the host driver"),
        Step("knobs", knobs, unknobs, "restore the VF's settings"),
        Step("plug", plug, unplug, "unplug it again", barrier=True),
    )
    assert tuple(s.name for s in steps) == ATTACH_STEPS
    return Plan(
        ChangeKind.ATTACH, attach_subject(vf_id, vm), intent, steps, Direction.BACKWARD,
        complete, abandon,
    )  # fmt: skip


def rebuild_attach(ctx: HostContext, entry: JournalEntry) -> Plan:
    return attach_plan(ctx, dict(entry.intent))


def _attach_intent(
    intent: dict[str, JsonValue],
) -> tuple[str, str, int, MacAddress | None, int, int]:
    vm, pf, index = intent.get("vm"), intent.get("pf"), intent.get("index")
    mac, vlan, qos = intent.get("mac"), intent.get("vlan"), intent.get("qos")
    if not (
        isinstance(vm, str) and isinstance(pf, str) and type(index) is int
        and (mac is None or isinstance(mac, str)) and type(vlan) is int and type(qos) is int
    ):  # fmt: skip
        raise InvalidInput(f"an attach intent needs vm, pf, index, mac, vlan, qos: {intent!r}")
    return vm, pf, index, MacAddress.parse(mac) if mac else None, vlan, qos


def _check_running(ctx: HostContext, vm: str) -> None:
    """Refuse a VM that does not exist or is neither running nor paused, before anything
    changes: libvirt would refuse the hot-plug only after the VF was bound and set."""
    state = ctx.virt.domain_state(vm)
    if state is None:
        raise NotFound(f"no VM named {vm!r}", hint="see `virsh list --all`; start the VM first")
    if state not in (DomainState.RUNNING, DomainState.PAUSED):
        raise Conflict(
            f"VM {vm!r} is {state}, not running: a VF can only be hot-plugged into a running VM",
            hint=f"start it first: virsh start {shlex.quote(vm)}",
        )


def _in_journal(ctx: HostContext, pf_name: str) -> dict[int, JournalEntry]:
    """The VFs of ``pf_name`` a change left in the journal names (a bind, an attach, a
    release whose retry waits), by index."""
    found: dict[int, JournalEntry] = {}
    for entry in Journal(ctx.store).open_entries():
        index = entry.intent.get("index")
        if entry.intent.get("pf") == pf_name and type(index) is int:
            found.setdefault(index, entry)
    return found


def _choose_vf(ctx: HostContext, pf: PfInfo, index: int | None) -> VfInfo:
    if pf.bus is not PfBus.PCI:
        raise Unsupported(
            f"PF {pf.name} is a {pf.bus} device; its VFs are not PCI functions",
            hint="VMs can only take VFs of PCI PFs",
        )
    held = {a.vf.index: a.vm.name for a in ctx.store.allocations(pf=pf.name)}
    quarantined = {q.vf.index: q.reason for q in QuarantineTable(ctx.store).all(pf=pf.name)}
    operators = {vf.index for vf in OperatorVfio(ctx.store).all() if vf.pf == pf.name}
    pending = _in_journal(ctx, pf.name)
    ready, missing = readiness(pf, pf.num_vfs)
    if index is not None:
        vf = pf.vf(index)
        if index in held:
            raise Conflict(f"{vf.id} is already assigned to VM {held[index]!r}")
        if index in pending:  # its undo or completion would act on the VM's VF later
            entry = pending[index]
            raise Conflict(
                f"{vf.id} has an unfinished {entry.kind} in the journal (entry {entry.id}: "
                f"{entry.subject})",
                hint="`qtagent status` shows when it is retried; or choose another VF",
            )
        if index in operators:
            raise Conflict(
                f"{vf.id} was bound to vfio-pci by the operator (qtagent vf bind): it is "
                "theirs, for a user outside qtagent",
                hint=f"give it back first (qtagent vf bind {pf.name} {index} --driver host), "
                "or choose another VF",
            )
        if index in quarantined:
            raise Conflict(
                f"{vf.id} is quarantined: {quarantined[index]}",
                hint=f"deal with the cause, then `qtagent vf unquarantine {pf.name} {index}`; "
                "or choose another VF",
            )
        why = dict(missing).get(index)
        if why:
            raise Conflict(f"{vf.id} is not ready: {why}", hint="wait for it, or choose another VF")
        return vf
    for candidate in ready:
        vf = pf.vf(candidate)
        aside = candidate in quarantined or candidate in operators or candidate in pending
        if candidate not in held and not aside and vf.driver != VFIO:
            return vf
    raise Conflict(
        f"PF {pf.name} has no free VF ({pf.num_vfs} VFs, {len(held)} assigned, "
        f"{len(quarantined)} quarantined)",
        hint=f"add VFs with `qtagent pf set-vfs {pf.name} N`, or detach one",
    )

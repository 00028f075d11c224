"""Give a VF to a running VM, and take it back (FIELD-CASES C2, C4, C7, C9).

attach: every check first (the VM exists and runs, the VF exists, is free and its
IOMMU group is viable), then reserve it in the database (so nothing is handed out
twice), record its original settings and driver, bind it to vfio-pci, program
MAC/VLAN/spoofchk through the PF, hot-plug it, and confirm libvirt shows it. A
failure at any step undoes the steps before it, in reverse: the VF gets its original
settings back exactly (its MAC too, all-zero or not) and its host driver.

detach: only the VM that holds the VF may release it. Hot-unplug, wait until
libvirt's live XML no longer shows the device (a guest that never answers the
eject leaves it in 'releasing', never free), restore the original settings
(an all-zero MAC the driver refuses becomes a random locally administered
one), rebind the original driver, verify by reading back, then free it.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from qtagent.effects.knobs import apply_knobs
from qtagent.effects.vfcount import readiness
from qtagent.errors import Conflict, InvalidInput, NotFound, QtagentError, Timeout, Unsupported
from qtagent.model.host import PfBus, PfInfo, VfInfo, VfSettings
from qtagent.model.types import MacAddress, PciAddress, VfId, check_vlan, check_vm_name
from qtagent.netlink.api import Knob
from qtagent.ops.context import HostContext
from qtagent.plan.binding import check_vfio_viable
from qtagent.plan.knob_report import KnobOutcome, KnobReport
from qtagent.plan.knobs import KnobRequest
from qtagent.store.records import AllocationState, VmRef
from qtagent.virt.api import DomainState
from qtagent.virt.domain_xml import hostdev_xml
from qtagent.virt.errors import LibvirtFailure

log = logging.getLogger(__name__)

VFIO = "vfio-pci"


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


@dataclass(frozen=True, slots=True)
class DetachResult:
    vm: str
    vf: VfId
    restored: VfSettings
    driver: str | None
    random_mac: bool

    def to_dict(self) -> dict[str, object]:
        settings = self.restored
        return {
            "vm": self.vm,
            "pf": self.vf.pf,
            "index": self.vf.index,
            "driver": self.driver,
            "mac": str(settings.mac) if settings.mac else None,
            "random_mac": self.random_mac,
            "vlan": settings.vlan,
            "qos": settings.qos,
            "spoofchk": settings.spoofchk,
            "trust": settings.trust,
        }


@dataclass(frozen=True, slots=True)
class UnplugPolicy:
    """How long to wait for the guest and QEMU to let go of an unplugged VF, and how
    often to look (seconds; each finite and above zero, or the wait never ends)."""

    timeout_s: float = 60.0
    poll_s: float = 0.25

    def __post_init__(self) -> None:
        for what, seconds in (("unplug timeout", self.timeout_s), ("poll interval", self.poll_s)):
            if not (math.isfinite(seconds) and seconds > 0):
                raise InvalidInput(
                    f"the {what} must be a finite number of seconds above 0, not {seconds!r}",
                    hint="give seconds as a plain number, e.g. 60",
                )


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
    _check_running(ctx, vm)
    pf = ctx.pf(pf_name)
    vf = _choose_vf(ctx, pf, index)
    check_vfio_viable(vf)
    address = vf.address
    assert address is not None  # check_vfio_viable refuses VFs that are not PCI functions
    ctx.store.reserve(vf.id, VmRef(vm), mac=mac, vlan=vlan, qos=qos)
    undo: list[tuple[str, Callable[[], object]]] = []
    try:
        ctx.store.record_originals(vf.id, vf.settings, vf.driver)
        ctx.binder.to_vfio(vf, remember=lambda _driver: None)  # recorded just above
        undo.append(("rebind the host driver", lambda: ctx.binder.to_host(vf, vf.driver)))
        required = frozenset({Knob.SPOOFCHK, Knob.VLAN} | ({Knob.MAC} if mac else set()))
        request = KnobRequest(mac=mac, vlan=vlan, qos=qos, spoofchk=True, required=required)
        assert pf.ifindex is not None
        undo.append(("restore the VF's settings", lambda: _restore_knobs(ctx, pf, vf, exact=True)))
        report = apply_knobs(ctx.netlink, pf.ifindex, vf.index, request, pf_name=pf.netdev)
        xml = hostdev_xml(address, managed=False)
        ctx.virt.attach_hostdev(vm, xml, live=True)
        undo.append(("unplug it again", lambda: _unplug_if_shown(ctx, vm, address, xml)))
        if address not in ctx.virt.hostdev_addresses(vm):
            raise Conflict(
                f"libvirt accepted {vf.id} for VM {vm!r} but its live XML does not show it"
            )
        ctx.store.set_state(vf.id, expected=AllocationState.RESERVED, new=AllocationState.ATTACHED)
    except QtagentError as err:
        _undo(undo, err)
        ctx.store.set_state(vf.id, expected=AllocationState.RESERVED, new=AllocationState.RELEASING)
        ctx.store.remove(vf.id, expected=AllocationState.RELEASING)
        raise
    log.info("attached %s (%s) to VM %r", vf.id, address, vm)
    return AttachResult(vm, vf, mac, vlan, report)


def detach(
    ctx: HostContext,
    vm: str,
    pf_name: str,
    index: int,
    *,
    policy: UnplugPolicy = UnplugPolicy(),
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> DetachResult:
    """Hot-unplug VF ``index`` of ``pf_name`` from ``vm`` and give it back clean.

    ``clock`` and ``sleep`` time the wait for the guest; by default the context's."""
    check_vm_name(vm)
    pf = ctx.pf(pf_name, settings=False)
    vf = pf.vf(index)
    allocation = ctx.store.allocation(vf.id)
    if allocation is None:
        raise NotFound(f"{vf.id} is not assigned to any VM", hint="see `qtagent vf list`")
    if allocation.vm.name != vm:
        raise Conflict(
            f"{vf.id} belongs to VM {allocation.vm.name!r}, not {vm!r}",
            hint="a VM can only release its own VFs",
        )
    retry = allocation.state is AllocationState.RELEASING
    if not retry:
        ctx.store.set_state(vf.id, expected=allocation.state, new=AllocationState.RELEASING)
    if vf.address is not None and ctx.virt.domain_exists(vm):
        clock, sleep = clock or ctx.clock, sleep or ctx.sleep
        _unplug(ctx, vm, vf, retry=retry, policy=policy, clock=clock, sleep=sleep)
    result = _restore(ctx, pf, vf, vm)
    ctx.store.remove(vf.id, expected=AllocationState.RELEASING)
    log.info("released %s from VM %r", vf.id, vm)
    return result


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


def _choose_vf(ctx: HostContext, pf: PfInfo, index: int | None) -> VfInfo:
    if pf.bus is not PfBus.PCI:
        raise Unsupported(
            f"PF {pf.name} is a {pf.bus} device; its VFs are not PCI functions",
            hint="VMs can only take VFs of PCI PFs",
        )
    held = {a.vf.index: a.vm.name for a in ctx.store.allocations(pf=pf.name)}
    ready, missing = readiness(pf, pf.num_vfs)
    if index is not None:
        vf = pf.vf(index)
        if index in held:
            raise Conflict(f"{vf.id} is already assigned to VM {held[index]!r}")
        why = dict(missing).get(index)
        if why:
            raise Conflict(f"{vf.id} is not ready: {why}", hint="wait for it, or choose another VF")
        return vf
    for candidate in ready:
        vf = pf.vf(candidate)
        if candidate not in held and vf.driver != VFIO:
            return vf
    raise Conflict(
        f"PF {pf.name} has no free VF ({pf.num_vfs} VFs, {len(held)} assigned)",
        hint=f"add VFs with `qtagent pf set-vfs {pf.name} N`, or detach one",
    )


def _unplug(
    ctx: HostContext,
    vm: str,
    vf: VfInfo,
    *,
    retry: bool,
    policy: UnplugPolicy,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Ask libvirt to unplug ``vf`` and wait until the live XML no longer shows it.

    On a retry (an earlier detach asked and timed out) libvirt refuses a second
    request while the guest has not answered the first ("already in the process
    of unplug"): that refusal is not an error, the wait simply starts again."""
    address = vf.address
    assert address is not None
    if address not in ctx.virt.hostdev_addresses(vm):
        return
    try:
        ctx.virt.detach_hostdev(vm, hostdev_xml(address, managed=False), live=True)
    except LibvirtFailure as err:
        if not retry:
            raise
        log.info("%s: unplug from VM %r not requested again: %s", vf.id, vm, err.libvirt_message)
    deadline = clock() + policy.timeout_s
    while address in ctx.virt.hostdev_addresses(vm):
        if clock() >= deadline:
            raise Timeout(
                f"VM {vm!r} has not released {vf.id} ({address}) {policy.timeout_s:.0f} s after "
                "the unplug request; the VF stays reserved, not free",
                hint="the guest OS must answer the PCI eject request; "
                f"retry `qtagent vm detach {vm} {vf.id.pf} {vf.index}` or stop the VM",
            )
        sleep(policy.poll_s)


def _restore(ctx: HostContext, pf: PfInfo, vf: VfInfo, vm: str) -> DetachResult:
    original = ctx.store.originals(vf.id)
    driver = original.driver if original else None
    random_mac = _restore_knobs(ctx, pf, vf)
    if vf.address is not None:
        ctx.binder.to_host(vf, driver)
    now = ctx.pf(pf.name).vf(vf.index)
    _verify_restored(vf.id, original.settings if original else None, now, random_mac)
    return DetachResult(vm, vf.id, now.settings, now.driver, random_mac)


def _restore_knobs(ctx: HostContext, pf: PfInfo, vf: VfInfo, *, exact: bool = False) -> bool:
    """Put back the VF's original knobs. Returns True if a random MAC was set instead
    of the original (C4): an all-zero original would leave released VFs sharing one
    admin MAC (zero), and a driver may refuse the original outright; either way the
    VF gets a random, locally administered unicast MAC, never the VM's.

    ``exact`` (the undo of a failed attach, before any VM had the VF): an all-zero
    original comes back as it was; only a MAC the driver refuses, or one never read,
    becomes a random one."""
    original = ctx.store.originals(vf.id)
    if original is None or pf.ifindex is None:
        return False
    settings = original.settings
    fresh = settings.mac is None or (settings.mac.is_zero and not exact)
    request = KnobRequest(
        mac=MacAddress.random_local_unicast() if fresh else settings.mac,
        vlan=settings.vlan,
        qos=settings.qos if settings.vlan else 0,
        spoofchk=settings.spoofchk,
        trust=settings.trust,
        required=frozenset(),
    )
    report = apply_knobs(ctx.netlink, pf.ifindex, vf.index, request, pf_name=pf.netdev)
    mac_result = report.result(Knob.MAC)
    if fresh:
        return True
    if mac_result is not None and mac_result.outcome is KnobOutcome.REJECTED:
        new = MacAddress.random_local_unicast()
        log.info("%s: driver refused MAC %s; setting random %s", vf.id, settings.mac, new)
        retry = KnobRequest(mac=new, required=frozenset({Knob.MAC}))
        apply_knobs(ctx.netlink, pf.ifindex, vf.index, retry, pf_name=pf.netdev)
        return True
    return False


def _verify_restored(
    vf_id: VfId, original: VfSettings | None, now: VfInfo, random_mac: bool
) -> None:
    if original is None:
        return
    wrong = []
    if now.settings.vlan != original.vlan:
        wrong.append(f"VLAN {now.settings.vlan} (was {original.vlan})")
    if original.spoofchk is not None and now.settings.spoofchk != original.spoofchk:
        wrong.append(f"spoofchk {now.settings.spoofchk} (was {original.spoofchk})")
    if original.trust is not None and now.settings.trust != original.trust:
        wrong.append(f"trust {now.settings.trust} (was {original.trust})")
    if wrong:
        raise Conflict(
            f"{vf_id} did not read back as restored: {', '.join(wrong)}; it stays reserved",
            hint="check `ip link show` on its PF; the daemon will retry the release",
        )


def _unplug_if_shown(ctx: HostContext, vm: str, address: PciAddress, xml: str) -> None:
    """Undo a hot-plug, if the live XML shows the device (a plug QEMU dropped does not)."""
    if address in ctx.virt.hostdev_addresses(vm):
        ctx.virt.detach_hostdev(vm, xml, live=True)


def _undo(steps: list[tuple[str, Callable[[], object]]], failure: QtagentError) -> None:
    """Run the undo ``steps`` newest first; each that fails is logged and noted on
    ``failure`` (the error the caller raises), so the operator learns what is left."""
    for what, step in reversed(steps):
        try:
            step()
        except QtagentError as err:
            log.warning("undo step failed: could not %s: %s", what, err.message)
            failure.add_note(f"undo: could not {what}: {err.message}")

"""Take a VF back from a VM and return it to the free pool clean (FIELD-CASES C4, C9).

A release is a journaled change that only goes forward: once asked, it is
finished, by this process or, after a crash or a guest that would not let go,
by recovery (:mod:`qtagent.ops.recover`). Its steps:

1. ``unplug``: hot-unplug, and wait until libvirt's live XML no longer shows
   the device (a guest that never answers the eject keeps it: Timeout, and the
   release waits in the journal, the VF ``releasing``, never free);
2. ``reset``: a function-level reset, where the device offers one, while the VF
   is still on vfio-pci and no VM has it;
3. ``restore``: the original MAC (a random local one if it was all-zero or the
   driver refuses it), VLAN, QoS, spoofchk and trust, through the PF;
4. ``rebind``: the original host driver, unless a process still holds the VF's
   VFIO group (then the VF is quarantined on vfio-pci: unbinding would block);
5. ``verify``: read back; a VF that does not read back as restored is quarantined.

Only the VM that holds a VF may release it, and a release that names a lease
(the token of one hand-out) is a no-op for any other hand-out of the same VF:
a late or repeated release never touches a VF given to someone else since.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from qtagent.errors import Conflict, InvalidInput, NotFound, Timeout
from qtagent.journal.runner import Plan, Runner, Step
from qtagent.model.host import PfInfo, VfInfo, VfSettings
from qtagent.model.types import MacAddress, PciAddress, VfId, check_vm_name
from qtagent.netlink.api import Knob
from qtagent.ops.context import HostContext
from qtagent.ops.program import program_vf
from qtagent.plan.knob_report import KnobOutcome
from qtagent.plan.knobs import KnobRequest
from qtagent.store.journal import ChangeKind, Direction, JournalEntry, JsonValue
from qtagent.store.quarantine import EventLog, QuarantineTable
from qtagent.store.records import AllocationState
from qtagent.sysfs.pci import driver_of, iommu_group_of
from qtagent.sysfs.vfio_users import vfio_group_holders
from qtagent.virt.domain_xml import hostdev_xml
from qtagent.virt.errors import LibvirtFailure

log = logging.getLogger(__name__)

VFIO = "vfio-pci"
RELEASE_STEPS = ("unplug", "reset", "restore", "rebind", "verify")


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


@dataclass(frozen=True, slots=True)
class DetachResult:
    """``already_released``: the lease named was not (or no longer) the VF's, and
    nothing was done. ``quarantined``: why the VF did not go back to the free pool."""

    vm: str
    vf: VfId
    restored: VfSettings
    driver: str | None
    random_mac: bool
    already_released: bool = False
    quarantined: str | None = None

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
            "already_released": self.already_released,
            "quarantined": self.quarantined,
        }


@dataclass(slots=True)
class _Progress:
    """What the steps of one release found, for its result."""

    random_mac: bool = False
    quarantined: str | None = None


def detach(
    ctx: HostContext,
    vm: str,
    pf_name: str,
    index: int,
    *,
    lease: str | None = None,
    policy: UnplugPolicy = UnplugPolicy(),
) -> DetachResult:
    """Hot-unplug VF ``index`` of ``pf_name`` from ``vm`` and give it back clean.

    ``lease`` (the daemon's releases): a VF whose allocation is not that lease is
    left alone and reported ``already_released``. Without it (an operator at the
    CLI), the VF must be held by ``vm``.
    """
    from qtagent.ops.recover import changing  # the recovery registry imports this module

    check_vm_name(vm)
    with changing(ctx) as runner:
        pf = ctx.pf(pf_name, settings=False)
        vf = pf.vf(index)
        allocation = ctx.store.allocation(vf.id)
        if lease is not None and (allocation is None or allocation.lease != lease):
            return DetachResult(vm, vf.id, vf.settings, vf.driver, False, already_released=True)
        if allocation is None:
            raise NotFound(f"{vf.id} is not assigned to any VM", hint="see `qtagent vf list`")
        if allocation.vm.name != vm:
            raise Conflict(
                f"{vf.id} belongs to VM {allocation.vm.name!r}, not {vm!r}",
                hint="a VM can only release its own VFs",
            )
        attaching = _pending_attach(runner, vf.id)
        if attaching is not None:  # its undo would later act on whoever has the VF then
            raise Conflict(
                f"{vf.id} is not attached yet: its assignment to VM {vm!r} waits in the "
                f"journal (entry {attaching.id}), which undoes it and frees the VF",
                hint="`qtagent status` shows when it is retried (the guest must answer "
                "the unplug); nothing was changed",
            )
        progress = _Progress()
        intent: dict[str, JsonValue] = {"vm": vm, "pf": pf.name, "index": index}
        plan = release_plan(ctx, intent, policy=policy, progress=progress)
        pending = _pending_release(runner, plan.subject)
        if pending is not None:  # an earlier release of this VF waits in the journal
            runner.forward(pending, plan)
        else:
            state = allocation.state

            def begin() -> None:
                if state is not AllocationState.RELEASING:
                    ctx.store.set_state(vf.id, expected=state, new=AllocationState.RELEASING)

            runner.run(plan, begin=begin)
        now = ctx.pf(pf.name).vf(index)
        log.info("released %s from VM %r", vf.id, vm)
        return DetachResult(
            vm, vf.id, now.settings, now.driver, progress.random_mac,
            quarantined=progress.quarantined,
        )  # fmt: skip


def release_subject(vf: VfId) -> str:
    return f"{vf.pf} VF {vf.index}"


def release_plan(
    ctx: HostContext,
    intent: dict[str, JsonValue],
    *,
    policy: UnplugPolicy = UnplugPolicy(),
    progress: _Progress | None = None,
) -> Plan:
    """The release of ``intent`` ({vm, pf, index}) as a plan; recovery rebuilds it the
    same way from the journal."""
    vm, pf_name, index = _release_intent(intent)
    vf_id = VfId(pf_name, index)
    found = progress if progress is not None else _Progress()

    def current() -> tuple[PfInfo, VfInfo]:
        pf = ctx.pf(pf_name, settings=False)
        return pf, pf.vf(index)

    def unplug() -> None:
        _, vf = current()
        if vf.address is not None and ctx.virt.domain_exists(vm):
            unplug_and_wait(ctx, vm, vf.address, vf_id, policy=policy)

    def reset() -> None:
        _, vf = current()
        if vf.address is None or vf.driver != VFIO:
            return  # only while on vfio-pci: no host driver sees the reset
        if not (ctx.writer.pci_device(vf.address) / "reset").exists():
            log.info("%s (%s) offers no function-level reset; skipped", vf_id, vf.address)
            return
        ctx.writer.reset(vf.address)

    def restore() -> None:
        pf, vf = current()
        found.random_mac = restore_knobs(ctx, pf, vf)

    def rebind() -> None:
        _, vf = current()
        if vf.address is None:
            return
        holders = vfio_holders(ctx, vf.address)
        if holders:
            found.quarantined = f"its VFIO group is still held by {holders}"
            return
        original = ctx.store.originals(vf_id)
        ctx.binder.to_host(vf, original.driver if original else None)

    def verify() -> None:
        if found.quarantined is None:
            found.quarantined = _not_restored(ctx, vf_id)

    def complete() -> None:
        ctx.store.remove(vf_id, expected=AllocationState.RELEASING)
        events = EventLog(ctx.store)
        if found.quarantined is not None:
            QuarantineTable(ctx.store).add(vf_id, found.quarantined)
            events.add("quarantine", release_subject(vf_id), found.quarantined)
        events.add("release", release_subject(vf_id), f"released from VM {vm!r}")

    steps = (
        Step("unplug", unplug),
        Step("reset", reset),
        Step("restore", restore),
        Step("rebind", rebind),
        Step("verify", verify),
    )
    assert tuple(s.name for s in steps) == RELEASE_STEPS
    return Plan(
        ChangeKind.RELEASE, release_subject(vf_id), intent, steps, Direction.FORWARD, complete
    )


def rebuild_release(ctx: HostContext, entry: JournalEntry) -> Plan:
    return release_plan(ctx, dict(entry.intent))


def unplug_and_wait(
    ctx: HostContext, vm: str, address: PciAddress, vf_id: VfId, *, policy: UnplugPolicy
) -> None:
    """Ask libvirt to unplug ``address`` from ``vm`` and wait until the live XML no
    longer shows it.

    When a request is already pending (an earlier release asked and timed out),
    libvirt refuses a second one while the guest has not answered the first
    ("already in the process of unplug"): that refusal is not an error, the wait
    simply starts again."""
    if address not in ctx.virt.hostdev_addresses(vm):
        return
    try:
        ctx.virt.detach_hostdev(vm, hostdev_xml(address, managed=False), live=True)
    except LibvirtFailure as err:
        if address not in ctx.virt.hostdev_addresses(vm):
            return
        log.info("%s: unplug from VM %r not requested again: %s", vf_id, vm, err.libvirt_message)
    deadline = ctx.clock() + policy.timeout_s
    while address in ctx.virt.hostdev_addresses(vm):
        if ctx.clock() >= deadline:
            raise Timeout(
                f"VM {vm!r} has not released {vf_id} ({address}) {policy.timeout_s:.0f} s after "
                "the unplug request; the VF stays reserved, not free",
                hint="the guest OS must answer the PCI eject request; "
                f"retry `qtagent vm detach {vm} {vf_id.pf} {vf_id.index}` or stop the VM",
            )
        ctx.sleep(policy.poll_s)


def restore_knobs(ctx: HostContext, pf: PfInfo, vf: VfInfo, *, exact: bool = False) -> bool:
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
    report = program_vf(ctx, pf, vf.index, request)
    mac_result = report.result(Knob.MAC)
    if fresh:
        return True
    if mac_result is not None and mac_result.outcome is KnobOutcome.REJECTED:
        new = MacAddress.random_local_unicast()
        log.info("%s: driver refused MAC %s; setting random %s", vf.id, settings.mac, new)
        retry = KnobRequest(mac=new, required=frozenset({Knob.MAC}))
        program_vf(ctx, pf, vf.index, retry)
        return True
    return False


def _not_restored(ctx: HostContext, vf_id: VfId) -> str | None:
    """Why the VF does not read back as released (None: it does): its driver, and the
    settings its originals had. The MAC may differ (a random one replaces a zero)."""
    original = ctx.store.originals(vf_id)
    if original is None:
        return None
    now = ctx.pf(vf_id.pf).vf(vf_id.index)
    was = original.settings
    wrong = []
    if now.address is not None and driver_of(ctx.paths.sysfs_root, now.address) != (
        original.driver
    ):
        wrong.append(f"driver {now.driver or 'none'} (was {original.driver or 'none'})")
    if now.settings.vlan != was.vlan:
        wrong.append(f"VLAN {now.settings.vlan} (was {was.vlan})")
    if was.spoofchk is not None and now.settings.spoofchk != was.spoofchk:
        wrong.append(f"spoofchk {now.settings.spoofchk} (was {was.spoofchk})")
    if was.trust is not None and now.settings.trust != was.trust:
        wrong.append(f"trust {now.settings.trust} (was {was.trust})")
    if not wrong:
        return None
    return "did not read back as restored: " + ", ".join(wrong)


def vfio_holders(ctx: HostContext, address: PciAddress) -> str:
    """The processes holding the VF's VFIO group open ("" if none), for the reason."""
    group = iommu_group_of(ctx.paths.sysfs_root, address)
    if group is None:
        return ""
    node = ctx.paths.dev_root / "vfio" / str(group)
    holders = vfio_group_holders(ctx.paths.proc_root, node)
    return ", ".join(f"pid {pid} ({comm})" for pid, comm in holders)


def _pending_release(runner: Runner, subject: str) -> JournalEntry | None:
    for entry in runner.journal.open_entries():
        if entry.kind is ChangeKind.RELEASE and entry.subject == subject:
            return entry
    return None


def _pending_attach(runner: Runner, vf: VfId) -> JournalEntry | None:
    for entry in runner.journal.open_entries():
        if entry.kind is ChangeKind.ATTACH and (
            entry.intent.get("pf"),
            entry.intent.get("index"),
        ) == (vf.pf, vf.index):
            return entry
    return None


def _release_intent(intent: dict[str, JsonValue]) -> tuple[str, str, int]:
    vm, pf, index = intent.get("vm"), intent.get("pf"), intent.get("index")
    if not (isinstance(vm, str) and isinstance(pf, str) and type(index) is int):
        raise InvalidInput(f"a release intent needs vm, pf and index, not {intent!r}")
    return vm, pf, index

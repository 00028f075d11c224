"""Giving VFs to VMs and taking them back (qtagent.ops.assign; FIELD-CASES C2, C4, C9),
through a real HostContext over complete fakes: the sysfs tree with the kernel's PCI
driver core (tests/fakes/pci_bus.py), the VF tables over netlink, libvirt, and the
real SQLite store. Every assertion reads an outcome: driver links in the tree, the
VF table, the VM's devices, the database.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qtagent.effects.knobs import KnobsNotApplied
from qtagent.errors import (
    Conflict,
    InvalidInput,
    KernelError,
    NotFound,
    QtagentError,
    Timeout,
    TransientKernelError,
    Unsupported,
)
from qtagent.model.host import VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress, PciAddress, VfId
from qtagent.netlink.api import Knob
from qtagent.ops.assign import UnplugPolicy, attach, detach
from qtagent.ops.context import HostContext
from qtagent.ops.provision import set_vf_count
from qtagent.store.records import AllocationState
from qtagent.sysfs.pci import iommu_group_of
from qtagent.virt.api import DomainState
from qtagent.virt.errors import VirtConflict
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.pci_bus import FakePciBus
from tests.fakes.sysfs_tree import FakeNetdev, FakeNetdevsim, igb_host

VM_MAC = MacAddress.parse("52:54:00:aa:00:01")
ADMIN_MAC = MacAddress.parse("02:11:22:33:44:55")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    """One igb PF with 4 VFs on igbvf, spoof checking off (so that attach must turn
    it on and release must turn it off again); VMs "a" and "b" running."""
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=4))
    for index in range(4):
        rig.netlink.set_vf(rig.pf_ifindex, index, spoofchk=False)
    rig.vm("a")
    rig.vm("b")
    yield rig
    rig.ctx.close()


@dataclass(frozen=True)
class Observed:
    """Everything a failed or refused operation must leave as it was."""

    drivers: tuple[str | None, ...]
    overrides: tuple[str | None, ...]
    netdevs: tuple[bool, ...]
    settings: tuple[VfSettings, ...]
    hostdevs: tuple[tuple[str, tuple[PciAddress, ...]], ...]
    allocations: tuple[tuple[int, str, AllocationState], ...]
    vfio_nodes: tuple[str, ...]


def observe(rig: FakeHostRig) -> Observed:
    indexes = range(len(rig.netlink.pfs[rig.pf_ifindex].vfs))
    addresses = [str(rig.address(i)) for i in indexes]
    return Observed(
        drivers=tuple(rig.bus.driver(a) for a in addresses),
        overrides=tuple(rig.bus.override(a) for a in addresses),
        netdevs=tuple((rig.tree.device_dir(a) / "net").is_dir() for a in addresses),
        settings=tuple(rig.settings(i) for i in indexes),
        hostdevs=tuple((name, rig.hostdevs(name)) for name in sorted(rig.virt.domains)),
        allocations=tuple(
            (a.vf.index, a.vm.name, a.state) for a in rig.ctx.store.allocations(pf=rig.pf_name)
        ),
        vfio_nodes=tuple(rig.vfio_nodes()),
    )


def assert_free(rig: FakeHostRig, index: int) -> None:
    """VF ``index`` is back on the host: igbvf with its netdev, no override, no VFIO
    node, no allocation nor originals in the database, in no VM."""
    address = rig.address(index)
    assert rig.driver(index) == "igbvf"
    assert rig.bus.override(str(address)) is None
    assert (rig.tree.device_dir(str(address)) / "net").is_dir()
    assert rig.vf(index).netdev is not None
    assert str(iommu_group_of(rig.tree.root, address)) not in rig.vfio_nodes()
    assert rig.allocation(index) is None
    assert rig.ctx.store.originals(VfId(rig.pf_name, index)) is None
    assert all(address not in rig.hostdevs(vm) for vm in rig.virt.domains)


def is_local_unicast(mac: MacAddress | None) -> bool:
    return mac is not None and not mac.is_zero and mac.octets[0] & 0x03 == 0x02


# ---------------------------------------------------------------- the happy path


def test_attach_binds_programs_and_plugs_then_detach_restores_everything(
    rig: FakeHostRig,
) -> None:
    result = attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100, qos=3)

    address = rig.address(1)
    assert result.vf.address == address and result.knobs.complete
    assert rig.driver(1) == "vfio-pci"
    assert rig.bus.override(str(address)) == "vfio-pci"
    assert not (rig.tree.device_dir(str(address)) / "net").exists()  # igbvf's netdev went
    group = rig.vf(1).iommu_group
    assert group is not None and rig.vfio_nodes() == [str(group.number)]
    programmed = rig.settings(1)
    assert (programmed.mac, programmed.vlan, programmed.qos) == (VM_MAC, 100, 3)
    assert programmed.spoofchk is True
    assert rig.hostdevs("a") == (address,) and rig.hostdevs("b") == ()
    allocation = rig.allocation(1)
    assert allocation is not None
    assert (allocation.vm.name, allocation.state) == ("a", AllocationState.ATTACHED)
    assert (allocation.mac, allocation.vlan, allocation.qos) == (VM_MAC, 100, 3)
    originals = rig.ctx.store.originals(VfId(rig.pf_name, 1))
    assert originals is not None and originals.driver == "igbvf"
    assert (originals.settings.mac, originals.settings.spoofchk) == (ZERO_MAC, False)
    # The other VFs were not touched.
    assert all(rig.driver(i) == "igbvf" for i in (0, 2, 3))
    assert {vf for vf, _, _ in rig.netlink.sent_knobs()} == {1}

    released = detach(rig.ctx, "a", rig.pf_name, 1)

    assert_free(rig, 1)
    restored = rig.settings(1)
    assert (restored.vlan, restored.qos, restored.spoofchk, restored.trust) == (0, 0, False, False)
    # C4: the original all-zero MAC comes back as a random locally administered one.
    assert is_local_unicast(restored.mac) and restored.mac != VM_MAC
    assert released.random_mac and released.driver == "igbvf"
    assert released.restored.mac == restored.mac


@pytest.mark.parametrize(
    ("original", "refused", "random"),
    [(ADMIN_MAC, False, False), (ADMIN_MAC, True, True)],
    ids=["original-mac-restored", "original-mac-refused"],
)
def test_detach_restores_a_set_admin_mac_or_a_random_one_if_the_driver_refuses_it(
    rig: FakeHostRig, original: MacAddress, refused: bool, random: bool
) -> None:
    rig.netlink.set_vf(rig.pf_ifindex, 2, mac=original)
    attach(rig.ctx, "a", rig.pf_name, index=2, mac=VM_MAC)
    if refused:
        rig.netlink.fail_next(rig.pf_ifindex, 2, Knob.MAC, errno.EINVAL)

    released = detach(rig.ctx, "a", rig.pf_name, 2)

    mac = rig.settings(2).mac
    assert released.random_mac is random
    if random:
        assert is_local_unicast(mac) and mac not in (original, VM_MAC)
    else:
        assert mac == original
    assert_free(rig, 2)


# ---------------------------------------------------------------- attach failures


def refuse_override(rig: FakeHostRig) -> None:
    rig.bus.fail_next("driver_override", errno.EINVAL)


def refuse_unbind(rig: FakeHostRig) -> None:
    rig.bus.fail_next("unbind", errno.EBUSY)


def vfio_pci_not_loaded(rig: FakeHostRig) -> None:
    rig.bus.loaded.discard("vfio-pci")  # drivers_probe leaves the VF driverless


def no_vfio_node(rig: FakeHostRig) -> None:
    rig.bus.vfio_nodes = False  # vfio-pci binds, /dev/vfio/<group> never appears


def reject_vlan(rig: FakeHostRig) -> None:
    rig.netlink.fail_next(rig.pf_ifindex, 1, Knob.VLAN, errno.EINVAL)


def libvirt_refuses(rig: FakeHostRig) -> None:
    rig.virt.refuse_next_attach(55, "Requested operation is not valid: domain is not running")


def hotplug_vanishes(rig: FakeHostRig) -> None:
    rig.virt.domains["a"].drops_hotplug = True


Inject = Callable[[FakeHostRig], None]

BIND_FAILURES: list[tuple[Inject, type[QtagentError], str]] = [
    (refuse_override, KernelError, "driver_override failed"),
    (refuse_unbind, TransientKernelError, "unbind failed"),
    (vfio_pci_not_loaded, Timeout, "on driver none, not vfio-pci"),
    (no_vfio_node, KernelError, "did not appear"),
]
LATER_FAILURES: list[tuple[Inject, type[QtagentError], str]] = [
    (reject_vlan, KnobsNotApplied, "required vlan 100"),
    (libvirt_refuses, VirtConflict, "domain is not running"),
    (hotplug_vanishes, Conflict, "live XML does not show it"),
]


@pytest.mark.parametrize(
    ("inject", "kind", "message"),
    [pytest.param(*case, id=case[0].__name__) for case in BIND_FAILURES + LATER_FAILURES],
)
def test_a_failing_attach_step_undoes_every_step_before_it(
    rig: FakeHostRig, inject: Inject, kind: type[QtagentError], message: str
) -> None:
    before = rig.settings(1)
    inject(rig)

    with pytest.raises(kind, match=message) as raised:
        attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)

    assert type(raised.value) is kind  # the step's own error, not one from the undo
    assert_free(rig, 1)
    after = rig.settings(1)
    assert (after.vlan, after.qos, after.spoofchk, after.trust) == (
        before.vlan, before.qos, before.spoofchk, before.trust,
    )  # fmt: skip
    if inject in [case[0] for case in BIND_FAILURES]:
        assert rig.netlink.sent_knobs() == []  # no knob was ever sent
        assert after == before
    else:
        # The knobs were programmed, then put back exactly: the original (all-zero) MAC
        # too, not the VM's nor a random one.
        assert after == before
    assert rig.ctx.store.allocations() == ()
    assert rig.hostdevs("a") == ()


@pytest.mark.parametrize("original", [ZERO_MAC, ADMIN_MAC], ids=["zero", "admin"])
@pytest.mark.parametrize(
    "inject", [reject_vlan, libvirt_refuses, hotplug_vanishes], ids=lambda f: f.__name__
)
def test_a_failed_attach_gives_the_vf_its_original_mac_and_vlan_back(
    rig: FakeHostRig, original: MacAddress, inject: Inject
) -> None:
    rig.netlink.set_vf(rig.pf_ifindex, 1, mac=original, vlan=7)
    before = rig.settings(1)
    inject(rig)

    with pytest.raises(QtagentError):
        attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)

    assert (rig.settings(1).mac, rig.settings(1).vlan) == (original, 7)
    assert rig.settings(1) == before
    assert_free(rig, 1)


@pytest.mark.parametrize("paused", [False, True], ids=["shut-off", "paused-is-fine"])
def test_attach_to_a_vm_that_is_not_running_changes_nothing(rig: FakeHostRig, paused: bool) -> None:
    rig.vm("off", running=False)
    if paused:
        rig.virt.domains["off"].state = DomainState.PAUSED
        assert attach(rig.ctx, "off", rig.pf_name, index=1, mac=VM_MAC).vf.index == 1
        return
    before = observe(rig)
    with pytest.raises(Conflict, match="VM 'off' is shutoff, not running") as raised:
        attach(rig.ctx, "off", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    assert "virsh start off" in raised.value.hint
    assert observe(rig) == before
    assert rig.bus.commands == [] and rig.netlink.sent == []
    assert not any(c.startswith("attach") for c in rig.virt.calls)


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0, 0.0])
def test_an_unplug_policy_that_would_wait_forever_is_refused(seconds: float) -> None:
    with pytest.raises(InvalidInput, match="finite number of seconds above 0"):
        UnplugPolicy(timeout_s=seconds)
    with pytest.raises(InvalidInput, match="poll interval"):
        UnplugPolicy(poll_s=seconds)


def test_a_vf_is_never_left_without_a_driver_while_binding_fails(rig: FakeHostRig) -> None:
    """C9: vfio-pci not loaded; every state the tree went through ends on a driver."""
    vfio_pci_not_loaded(rig)
    with pytest.raises(Timeout):
        attach(rig.ctx, "a", rig.pf_name, index=1)
    address = str(rig.address(1))
    probes = [c for c in rig.bus.commands if c.endswith("drivers_probe")]
    assert probes == [f"echo {address} > bus/pci/drivers_probe"] * 2  # the bind, the rollback
    assert rig.driver(1) == "igbvf"


# ---------------------------------------------------------------- refusals


def test_attaching_a_held_vf_again_is_a_conflict_naming_its_holder(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    before = observe(rig)
    sent = len(rig.netlink.sent)

    with pytest.raises(Conflict, match=r"already assigned to VM 'a'"):
        attach(rig.ctx, "b", rig.pf_name, index=1)

    assert observe(rig) == before
    assert len(rig.netlink.sent) == sent
    assert rig.hostdevs("a") == (rig.address(1),)


def test_without_an_index_the_first_free_ready_vf_is_chosen(rig: FakeHostRig) -> None:
    attach(rig.ctx, "b", rig.pf_name, index=0)  # VF0: held by VM b
    vf1 = str(rig.address(1))
    rig.bus.release_driver(vf1)
    rig.bus.attach_driver(vf1, "vfio-pci")  # VF1: on vfio-pci, some other tool's
    rig.bus.release_driver(str(rig.address(2)))  # VF2: no driver, not ready

    result = attach(rig.ctx, "a", rig.pf_name)

    assert result.vf.index == 3
    assert rig.hostdevs("a") == (rig.address(3),)
    assert rig.driver(1) == "vfio-pci" and rig.driver(2) is None
    assert rig.allocation(1) is None and rig.allocation(2) is None

    with pytest.raises(Conflict, match="has no free VF"):
        attach(rig.ctx, "a", rig.pf_name)


def test_a_vf_that_is_not_ready_is_refused_by_index(rig: FakeHostRig) -> None:
    rig.bus.release_driver(str(rig.address(2)))
    before = observe(rig)
    with pytest.raises(Conflict, match="not ready: no driver bound"):
        attach(rig.ctx, "a", rig.pf_name, index=2)
    assert observe(rig) == before


def test_attach_to_a_missing_vm_changes_nothing(rig: FakeHostRig) -> None:
    before = observe(rig)
    with pytest.raises(NotFound, match="no VM named 'ghost'"):
        attach(rig.ctx, "ghost", rig.pf_name, index=1, mac=VM_MAC)
    assert observe(rig) == before
    assert rig.bus.commands == [] and rig.netlink.sent == []


def test_a_netdevsim_pf_cannot_give_vfs_to_vms(tmp_path: Path) -> None:
    host = igb_host(n_vfs=1)
    host.netdevsims.append(FakeNetdevsim(0, ports=[FakeNetdev("eni0np1", 900)], num_vfs=2))
    rig = FakeHostRig.build(tmp_path, host)
    rig.vm("a")
    with rig.ctx, pytest.raises(Unsupported, match="netdevsim"):
        attach(rig.ctx, "a", "netdevsim0", index=0)
    assert rig.bus.commands == [] and rig.netlink.sent == []
    assert rig.ctx.store.allocations() == () and rig.hostdevs("a") == ()


def test_a_vf_sharing_its_iommu_group_with_a_host_device_is_refused_before_any_unbind(
    tmp_path: Path,
) -> None:
    """C7: VF1 is in its PF's IOMMU group, and the PF is on igb."""
    host = igb_host(n_vfs=2)
    host.pfs[0].vfs[1].iommu_group = host.pfs[0].iommu_group
    rig = FakeHostRig.build(tmp_path, host)
    rig.vm("a")
    with rig.ctx:
        before = observe(rig)
        with pytest.raises(Conflict, match=rf"{rig.pf_name} \(driver igb\); the group is not"):
            attach(rig.ctx, "a", rig.pf_name, index=1)
        assert observe(rig) == before
        assert rig.bus.commands == [] and rig.netlink.sent == []


# ---------------------------------------------------------------- detach refusals


def test_only_the_holder_may_detach(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    before = observe(rig)
    with pytest.raises(Conflict, match="belongs to VM 'a', not 'b'"):
        detach(rig.ctx, "b", rig.pf_name, 1)
    assert observe(rig) == before


def test_detaching_an_unassigned_vf_is_not_found(rig: FakeHostRig) -> None:
    before = observe(rig)
    with pytest.raises(NotFound, match="not assigned to any VM"):
        detach(rig.ctx, "a", rig.pf_name, 1)
    assert observe(rig) == before
    assert rig.bus.commands == []


# ---------------------------------------------------------------- a guest that holds on


def test_a_guest_that_never_lets_go_leaves_the_vf_releasing_not_free(rig: FakeHostRig) -> None:
    rig.vm("stuck", answers_eject=False)
    attach(rig.ctx, "stuck", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    address = rig.address(1)

    with pytest.raises(Timeout, match="has not released"):
        detach(rig.ctx, "stuck", rig.pf_name, 1, policy=UnplugPolicy(timeout_s=30))

    assert rig.clock.slept >= 30  # waited the whole bound, on the fake clock
    allocation = rig.allocation(1)
    assert allocation is not None and allocation.state is AllocationState.RELEASING
    assert rig.hostdevs("stuck") == (address,)
    assert rig.driver(1) == "vfio-pci" and rig.settings(1).mac == VM_MAC  # untouched
    # Not free: neither by index nor when choosing.
    with pytest.raises(Conflict, match="already assigned to VM 'stuck'"):
        attach(rig.ctx, "a", rig.pf_name, index=1)
    assert attach(rig.ctx, "a", rig.pf_name).vf.index == 0

    # Retried while the guest still holds on: the same Timeout, still releasing.
    with pytest.raises(Timeout, match="has not released"):
        detach(rig.ctx, "stuck", rig.pf_name, 1, policy=UnplugPolicy(timeout_s=30))
    allocation = rig.allocation(1)
    assert allocation is not None and allocation.state is AllocationState.RELEASING

    rig.virt.guest_answers_eject("stuck")
    released = detach(rig.ctx, "stuck", rig.pf_name, 1)
    assert released.driver == "igbvf"
    assert_free(rig, 1)
    assert rig.settings(1).vlan == 0 and rig.settings(1).mac != VM_MAC


def test_a_guest_that_lets_go_late_within_the_bound_is_waited_for(rig: FakeHostRig) -> None:
    rig.vm("slow", answers_eject=False)
    attach(rig.ctx, "slow", rig.pf_name, index=1)
    rig.clock.at(2.0, lambda: rig.virt.guest_answers_eject("slow"))

    detach(rig.ctx, "slow", rig.pf_name, 1, policy=UnplugPolicy(timeout_s=30, poll_s=0.25))

    assert 2.0 <= rig.clock.slept < 3.0
    assert_free(rig, 1)


def test_a_vf_of_a_destroyed_vm_is_still_given_back_clean(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    rig.virt.destroy("a")  # QEMU is gone; the VF stays on vfio-pci, allocated
    released = detach(rig.ctx, "a", rig.pf_name, 1)
    assert released.driver == "igbvf"
    assert_free(rig, 1)
    assert rig.settings(1).vlan == 0


# ---------------------------------------------------------------- C4


def test_c4_four_releases_leave_four_distinct_admin_macs_none_a_vms(rig: FakeHostRig) -> None:
    vm_macs = [MacAddress.parse(f"52:54:00:bb:00:0{i}") for i in range(4)]
    for index, mac in enumerate(vm_macs):
        attach(rig.ctx, "a", rig.pf_name, index=index, mac=mac, vlan=200 + index)
        assert rig.settings(index).mac == mac
        detach(rig.ctx, "a", rig.pf_name, index)

    table = [rig.settings(i) for i in range(4)]
    admin = [s.mac for s in table]
    assert len(set(admin)) == 4, admin
    assert all(is_local_unicast(mac) for mac in admin)
    assert not set(vm_macs) & set(admin)
    assert all(s.vlan == 0 and s.qos == 0 for s in table)
    assert all(rig.driver(i) == "igbvf" for i in range(4))
    assert rig.ctx.store.allocations() == () and rig.hostdevs("a") == ()


def test_an_undo_step_that_fails_is_noted_on_the_error_without_a_traceback(
    rig: FakeHostRig, caplog: pytest.LogCaptureFixture
) -> None:
    libvirt_refuses(rig)
    # Reads: the snapshot, the knobs' before and after; the fourth is the undo's.
    rig.netlink.fail_next_read(rig.pf_ifindex, errno.EIO, after=3)

    with pytest.raises(VirtConflict) as raised:
        attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)

    assert any(
        n.startswith("undo: could not restore the VF's settings") for n in raised.value.notes
    )
    assert "undo: could not restore the VF's settings" in raised.value.diagnostics()
    assert rig.driver(1) == "igbvf"  # the later undo steps still ran
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


# ---------------------------------------------------------------- the host lock


class _WriteHook(FakePciBus):
    """The fake kernel, running ``before`` (once) just before the first sriov_numvfs
    write: another process acting between a VF count check and its write."""

    before: Callable[[], None] | None = None

    def write_num_vfs(self, pf_name: str, count: int) -> None:
        hook, self.before = self.before, None
        if hook is not None:
            hook()
        super().write_num_vfs(pf_name, count)


def test_an_attach_racing_a_vf_count_change_waits_for_the_host_lock(rig: FakeHostRig) -> None:
    """C2 across processes (found in the third break-it pass): set-vfs checked the
    allocations, another process attached VF1, then set-vfs wrote 0 and destroyed the
    VF the VM now held. Every change runs under the host lock: the racing attach waits
    for it (here it gives up, 30 s on the fake clock) and the VF stays free."""
    bus = _WriteHook(rig.tree, dev_root=rig.ctx.paths.dev_root, netlink=rig.netlink)
    ctx = HostContext.with_edges(
        rig.ctx.paths, netlink=rig.netlink, virt=rig.virt, writer=bus,
        clock=rig.clock, sleep=rig.clock.sleep,
    )  # fmt: skip
    raced: list[QtagentError] = []

    def other_process() -> None:
        other = HostContext.with_edges(
            rig.ctx.paths, netlink=rig.netlink, virt=rig.virt, writer=bus,
            clock=rig.clock, sleep=rig.clock.sleep,
        )  # fmt: skip
        try:
            attach(other, "a", rig.pf_name, index=1)
        except QtagentError as err:
            raced.append(err)
        finally:
            other.close()

    bus.before = other_process
    result = set_vf_count(ctx, rig.pf_name, 6)
    assert result.count.writes == (0, 6)
    assert [type(err) for err in raced] == [Timeout]
    assert "another qtagent process (pid" in raced[0].message
    assert rig.allocation(1) is None and rig.hostdevs("a") == ()

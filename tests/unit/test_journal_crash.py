"""A crash at every step boundary of every journaled change, then a restart (issue 3).

Each failpoint is armed in turn with an action that raises a BaseException, which
no qtagent code catches: nothing after the point runs (context managers still
close, as the kernel closes a dead process's descriptors and drops its flock).
Then recovery runs as a restarted agent's would, and the consistency checker
must find nothing: no VF on vfio-pci without an owner, none held twice, no free VF
with a VM's MAC or VLAN, the database agreeing with the fakes' kernel and libvirt.
The same runs against the real kernel in tests/lab/test_crash_lab.py.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qtagent.errors import Conflict, NotFound, QtagentError
from qtagent.journal.failpoints import Failpoints, points_of
from qtagent.model.types import MacAddress, VfId
from qtagent.ops.assign import ATTACH_STEPS, attach
from qtagent.ops.audit import audit
from qtagent.ops.bind import BIND_STEPS, bind_vf
from qtagent.ops.provision import VF_COUNT_STEPS, set_vf_count
from qtagent.ops.reconcile import reconcile
from qtagent.ops.recover import recover_journal
from qtagent.ops.release import RELEASE_STEPS, detach
from qtagent.ops.unquarantine import unquarantine
from qtagent.store.errors import StoreError
from qtagent.store.journal import Journal
from qtagent.store.quarantine import EventLog, OperatorVfio, QuarantineTable
from qtagent.store.records import AllocationState, VmRef
from qtagent.store.status import DaemonTable
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import igb_host

VM_MAC = MacAddress.parse("52:54:00:aa:00:01")
VM_VLAN = 100
GIVEN = ((VM_MAC, VM_VLAN),)


class Crash(BaseException):
    """The process died at a failpoint."""


def _crash(point: str) -> None:
    raise Crash(point)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=4))
    rig.vm("a")
    yield rig
    rig.ctx.close()


def crash_at(rig: FakeHostRig, point: str, operation: Callable[[], object]) -> None:
    """Run ``operation`` with ``point`` armed; it must die there."""
    rig.ctx.failpoints = Failpoints(point, _crash)
    with pytest.raises(Crash):
        operation()
    rig.ctx.failpoints = Failpoints()


def restart_and_check(rig: FakeHostRig) -> None:
    """What a restarted agent does first, and what must then hold."""
    results = recover_journal(rig.ctx)
    assert all(r.outcome in ("completed", "undone") for r in results), results
    assert Journal(rig.ctx.store).open_entries() == ()
    assert audit(rig.ctx, vm_settings=GIVEN) == ()


def test_the_fault_injection_covers_at_least_twenty_points() -> None:
    points = [
        *points_of("vf_count", VF_COUNT_STEPS),
        *points_of("bind", BIND_STEPS),
        *points_of("attach", ATTACH_STEPS),
        *points_of("release", RELEASE_STEPS),
    ]
    assert len(points) == len(set(points)) >= 20


@pytest.mark.parametrize("point", points_of("attach", ATTACH_STEPS))
def test_a_crash_during_attach_is_rolled_back(rig: FakeHostRig, point: str) -> None:
    crash_at(rig, point, lambda: attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100))

    restart_and_check(rig)

    allocation = rig.allocation(1)
    if point == "attach.finish":  # the outcome was committed: the VM has its VF
        assert allocation is not None and allocation.state is AllocationState.ATTACHED
        assert rig.hostdevs("a") == (rig.address(1),)
    else:
        assert allocation is None and rig.hostdevs("a") == ()
        assert rig.driver(1) == "igbvf" and rig.settings(1).vlan == 0
        # Nothing is left that would stop the same request now.
        attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
        assert audit(rig.ctx, vm_settings=GIVEN) == ()


@pytest.mark.parametrize("point", points_of("release", RELEASE_STEPS))
def test_a_crash_during_release_is_completed(rig: FakeHostRig, point: str) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)

    crash_at(rig, point, lambda: detach(rig.ctx, "a", rig.pf_name, 1))

    restart_and_check(rig)
    assert rig.allocation(1) is None and rig.hostdevs("a") == ()
    assert rig.driver(1) == "igbvf"
    assert rig.settings(1).mac != VM_MAC and rig.settings(1).vlan == 0
    assert QuarantineTable(rig.ctx.store).all() == ()


@pytest.mark.parametrize("point", points_of("vf_count", VF_COUNT_STEPS))
def test_a_crash_during_a_vf_count_change_is_completed(rig: FakeHostRig, point: str) -> None:
    crash_at(rig, point, lambda: set_vf_count(rig.ctx, rig.pf_name, 6))

    restart_and_check(rig)
    pf = rig.ctx.pf(rig.pf_name, settings=False)
    assert pf.num_vfs == 6 and [vf.driver for vf in pf.vfs] == ["igbvf"] * 6


@pytest.mark.parametrize("point", points_of("bind", BIND_STEPS))
def test_a_crash_during_a_bind_is_rolled_back(rig: FakeHostRig, point: str) -> None:
    crash_at(rig, point, lambda: bind_vf(rig.ctx, rig.pf_name, 2, "vfio-pci"))

    recover_journal(rig.ctx)

    assert Journal(rig.ctx.store).open_entries() == ()
    expected = "vfio-pci" if point == "bind.finish" else "igbvf"
    assert rig.driver(2) == expected


def test_a_crash_while_vfs_are_allocated_never_writes_zero(rig: FakeHostRig) -> None:
    """C2: a count change left in the journal finds a VM holding a VF when it is
    retried; it writes nothing, not 0, and keeps waiting."""
    crash_at(rig, "vf_count.begin", lambda: set_vf_count(rig.ctx, rig.pf_name, 6))
    # Before any recovery, something gives VF1 to VM a behind the journal's back.
    rig.ctx.store.reserve(VfId(rig.pf_name, 1), VmRef("a"))
    writes = rig.bus.writes

    (result,) = recover_journal(rig.ctx)

    assert result.outcome == "failed" and "while VFs are allocated" in (result.error or "")
    assert rig.bus.writes == writes and rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 4


def test_a_release_whose_vfio_group_is_held_quarantines_the_vf(rig: FakeHostRig) -> None:
    """A process still holds the VF's VFIO group after the unplug: unbinding would
    block in the kernel, so the VF stays on vfio-pci, quarantined, never handed out."""
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    rig.hold_vfio_group(1, pid=4242, comm="qemu-system-x86")

    released = detach(rig.ctx, "a", rig.pf_name, 1)

    assert released.quarantined is not None and "pid 4242 (qemu-system-x86)" in released.quarantined
    assert rig.driver(1) == "vfio-pci" and rig.allocation(1) is None
    (held,) = QuarantineTable(rig.ctx.store).all()
    assert held.vf == VfId(rig.pf_name, 1) and "pid 4242" in held.reason
    assert audit(rig.ctx, vm_settings=GIVEN) == ()
    assert attach(rig.ctx, "a", rig.pf_name).vf.index == 0  # not VF1


def test_a_repeated_release_with_a_stale_lease_touches_nothing(rig: FakeHostRig) -> None:
    first = attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    lease = rig.allocation(1)
    assert lease is not None and lease.lease is not None
    detach(rig.ctx, "a", rig.pf_name, 1, lease=lease.lease)
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)  # the same VF, a new hand-out
    writes = rig.bus.writes

    late = detach(rig.ctx, "a", rig.pf_name, 1, lease=lease.lease)

    assert late.already_released and rig.bus.writes == writes
    now = rig.allocation(1)
    assert now is not None and now.state is AllocationState.ATTACHED and now.lease != lease.lease
    assert rig.hostdevs("a") == (first.vf.address,)


def test_a_quarantined_vf_is_freed_only_once_clean(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    rig.hold_vfio_group(1, pid=4242)
    detach(rig.ctx, "a", rig.pf_name, 1)

    with pytest.raises(Conflict, match="stays quarantined: its VFIO group is still held"):
        unquarantine(rig.ctx, rig.pf_name, 1)
    assert rig.driver(1) == "vfio-pci"

    shutil.rmtree(rig.ctx.paths.proc_root / "4242")  # the process went away
    freed = unquarantine(rig.ctx, rig.pf_name, 1)

    assert freed.driver == "igbvf" and rig.driver(1) == "igbvf"
    assert QuarantineTable(rig.ctx.store).all() == ()
    assert audit(rig.ctx, vm_settings=GIVEN) == ()
    with pytest.raises(NotFound, match="not quarantined"):
        unquarantine(rig.ctx, rig.pf_name, 1)


def test_a_vf_the_operator_bound_to_vfio_pci_is_theirs(rig: FakeHostRig) -> None:
    bind_vf(rig.ctx, rig.pf_name, 2, "vfio-pci")

    assert audit(rig.ctx, vm_settings=GIVEN) == ()  # owned: by the operator
    with pytest.raises(Conflict, match="bound to vfio-pci by the operator"):
        attach(rig.ctx, "a", rig.pf_name, index=2)
    assert attach(rig.ctx, "a", rig.pf_name).vf.index == 0

    bind_vf(rig.ctx, rig.pf_name, 2, "host")
    assert rig.driver(2) == "igbvf" and OperatorVfio(rig.ctx.store).all() == ()


def test_a_journal_time_without_timezone_is_a_corrupt_entry(rig: FakeHostRig) -> None:
    # Such a time cannot be compared with now: recovery raised TypeError.
    crash_at(rig, "attach.bind.done", lambda: attach(rig.ctx, "a", rig.pf_name, index=1))
    rig.ctx.store.connection.execute("UPDATE journal SET updated_at = '2026-12-04 10:00:00'")

    with pytest.raises(StoreError, match="corrupt journal entry 1"):
        recover_journal(rig.ctx)
    with pytest.raises(StoreError, match="corrupt journal entry 1"):
        attach(rig.ctx, "a", rig.pf_name, index=2)
    assert rig.driver(2) == "igbvf"


def test_times_edited_by_hand_in_the_other_tables_are_corrupt_rows(rig: FakeHostRig) -> None:
    # fromisoformat's ValueError escaped every pass of the daemon (which reads the
    # quarantine), and `qtagent status` (which reads the events and the daemon's row).
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    rig.hold_vfio_group(1)
    detach(rig.ctx, "a", rig.pf_name, 1)
    DaemonTable(rig.ctx.store).started("up")
    conn = rig.ctx.store.connection
    conn.execute("UPDATE quarantine SET since = 'yesterday'")
    conn.execute("UPDATE events SET at = 'noon'")
    conn.execute("UPDATE daemon SET heartbeat_at = '2026-12-04 10:00:00'")

    with pytest.raises(StoreError, match=r"corrupt quarantine row for '0000:41:00.0' VF 1"):
        reconcile(rig.ctx)
    with pytest.raises(StoreError, match="corrupt events row"):
        EventLog(rig.ctx.store).last()
    with pytest.raises(StoreError, match="corrupt daemon row"):
        DaemonTable(rig.ctx.store).get()


def test_a_change_left_before_the_clock_was_set_back_is_recovered_at_once(
    rig: FakeHostRig,
) -> None:
    crash_at(rig, "attach.bind.done", lambda: attach(rig.ctx, "a", rig.pf_name, index=1))
    later = (datetime.now(UTC) + timedelta(hours=5)).isoformat()
    rig.ctx.store.connection.execute("UPDATE journal SET updated_at = ?", (later,))

    (result,) = recover_journal(rig.ctx)

    assert result.outcome == "undone"  # not "waiting" for five hours on vfio-pci
    assert rig.driver(1) == "igbvf" and rig.allocation(1) is None


def test_a_vf_whose_assignment_waits_to_be_undone_is_not_released_under_it(
    rig: FakeHostRig,
) -> None:
    # The release freed the VF while the attach's entry stayed; once the VF was given
    # to VM b, that entry's undo rebound it to igbvf and wiped b's MAC and VLAN.
    attach_1 = lambda: attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)  # noqa: E731
    crash_at(rig, "attach.plug.done", attach_1)
    rig.virt.domains["a"].answers_eject = False
    (undo,) = recover_journal(rig.ctx)  # the guest does not let go: the undo waits
    assert undo.outcome == "failed"

    rig.virt.guest_answers_eject("a")  # at last; the undo is not due yet
    with pytest.raises(Conflict, match="not attached yet"):
        detach(rig.ctx, "a", rig.pf_name, 1)
    assert recover_journal(rig.ctx, everything=True)[0].outcome == "undone"
    rig.vm("b")
    b_mac = MacAddress.parse("52:54:00:bb:00:01")
    attach(rig.ctx, "b", rig.pf_name, index=1, mac=b_mac, vlan=200)

    assert recover_journal(rig.ctx, everything=True) == ()
    assert rig.driver(1) == "vfio-pci" and rig.hostdevs("b") == (rig.address(1),)
    assert (rig.settings(1).mac, rig.settings(1).vlan) == (b_mac, 200)


def test_a_vf_whose_binding_waits_to_be_undone_is_not_handed_out(rig: FakeHostRig) -> None:
    # The bind's entry stayed (its undo failed); the VF got its driver back and went to
    # VM b; then the entry's undo took b's VF off vfio-pci.
    rig.bus.fail_next("drivers_probe", errno.EIO, times=3)  # vfio-pci, rollback, undo
    with pytest.raises(QtagentError, match="undo is retried later"):
        bind_vf(rig.ctx, rig.pf_name, 2, "vfio-pci")
    rig.ctx.binder.probe_host_driver(rig.vf(2))  # the daemon's repair of a VF without driver
    rig.vm("b")

    with pytest.raises(Conflict, match="unfinished bind in the journal"):
        attach(rig.ctx, "b", rig.pf_name, index=2)
    assert attach(rig.ctx, "b", rig.pf_name).vf.index == 0  # not VF2

    assert recover_journal(rig.ctx, everything=True)[0].outcome == "undone"
    assert rig.driver(0) == "vfio-pci" and rig.hostdevs("b") == (rig.address(0),)
    assert attach(rig.ctx, "b", rig.pf_name, index=2).vf.index == 2  # free once undone


def test_an_entry_whose_plan_cannot_be_rebuilt_is_retried_with_backoff(rig: FakeHostRig) -> None:
    # A forward entry's failed rebuild was not counted: due again on every pass and
    # every command, each time with its warning.
    detach_1 = lambda: detach(rig.ctx, "a", rig.pf_name, 1)  # noqa: E731
    attach(rig.ctx, "a", rig.pf_name, index=1)
    crash_at(rig, "release.reset.done", detach_1)
    rig.ctx.store.connection.execute("UPDATE journal SET intent = '{\"pf\": 1}'")

    (first,) = recover_journal(rig.ctx)
    (second,) = recover_journal(rig.ctx)

    assert first.outcome == "failed" and "a release intent needs" in (first.error or "")
    assert second.outcome == "waiting"
    (entry,) = Journal(rig.ctx.store).open_entries()
    assert entry.attempts == 1 and (entry.last_error or "").startswith("rebuild: ")


@pytest.mark.parametrize("column", ["intent", "done"])
def test_a_journal_entry_larger_than_qtagent_writes_is_corrupt(
    rig: FakeHostRig, column: str
) -> None:
    # A 20 MB intent was rebuilt and failed: its message, with the whole intent in it,
    # went to the log as one 20 MB line on every retry.
    attach(rig.ctx, "a", rig.pf_name, index=1)
    crash_at(rig, "release.reset.done", lambda: detach(rig.ctx, "a", rig.pf_name, 1))
    big = {"intent": {"vm": "a", "pf": rig.pf_name, "index": "1", "x": "x" * 10**7},
           "done": ["unplug"] * 10**6}[column]  # fmt: skip
    rig.ctx.store.connection.execute(f"UPDATE journal SET {column} = ?", (json.dumps(big),))

    with pytest.raises(StoreError, match=r"corrupt journal entry 2: its .* is over 16384 bytes"):
        recover_journal(rig.ctx)


def test_an_undo_whose_steps_done_it_does_not_know_undoes_every_step(rig: FakeHostRig) -> None:
    # Only the first step was undone: the VF stayed in VM a, with a's MAC and VLAN,
    # and its reservation went: in a VM, owned by no one.
    attach_1 = lambda: attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=VM_VLAN)  # noqa: E731
    crash_at(rig, "attach.plug.done", attach_1)
    rig.ctx.store.connection.execute("""UPDATE journal SET done = '["bind", "hotplug"]'""")

    restart_and_check(rig)
    assert rig.hostdevs("a") == () and rig.driver(1) == "igbvf"


def test_a_quarantined_vf_left_trusted_stays_quarantined(rig: FakeHostRig) -> None:
    """Attach sets only MAC and VLAN: a VF freed while still trusted would reach the
    next VM trusted (break-it pass), so unquarantine refuses it until trust is off."""
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    rig.hold_vfio_group(1, pid=4242)
    detach(rig.ctx, "a", rig.pf_name, 1)
    shutil.rmtree(rig.ctx.paths.proc_root / "4242")
    ifindex = rig.ctx.pf(rig.pf_name, settings=False).ifindex
    assert ifindex is not None
    rig.netlink.set_vf(ifindex, 1, trust=True)  # what the VM's owner had asked for

    with pytest.raises(Conflict, match="stays quarantined: it still carries trust on") as raised:
        unquarantine(rig.ctx, rig.pf_name, 1)
    assert "vf 1 trust off" in (raised.value.hint or "")
    assert [q.vf.index for q in QuarantineTable(rig.ctx.store).all()] == [1]

    rig.netlink.set_vf(ifindex, 1, trust=False)
    assert unquarantine(rig.ctx, rig.pf_name, 1).driver == "igbvf"

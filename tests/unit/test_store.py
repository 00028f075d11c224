"""The allocation database: one VF never goes to two VMs, records survive crashes."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qtagent.errors import Conflict, InvalidInput, NotFound, Timeout
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress, VfId
from qtagent.store import (
    AllocationState,
    Store,
    StoreError,
    VfDefaults,
    VmRef,
)
from qtagent.store.schema import LATEST_VERSION

PF = "0000:41:00.0"
VF2 = VfId(PF, 2)
VM_A = VmRef("a", uuid.UUID("6f1c2f36-55d6-4f5c-9a0b-2b1f2c3d4e5f"))
VM_B = VmRef("b")
MAC = MacAddress.parse("52:54:00:aa:bb:01")
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "qtagent.db"


@pytest.fixture
def store(db_path: Path) -> Store:
    return Store(db_path, clock=FakeClock())


# ------------------------------------------------------------------ the file


def test_new_database_is_0600_in_a_0700_directory_with_wal(db_path: Path) -> None:
    old_umask = os.umask(0)  # the mode must not depend on the caller's umask
    try:
        with Store(db_path) as store:
            store.reserve(VF2, VM_A)  # writes, so the -wal and -shm files exist
            for name in ("qtagent.db", "qtagent.db-wal", "qtagent.db-shm"):
                assert stat.S_IMODE((db_path.parent / name).stat().st_mode) == 0o600, name
            conn = store._db.conn
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_loose_file_mode_is_tightened(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.touch()
    db_path.chmod(0o644)
    Store(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def file_state(path: Path) -> tuple[bytes, int, int, list[str]]:
    """Content, mode, mtime and the directory's names: all a refusal must not change."""
    info = path.stat()
    names = sorted(p.name for p in path.parent.iterdir())
    return path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_mtime_ns, names


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "qtagent.db"
    path.write_bytes(b"#!/bin/sh\necho not a database\n" + bytes(range(256)))
    path.chmod(0o644)
    before = file_state(path)
    with pytest.raises(StoreError, match="is not an SQLite database") as raised:
        Store(path)
    assert "move this file away" in raised.value.hint
    assert file_state(path) == before


def test_an_sqlite_database_of_another_program_is_refused_and_left_as_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "places.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE moz_places (url TEXT)")
        conn.execute("INSERT INTO moz_places VALUES ('https://example.org')")
    conn.close()
    path.chmod(0o664)
    before = file_state(path)
    with pytest.raises(StoreError, match=r"another program \(tables: moz_places\)"):
        Store(path)
    assert file_state(path) == before


def test_symlink_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    link = tmp_path / "qtagent.db"
    link.symlink_to(target)
    with pytest.raises(StoreError, match="symlink"):
        Store(link)
    assert not target.exists()


def test_directory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path)


# SQLite's shared-lock byte range on Unix (os_unix.c: SHARED_FIRST, SHARED_SIZE)
SQLITE_SHARED_FIRST = 0x40000002
SQLITE_SHARED_SIZE = 510
TRY_EXCLUSIVE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))
except OSError:
    sys.exit(1)  # someone holds SQLite's shared lock
"""


def test_a_second_store_on_the_same_file_keeps_the_first_ones_locks(db_path: Path) -> None:
    """Closing any descriptor of a file drops the process's POSIX locks on it: opening a
    second Store in the process must not take the first one's shared lock away (another
    process would then think it is the database's last user)."""

    def someone_holds_the_shared_lock() -> bool:
        argv = [sys.executable, "-c", TRY_EXCLUSIVE, str(db_path)]
        argv += [str(SQLITE_SHARED_FIRST), str(SQLITE_SHARED_SIZE)]
        return subprocess.run(argv, check=False).returncode == 1

    first = Store(db_path)
    assert first.allocations() == ()
    assert someone_holds_the_shared_lock()  # WAL mode: held while the connection lives
    second = Store(db_path)
    assert someone_holds_the_shared_lock()
    second.close()
    assert someone_holds_the_shared_lock()
    first.close()
    assert not someone_holds_the_shared_lock()


def test_schema_is_migrated_once_and_recorded(db_path: Path) -> None:
    with Store(db_path) as store:
        assert store.schema_version == LATEST_VERSION
    with Store(db_path) as store:  # reopening runs no migration twice
        rows = store._db.conn.execute("SELECT version FROM schema_version").fetchall()
    assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))


def test_database_from_a_newer_qtagent_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'future', 'x')", (LATEST_VERSION + 1,))
    with pytest.raises(StoreError, match=rf"schema version {LATEST_VERSION + 1}"):
        Store(db_path)


# --------------------------------------------------------------- allocations


def test_reserve_records_the_vf_the_vm_and_what_it_was_given(store: Store) -> None:
    got = store.reserve(VF2, VM_A, mac=MAC, vlan=100, qos=3)
    assert got.vf == VF2
    assert got.vm == VM_A
    assert (got.mac, got.vlan, got.qos) == (MAC, 100, 3)
    assert got.state is AllocationState.RESERVED
    assert got.created_at == got.updated_at == T0
    assert store.allocation(VF2) == got
    assert store.allocations() == (got,)


def test_double_reservation_is_refused_naming_the_holder(store: Store) -> None:
    store.reserve(VF2, VM_A, mac=MAC)
    with pytest.raises(Conflict) as err:
        store.reserve(VF2, VM_B)
    assert "'a'" in str(err.value)
    assert str(VF2) in str(err.value)
    assert err.value.status == 409
    # the refused request changed nothing
    only = store.allocations()
    assert len(only) == 1
    assert only[0].vm == VM_A


def test_same_vm_reserving_the_same_vf_twice_is_refused_too(store: Store) -> None:
    store.reserve(VF2, VM_A)
    with pytest.raises(Conflict):
        store.reserve(VF2, VM_A)


def test_reservation_from_a_second_connection_is_refused(db_path: Path) -> None:
    with Store(db_path) as one, Store(db_path) as two:
        one.reserve(VF2, VM_A)
        with pytest.raises(Conflict, match="'a'"):
            two.reserve(VF2, VM_B)


def test_concurrent_reservations_exactly_one_wins(db_path: Path) -> None:
    Store(db_path).close()  # migrate first; the race is about the reservation
    n = 8
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def contender(i: int) -> None:
        with Store(db_path, busy_timeout_s=30) as store:
            barrier.wait()
            try:
                store.reserve(VF2, VmRef(f"vm{i}"))
                outcome = f"won vm{i}"
            except Conflict as e:
                outcome = f"lost {e}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1, results
    winner = winners[0].removeprefix("won ")
    losers = [r for r in results if r.startswith("lost")]
    assert len(losers) == n - 1
    assert all(f"'{winner}'" in r for r in losers), results
    with Store(db_path) as store:
        assert [a.vm.name for a in store.allocations()] == [winner]


def test_concurrent_processes_reserving_distinct_vfs_all_win(db_path: Path) -> None:
    Store(db_path).close()
    code = (
        "import sys; from pathlib import Path\n"
        "from qtagent.store import Store, VmRef\n"
        "from qtagent.model.types import VfId\n"
        "s = Store(Path(sys.argv[1]), busy_timeout_s=30)\n"
        "for i in range(int(sys.argv[2]), 64, 4):\n"
        "    s.reserve(VfId('0000:41:00.0', i), VmRef(f'p{i}'))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db_path), str(k)]) for k in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with Store(db_path) as store:
        assert [a.vf.index for a in store.allocations()] == list(range(64))


def test_held_write_lock_times_out_as_timeout(db_path: Path) -> None:
    with Store(db_path) as holder, Store(db_path, busy_timeout_s=0.2) as waiter:
        with holder.transaction():
            holder.reserve(VF2, VM_A)
            with pytest.raises(Timeout):
                waiter.reserve(VfId(PF, 3), VM_B)
        waiter.reserve(VfId(PF, 3), VM_B)  # once released, it goes through


def test_crash_between_reserve_and_attach_leaves_a_reserved_row(db_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path\n"
        "from qtagent.store import Store, VmRef\n"
        "from qtagent.model.types import VfId, MacAddress\n"
        "s = Store(Path(sys.argv[1]))\n"
        "mac = MacAddress.parse('52:54:00:aa:bb:01')\n"
        "s.reserve(VfId('0000:41:00.0', 2), VmRef('a'), mac=mac)\n"
        "os._exit(9)  # no close, no atexit: as if killed before the attach\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(db_path)], check=False)
    assert proc.returncode == 9
    with Store(db_path) as store:
        left = store.allocations(state=AllocationState.RESERVED)
        assert [(a.vf, a.vm.name, str(a.mac)) for a in left] == [(VF2, "a", "52:54:00:aa:bb:01")]
        with pytest.raises(Conflict, match="'a'"):  # still not free for anyone else
            store.reserve(VF2, VM_B)


def test_crash_inside_a_transaction_leaves_nothing(db_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path\n"
        "from qtagent.store import Store, VmRef\n"
        "from qtagent.model.types import VfId\n"
        "s = Store(Path(sys.argv[1]))\n"
        "with s.transaction():\n"
        "    s.reserve(VfId('0000:41:00.0', 2), VmRef('a'))\n"
        "    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code, str(db_path)], check=False).returncode == 9
    with Store(db_path) as store:
        assert store.allocations() == ()


def test_transaction_rolls_back_every_write_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.reserve(VF2, VM_A)
        store.reserve(VfId(PF, 3), VM_A)
        raise RuntimeError("planner changed its mind")
    assert store.allocations() == ()


def test_nested_transaction_failure_rolls_back_only_the_inner_part(store: Store) -> None:
    with store.transaction():
        store.reserve(VF2, VM_A)
        with pytest.raises(Conflict):
            store.reserve(VF2, VM_B)  # a nested transaction inside reserve() fails
        store.reserve(VfId(PF, 3), VM_B)
    assert [(a.vf.index, a.vm.name) for a in store.allocations()] == [(2, "a"), (3, "b")]


def test_state_moves_are_compare_and_set(store: Store) -> None:
    clock = FakeClock()
    store._clock = clock
    store.reserve(VF2, VM_A)
    clock.advance(5)
    attached = store.set_state(VF2, expected=AllocationState.RESERVED, new=AllocationState.ATTACHED)
    assert attached.state is AllocationState.ATTACHED
    assert attached.updated_at == T0 + timedelta(seconds=5)
    assert attached.created_at == T0
    with pytest.raises(Conflict, match="attached, not reserved"):
        store.set_state(VF2, expected=AllocationState.RESERVED, new=AllocationState.ATTACHED)
    with pytest.raises(Conflict, match="cannot go"):
        store.set_state(VF2, expected=AllocationState.ATTACHED, new=AllocationState.RESERVED)
    with pytest.raises(NotFound):
        store.set_state(
            VfId(PF, 5), expected=AllocationState.RESERVED, new=AllocationState.ATTACHED
        )


def test_attached_vf_is_freed_only_through_releasing(store: Store) -> None:
    store.reserve(VF2, VM_A)
    store.set_state(VF2, expected=AllocationState.RESERVED, new=AllocationState.ATTACHED)
    with pytest.raises(Conflict):
        store.remove(VF2, expected=AllocationState.ATTACHED)
    with pytest.raises(Conflict):
        store.remove(VF2, expected=AllocationState.RELEASING)
    store.set_state(VF2, expected=AllocationState.ATTACHED, new=AllocationState.RELEASING)
    store.remove(VF2, expected=AllocationState.RELEASING)
    assert store.allocation(VF2) is None
    store.reserve(VF2, VM_B)  # free again
    with pytest.raises(NotFound):
        store.remove(VfId(PF, 6), expected=AllocationState.RESERVED)


def test_allocations_filter_by_pf_vm_and_state(store: Store) -> None:
    other = VfId("0000:81:00.0", 0)
    store.reserve(VfId(PF, 1), VM_A)
    store.reserve(other, VM_A)
    store.reserve(VF2, VM_B)
    store.set_state(other, expected=AllocationState.RESERVED, new=AllocationState.ATTACHED)
    assert [a.vf for a in store.allocations(pf=PF)] == [VfId(PF, 1), VF2]
    assert [a.vf for a in store.allocations(vm_name="a")] == [VfId(PF, 1), other]
    assert [a.vf for a in store.allocations(state=AllocationState.ATTACHED)] == [other]
    assert store.allocations(pf=PF, vm_name="b", state=AllocationState.ATTACHED) == ()


# --------------------------------------------------------- original settings

ORIGINAL = VfSettings(
    mac=MacAddress.parse("00:00:00:00:00:00"),
    vlan=0,
    qos=0,
    spoofchk=True,
    trust=False,
    max_tx_rate=0,
    min_tx_rate=None,
    link_state=LinkState.AUTO,
)


def test_originals_round_trip_and_the_first_capture_wins(store: Store) -> None:
    store.reserve(VF2, VM_A)
    first = store.record_originals(VF2, ORIGINAL, "igbvf")
    assert (first.settings, first.driver) == (ORIGINAL, "igbvf")
    # a retry after a crash sees what qtagent itself set: it must not replace the truth
    tampered = VfSettings(mac=MAC, vlan=100, spoofchk=False, trust=True)
    again = store.record_originals(VF2, tampered, "vfio-pci")
    assert again == first
    assert store.originals(VF2) == first


def test_originals_without_allocation_are_refused_and_go_with_it(store: Store) -> None:
    with pytest.raises(NotFound):
        store.record_originals(VF2, ORIGINAL, "igbvf")
    store.reserve(VF2, VM_A)
    store.record_originals(VF2, VfSettings(), None)  # all unknown, no driver: kept as such
    got = store.originals(VF2)
    assert got is not None
    assert got.settings == VfSettings()
    assert got.driver is None
    store.remove(VF2, expected=AllocationState.RESERVED)
    assert store.originals(VF2) is None


# ------------------------------------------------------------- desired state


def test_desired_count_and_defaults_round_trip(store: Store) -> None:
    defaults = VfDefaults(spoofchk=True, trust=False, link_state=LinkState.ENABLE, max_tx_rate=100)
    got = store.set_desired(PF, 4, defaults)
    assert (got.pf, got.num_vfs, got.defaults, got.applied_at) == (PF, 4, defaults, None)
    assert store.desired(PF) == got
    assert store.all_desired() == (got,)
    assert store.desired("0000:81:00.0") is None


def test_applied_only_for_the_count_really_applied(store: Store) -> None:
    store.set_desired(PF, 4)
    assert store.mark_applied(PF, 4).applied_at == T0
    assert store.set_desired(PF, 4, VfDefaults(trust=True)).applied_at == T0  # same count
    store.set_desired(PF, 6)
    assert store.desired(PF).applied_at is None  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="now 6"):
        store.mark_applied(PF, 4)  # a stale apply finishing late
    with pytest.raises(NotFound):
        store.mark_applied("netdevsim1", 4)
    store.forget_desired(PF)
    assert store.all_desired() == ()


def test_refuse_count_change_while_allocated_in_one_transaction(store: Store) -> None:
    """How the planner uses the store for FIELD-CASES C2: check and write together."""
    store.set_desired(PF, 4)
    store.reserve(VF2, VM_A)

    def change_count(new: int) -> None:
        with store.transaction():
            busy = store.allocations(pf=PF)
            if busy:
                names = ", ".join(f"{a.vf} (VM {a.vm.name!r})" for a in busy)
                raise Conflict(f"PF {PF} has VFs in use: {names}")
            store.set_desired(PF, new)

    with pytest.raises(Conflict, match=r"vf2 \(VM 'a'\)"):
        change_count(6)
    assert store.desired(PF).num_vfs == 4  # type: ignore[union-attr]


# ------------------------------------------------------------ hostile values


@pytest.mark.parametrize(
    "name",
    [
        "a'; DROP TABLE allocations; --",
        'Robert"); DELETE FROM allocations;',
        "名前-ü-😀",
        "x" * 255,
        "a b",
        "%s%n%x",
    ],
)
def test_odd_but_valid_vm_names_are_stored_literally(store: Store, name: str) -> None:
    store.reserve(VF2, VmRef(name))
    got = store.allocation(VF2)
    assert got is not None
    assert got.vm.name == name
    assert store.allocations(vm_name=name)[0].vf == VF2


@pytest.mark.parametrize(
    "name", ["", " a", "a ", "a/b", "a\x00b", "a\nb", "a\x7fb", "\ud800", "x" * 256, "é" * 128]
)
def test_bad_vm_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        VmRef(name)


@pytest.mark.parametrize(
    "vf",
    [
        VfId("eth0 ", 0),
        VfId("", 0),
        VfId("../../etc", 0),
        VfId("0000:41:00.0'--", 0),
        VfId(PF, -1),
        VfId(PF, 65536),
        VfId(PF, True),
        VfId(PF, "1"),  # type: ignore[arg-type]
    ],
)
def test_bad_vf_identities_are_refused(store: Store, vf: VfId) -> None:
    with pytest.raises(InvalidInput):
        store.reserve(vf, VM_A)
    assert store.allocations() == ()


@pytest.mark.parametrize(
    ("mac", "vlan", "qos"),
    [
        (MacAddress.parse("01:00:5e:00:00:01"), 0, 0),  # multicast
        (MacAddress.parse("00:00:00:00:00:00"), 0, 0),
        (None, 4095, 0),
        (None, -1, 0),
        (None, 0, 3),  # QoS without VLAN
        (None, 10, 8),
    ],
)
def test_bad_mac_vlan_qos_are_refused(
    store: Store, mac: MacAddress | None, vlan: int, qos: int
) -> None:
    with pytest.raises(InvalidInput):
        store.reserve(VF2, VM_A, mac=mac, vlan=vlan, qos=qos)
    assert store.allocations() == ()


def test_bad_driver_and_rates_are_refused(store: Store) -> None:
    store.reserve(VF2, VM_A)
    with pytest.raises(InvalidInput):
        store.record_originals(VF2, ORIGINAL, "igbvf; rm -rf /")
    with pytest.raises(InvalidInput):
        store.record_originals(VF2, VfSettings(max_tx_rate=-5), "igbvf")
    with pytest.raises(InvalidInput):
        store.set_desired(PF, 1, VfDefaults(max_tx_rate=1 << 40))
    with pytest.raises(InvalidInput):
        store.set_desired(PF, 1, VfDefaults(qos=3))
    with pytest.raises(InvalidInput):
        store.set_desired(PF, -1)
    assert store.originals(VF2) is None


def test_naive_clock_is_refused(db_path: Path) -> None:
    store = Store(db_path, clock=lambda: datetime(2025, 1, 1))
    with store, pytest.raises(InvalidInput, match="timezone"):
        store.reserve(VF2, VM_A)


def test_corrupt_row_written_behind_our_back_is_reported_with_its_place(
    store: Store, db_path: Path
) -> None:
    store.reserve(VF2, VM_A)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE allocations SET mac = 'not-a-mac'")
    with pytest.raises(StoreError, match=r"corrupt allocations row for '0000:41:00.0' VF 2"):
        store.allocations()


def test_schema_refuses_what_python_would_refuse(store: Store, db_path: Path) -> None:
    """The constraints hold even for a writer that bypasses the typed API."""
    store.reserve(VF2, VM_A)
    insert = "INSERT INTO allocations VALUES (?, ?, ?, NULL, NULL, ?, 0, ?, 't', 't', NULL)"
    with sqlite3.connect(db_path) as conn:
        for bad in (
            ("p", 1, "v", 0, "lost"),  # unknown state
            ("p", 1, "v", 5000, "reserved"),  # VLAN out of range
            ("p", 1, "", 0, "reserved"),  # empty VM name
            ("p", "x", "v", 0, "reserved"),  # a VF index that is not an integer
            (PF, 2, "b", 0, "reserved"),  # the VF held by VM a
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(insert, bad)

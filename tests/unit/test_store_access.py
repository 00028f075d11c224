"""Where the allocation database may be, who may open it, and reading it read-only.

Every refusal is a qtagent error naming the path and saying what to do, never a raw
OSError; a permission failure is PermissionDenied (exit 10). Tests that need a user
other than root run a part as nobody (tests/fakes/unprivileged.py).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from qtagent.cli.main import cli
from qtagent.errors import NotFound, PermissionDenied, QtagentError
from qtagent.model.types import VfId
from qtagent.ops.context import HostContext, HostPaths
from qtagent.store import Store, StoreError, VmRef
from qtagent.store.schema import LATEST_VERSION
from tests.fakes.sysfs_tree import FakeSysfs, igb_host
from tests.fakes.unprivileged import as_nobody, shared_dir

VF2 = VfId("0000:41:00.0", 2)
VM_A = VmRef("a", uuid.UUID("6f1c2f36-55d6-4f5c-9a0b-2b1f2c3d4e5f"))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------ finding 1: the path


@pytest.mark.parametrize("below", ["y.db", "x/y.db"], ids=["parent", "grandparent"])
def test_a_file_where_the_directory_should_be_is_a_clean_error(tmp_path: Path, below: str) -> None:
    """Was a raw FileExistsError / NotADirectoryError traceback."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file\n")
    path = blocker / below
    with pytest.raises(StoreError) as raised:
        Store(path)
    assert f"cannot create {path.parent}, the directory of the allocation database" in str(
        raised.value
    )
    assert "--db" in raised.value.hint and raised.value.errno is not None
    assert blocker.read_text() == "a file\n"


def test_a_directory_under_proc_is_a_clean_error() -> None:
    """``--db /proc/x/y.db`` was a raw traceback (ENOENT as root, EACCES otherwise)."""
    with pytest.raises(QtagentError, match=r"cannot create /proc/qtagent-no-such/x"):
        Store(Path("/proc/qtagent-no-such/x/y.db"))


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_a_path_that_is_not_a_regular_file_is_refused_before_it_is_opened(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "q.db"
    if kind == "fifo":
        os.mkfifo(path)
        expected = "a FIFO"
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
        expected = "a socket"
    else:
        path = Path("/dev/null")
        expected = "a character device"
    with pytest.raises(StoreError, match=f"{path} is {expected}, not a regular file"):
        Store(path)
    with pytest.raises(StoreError, match="not a regular file"):
        Store(path, readonly=True)


def test_a_proc_file_is_not_taken_for_an_empty_database() -> None:
    """/proc/self/status shows size 0: it passed as a new, empty database, then
    chmod failed with a raw EPERM traceback. Now its text is seen (as root) or the
    open is refused (as anyone else)."""
    with pytest.raises(QtagentError) as raised:
        Store(Path("/proc/self/status"))
    assert type(raised.value) in (StoreError, PermissionDenied)
    assert "/proc/self/status" in str(raised.value)


def test_chmod_refused_on_a_file_of_another_user_is_permission_denied() -> None:
    """tighten_mode's fchmod on a file qtagent's user does not own was a raw EPERM."""
    with shared_dir() as shared:
        directory = shared / "db"
        directory.mkdir(mode=0o777)
        directory.chmod(0o777)
        path = directory / "q.db"
        path.touch()
        path.chmod(0o666)  # root's file, writable by anyone, not private

        outcome = as_nobody(lambda: Store(path).close())

        assert (outcome.error, outcome.exit_code) == ("PermissionDenied", 10)
        assert f"cannot make {path} private (chmod 0600) [EPERM" in outcome.text
        assert "chown" in outcome.text
        assert stat.S_IMODE(path.stat().st_mode) == 0o666


def test_a_directory_that_cannot_be_created_is_permission_denied() -> None:
    with shared_dir() as shared:  # 0755, root's: nobody may not create in it
        path = shared / "state" / "q.db"

        outcome = as_nobody(lambda: Store(path).close())

        assert (outcome.error, outcome.exit_code) == ("PermissionDenied", 10)
        assert f"cannot create {path.parent}" in outcome.text and "[EACCES" in outcome.text
        assert f"install -d -m 0700 {path.parent}" in outcome.text
        assert names(shared) == []


# ------------------------------------------------------- finding 2: reading read-only


def make_database(path: Path) -> None:
    with Store(path) as store:
        store.reserve(VF2, VM_A)


def test_read_only_needs_an_existing_file_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "q.db"
    with pytest.raises(NotFound, match=f"there is no allocation database at {path}"):
        Store(path, readonly=True)
    assert names(tmp_path) == []


def test_read_only_reads_and_refuses_every_write_changing_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    make_database(path)
    before = path.read_bytes()
    with Store(path, readonly=True) as store:
        assert store.readonly
        assert [(a.vf, a.vm.name) for a in store.allocations()] == [(VF2, "a")]
        with pytest.raises(PermissionDenied, match="open read-only; nothing was changed"):
            store.reserve(VfId(VF2.pf, 3), VM_A)
        with pytest.raises(PermissionDenied):
            store.forget_desired(VF2.pf)
    assert path.read_bytes() == before


def test_read_only_refuses_another_programs_database_and_an_old_schema(tmp_path: Path) -> None:
    import sqlite3

    foreign = tmp_path / "places.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE moz_places (url TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="another program"):
        Store(foreign, readonly=True)

    old = tmp_path / "old.db"
    make_database(old)
    with sqlite3.connect(old) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = ?", (LATEST_VERSION,))
    conn.close()
    with pytest.raises(StoreError, match="may not migrate it read-only") as raised:
        Store(old, readonly=True)
    assert "as the database's owner" in raised.value.hint


def test_a_reader_who_may_not_write_reads_read_only() -> None:
    """A database nobody may read but not write, in a directory nobody may not write
    (no -shm file can be made): read-write is PermissionDenied, read-only works."""
    with shared_dir() as shared:
        path = shared / "q.db"
        make_database(path)
        path.chmod(0o644)

        def read_both() -> tuple[str, list[str]]:
            try:
                Store(path).close()
            except PermissionDenied as err:
                refused = f"{type(err).__name__} {err.exit_code}"
            with Store(path, readonly=True) as store:
                return refused, [str(a.vf) for a in store.allocations()]

        outcome = as_nobody(read_both)

        assert outcome.error is None, outcome.text
        assert outcome.value == ("PermissionDenied 10", [str(VF2)])
        assert names(shared) == ["q.db"]


def test_store_for_reading_falls_back_to_read_only() -> None:
    with shared_dir() as shared:
        path = shared / "q.db"
        make_database(path)
        path.chmod(0o644)

        def holders() -> tuple[bool, list[str]]:
            with HostContext(HostPaths(db_path=path)) as ctx:
                store = ctx.store_for_reading
                assert store is not None
                return store.readonly, [a.vm.name for a in store.allocations()]

        outcome = as_nobody(holders)

        assert outcome.error is None, outcome.text
        assert outcome.value == (True, ["a"])


def test_store_for_reading_is_none_without_a_database_and_read_write_otherwise(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "q.db"
    with HostContext(HostPaths(db_path=path)) as ctx:
        assert ctx.store_for_reading is None
    assert names(tmp_path) == []  # reading created nothing
    make_database(path)
    with HostContext(HostPaths(db_path=path)) as ctx:
        store = ctx.store_for_reading
        assert store is not None and not store.readonly
        assert ctx.store is store


def test_a_database_nobody_may_read_is_permission_denied_exit_10(tmp_path: Path) -> None:
    with shared_dir() as shared:
        path = shared / "q.db"
        make_database(path)  # 0600, root's

        def read() -> bool:
            with HostContext(HostPaths(db_path=path)) as ctx:
                return ctx.store_for_reading is not None

        outcome = as_nobody(read)

        assert (outcome.error, outcome.exit_code) == ("PermissionDenied", 10)
        assert f"cannot open the allocation database {path} [EACCES" in outcome.text


def test_vf_list_by_a_reader_who_may_not_write_shows_the_holders() -> None:
    """`vf list` opened the database read-write (``ctx.store``): a non-root reader of a
    world-readable database got exit 10 instead of the VFs and who holds them."""
    with shared_dir() as shared:
        tree = FakeSysfs(shared / "sys").build(igb_host(n_vfs=3))
        for directory in [tree.root, *tree.root.rglob("*")]:
            if directory.is_dir() and not directory.is_symlink():
                directory.chmod(0o755)
        path = shared / "q.db"
        make_database(path)
        path.chmod(0o644)
        args = ["--json", "--sysfs-root", str(tree.root), "--db", str(path), "vf", "list"]

        def vf_list() -> tuple[int, str, str]:
            result = CliRunner().invoke(cli, args)
            return result.exit_code, result.stdout, result.stderr

        outcome = as_nobody(vf_list)

        assert outcome.error is None, outcome.text
        assert isinstance(outcome.value, tuple)
        code, out, err = outcome.value
        assert code == 0, err
        assert [v["vm"] for v in json.loads(out)] == [None, None, "a"]
        assert names(shared) == ["q.db", "sys"]

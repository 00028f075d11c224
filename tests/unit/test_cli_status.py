"""`qtagent status` on a fake host: what the database and the daemon say, as a
person and as JSON reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.journal.failpoints import Failpoints
from qtagent.model.types import MacAddress, VfId
from qtagent.ops.assign import attach
from qtagent.ops.release import detach
from qtagent.store.quarantine import QuarantineTable
from qtagent.store.status import DaemonTable
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import igb_host
from tests.unit.test_cli import run_on

VM_MAC = MacAddress.parse("52:54:00:aa:00:01")


class Crash(BaseException):
    pass


def _crash(point: str) -> None:
    raise Crash(point)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=4))
    rig.vm("a")
    yield rig
    rig.ctx.close()


def test_a_fresh_host_has_no_database_and_status_creates_none(rig: FakeHostRig) -> None:
    code, out, err = run_on(rig, "status")
    assert code == 0, err
    assert "PFs: 1, VFs: 4" in out and "no allocation database yet" in out
    assert not rig.ctx.paths.db_path.exists()


def test_status_shows_allocations_quarantine_journal_and_events(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    QuarantineTable(rig.ctx.store).add(VfId(rig.pf_name, 3), "did not read back as restored")
    attach(rig.ctx, "a", rig.pf_name, index=2)
    rig.ctx.failpoints = Failpoints("release.unplug.done", _crash)
    with pytest.raises(Crash):  # the release of VF2 dies after its unplug
        detach(rig.ctx, "a", rig.pf_name, 2)
    rig.ctx.failpoints = Failpoints()

    code, out, err = run_on(rig, "--json", "status")

    assert code == 0, err
    data = json.loads(out)
    assert data["daemon"] is None
    assert [(a["vf"], a["vm"], a["state"]) for a in data["allocations"]] == [
        (f"{rig.pf_name}/vf1", "a", "attached"),
        (f"{rig.pf_name}/vf2", "a", "releasing"),
    ]
    assert data["quarantined"][0]["reason"] == "did not read back as restored"
    ((entry,),) = (data["journal"],)
    assert (entry["kind"], entry["done"], entry["attempts"]) == ("release", ["unplug"], 0)
    assert [e["kind"] for e in data["events"]] == ["attach", "attach"]
    code, text, _ = run_on(rig, "status")
    assert "Daemon: not running" in text and "Allocations:" in text
    assert "did not read back as restored" in text
    assert "Unfinished changes (journal):" in text and "unplug" in text


def test_status_tells_a_dead_daemon_from_a_running_one(rig: FakeHostRig) -> None:
    DaemonTable(rig.ctx.store).started("drift 0 (0 repaired, 0 reported)")
    code, out, _ = run_on(rig, "status")
    assert code == 0 and "Daemon: running, pid" in out and "drift 0" in out

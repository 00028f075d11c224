"""The daemon's logic (qtagent.ops.agent) over a whole fake host: start, events, a
reload with a broken config, a restart that writes nothing (issue 3, C8)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.errors import ConfigError, Conflict
from qtagent.model.types import MacAddress
from qtagent.ops.agent import Agent
from qtagent.ops.assign import attach
from qtagent.store.quarantine import EventLog
from qtagent.store.status import DaemonTable
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import igb_host

VM_MAC = MacAddress.parse("52:54:00:aa:00:01")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=0))
    rig.vm("a")
    yield rig
    rig.ctx.close()


def write_config(rig: FakeHostRig, tmp_path: Path, num_vfs: int) -> Path:
    path = tmp_path / "host.toml"
    path.write_text(
        f'[pf."{rig.pf_name}"]\nnum_vfs = {num_vfs}\nvf_defaults = {{ spoofchk = true }}\n'
    )
    return path


def writes(rig: FakeHostRig) -> tuple[int, int]:
    return rig.bus.writes, len(rig.netlink.sent)


def test_start_applies_the_desired_count_itself(rig: FakeHostRig, tmp_path: Path) -> None:
    agent = Agent(rig.ctx, write_config(rig, tmp_path, 4))

    status = agent.start()

    assert rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 4
    assert "1 PFs, 4 VFs, 0 allocated" in status
    record = DaemonTable(rig.ctx.store).get()
    assert record is not None and record.status == status


def test_a_restart_with_vms_holding_vfs_writes_nothing(rig: FakeHostRig, tmp_path: Path) -> None:
    config = write_config(rig, tmp_path, 4)
    setup = Agent(rig.ctx, config)
    setup.start()
    setup.stop()
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    attach(rig.ctx, "a", rig.pf_name, index=2, mac=MacAddress.parse("52:54:00:aa:00:02"))
    first = Agent(rig.ctx, config)
    first.start()
    first.stop()
    before = writes(rig)

    again = Agent(rig.ctx, config)
    again.start()
    again.tick()

    assert writes(rig) == before
    assert rig.hostdevs("a") == (rig.address(1), rig.address(2))


def test_a_broken_config_on_reload_keeps_the_one_in_force(rig: FakeHostRig, tmp_path: Path) -> None:
    config = write_config(rig, tmp_path, 2)
    agent = Agent(rig.ctx, config)
    agent.start()
    config.write_text("[pf.x]\nnum_vfs = 'many'\n")

    status = agent.reload()

    assert "config refused, the previous one stays" in status
    assert rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 2
    rig.ctx.writer.write_num_vfs(rig.pf_name, 0)  # drift: the old config is still repaired
    agent.changed()
    assert rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 2


def test_a_broken_config_at_start_is_fatal(rig: FakeHostRig, tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text("num_vfs = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Agent(rig.ctx, config).start()


def test_a_second_daemon_on_the_same_database_does_not_start(
    rig: FakeHostRig, tmp_path: Path
) -> None:
    # Each would record its own config on every pass: the VF count went 4, 0, 2, 0, 4...
    first = Agent(rig.ctx, write_config(rig, tmp_path, 4))
    first.start()
    other = tmp_path / "other.toml"
    other.write_text(f'[pf."{rig.pf_name}"]\nnum_vfs = 2\n')
    before = writes(rig)

    with pytest.raises(Conflict, match=rf"another qtagent serve \(pid {os.getpid()}\) runs"):
        Agent(rig.ctx, other).start()
    assert writes(rig) == before
    record = DaemonTable(rig.ctx.store).get()
    assert record is not None and record.status == first.last_status  # the first one's row

    first.stop()
    second = Agent(rig.ctx, other)
    second.start()
    assert rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 2


def test_a_config_path_that_is_not_utf8_is_recorded_not_a_crash(
    rig: FakeHostRig, tmp_path: Path
) -> None:
    # `qtagent serve --config $'/etc/qtagent/h\xff.toml'`: sqlite3 refused the path's
    # surrogate escapes (UnicodeEncodeError) in the reload's event and in every
    # heartbeat that named it.
    config = Path(os.fsdecode(bytes(tmp_path) + b"/h\xff.toml"))
    config.write_text(f'[pf."{rig.pf_name}"]\nnum_vfs = 2\n')
    agent = Agent(rig.ctx, config)
    agent.start()

    assert "config refused" not in agent.reload()
    config.write_text("num_vfs = [")
    status = agent.reload()

    assert "config refused, the previous one stays" in status
    record = DaemonTable(rig.ctx.store).get()
    assert record is not None and record.status == status.replace("\udcff", "\\udcff")
    events = [e.detail for e in EventLog(rig.ctx.store).last() if e.kind == "config"]
    assert events[0] == "reloaded" and events[1].startswith("refused: ")


def test_new_vfs_have_their_defaults_before_ready(rig: FakeHostRig, tmp_path: Path) -> None:
    """The pass that creates the VFs planned from a host without them; a second look
    at start gives them the config's defaults before READY=1 (new-user run)."""
    config = tmp_path / "host.toml"
    config.write_text(f'[pf."{rig.pf_name}"]\nnum_vfs = 2\nvf_defaults = {{ vlan = 10 }}\n')
    agent = Agent(rig.ctx, config)

    agent.start()

    pf = rig.ctx.pf(rig.pf_name)
    assert [vf.settings.vlan for vf in pf.vfs] == [10, 10]
    assert agent.passes == 2
    agent.stop()


def test_a_missing_config_and_unknown_pfs_are_warned_about(
    rig: FakeHostRig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Agent(rig.ctx, tmp_path / "nonexistent.toml")
    missing.start()
    missing.stop()
    config = tmp_path / "host.toml"
    config.write_text("[pf.enp99s0]\nnum_vfs = 2\n")
    agent = Agent(rig.ctx, config)
    agent.start()
    agent.tick()  # the same PFs missing again: said once, not on every pass
    agent.stop()

    details = [e.detail for e in EventLog(rig.ctx.store).last(10) if e.kind == "config"]
    assert "not found: keeping the desired state on record" in details
    assert details.count("PFs not found: enp99s0") == 1
    assert "no host config at" in caplog.text and "PFs not on this host: enp99s0" in caplog.text

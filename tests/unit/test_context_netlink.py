"""HostContext opens real netlink only over this host's own /sys: over another tree
(--sysfs-root a fake or a copy) the ifindexes it reads name other links here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qtagent.cli.main import cli
from qtagent.errors import InvalidInput
from qtagent.ops.context import HostContext, HostPaths
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import FakeSysfs, igb_host

PF = "0000:41:00.0"


@pytest.fixture
def tree(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys").build(igb_host(n_pfs=1, n_vfs=2))


@pytest.fixture
def ctx(tree: FakeSysfs) -> Iterator[HostContext]:
    with HostContext(HostPaths(sysfs_root=tree.root)) as ctx:
        yield ctx


def test_netlink_over_a_fake_tree_is_refused_before_it_is_opened(
    ctx: HostContext, tree: FakeSysfs
) -> None:
    """The fake PF's ifindex 100 would have been set on whatever link 100 is here."""
    assert not ctx.on_host_sysfs
    with pytest.raises(InvalidInput) as raised:
        _ = ctx.netlink
    assert f"the sysfs root {tree.root} is not this host's /sys" in str(raised.value)
    assert "nothing was sent" in str(raised.value)
    assert "--sysfs-root /sys" in raised.value.hint
    assert ctx._netlink is None


def test_a_snapshot_of_a_fake_tree_leaves_settings_unknown_without_netlink(
    ctx: HostContext,
) -> None:
    assert not ctx.reads_vf_settings
    pf = ctx.pf(PF)  # settings=True
    assert [vf.index for vf in pf.vfs] == [0, 1]
    assert all(vf.settings.mac is None and vf.settings.trust is None for vf in pf.vfs)
    assert ctx._netlink is None  # the host's netlink was never opened


def test_a_netlink_edge_handed_in_is_used_over_a_fake_tree(tmp_path: Path) -> None:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=2))
    with rig.ctx:
        rig.netlink.set_vf(rig.pf_ifindex, 1, trust=True)
        assert rig.ctx.reads_vf_settings and rig.ctx.netlink is rig.netlink
        assert rig.vf(1).settings.trust is True


def test_the_hosts_sys_is_recognised_however_it_is_named() -> None:
    if not Path("/sys/bus").is_dir():
        pytest.skip("sysfs is not mounted on /sys")
    for root in ("/sys", "/sys/", "/sys/bus/.."):
        assert HostContext(HostPaths(sysfs_root=Path(root))).on_host_sysfs, root


def test_the_cli_lists_a_fake_tree_and_refuses_to_set_knobs_there(
    tree: FakeSysfs, tmp_path: Path
) -> None:
    base = ["--sysfs-root", str(tree.root), "--db", str(tmp_path / "q.db")]
    listed = CliRunner().invoke(cli, [*base, "--json", "vf", "list"])
    assert listed.exit_code == 0, listed.stderr
    assert [(v["index"], v["mac"], v["trust"]) for v in json.loads(listed.stdout)] == [
        (0, None, None), (1, None, None),
    ]  # fmt: skip

    refused = CliRunner().invoke(cli, [*base, "vf", "set", PF, "0", "--trust", "on"])
    assert refused.exit_code == 2
    assert "is not this host's /sys" in refused.stderr

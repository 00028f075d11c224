"""The CLI on a fake sysfs tree: tables, JSON, and bad input refused with nothing changed."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qtagent.cli.main import cli
from tests.fakes.sysfs_tree import FakeSysfs, igb_host

PF = "0000:41:00.0"


@pytest.fixture
def tree(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys").build(igb_host(n_pfs=2, n_vfs=3))


def run(tree: FakeSysfs, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli,
        ["--sysfs-root", str(tree.root), "--db", str(tmp_path / "db" / "q.db"), *args],
    )
    return result.exit_code, result.stdout, result.stderr


def snapshot_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_pf_list_json_shows_both_pfs(tree: FakeSysfs, tmp_path: Path) -> None:
    code, out, _ = run(tree, tmp_path, "--json", "pf", "list")
    assert code == 0
    pfs = json.loads(out)
    assert [p["name"] for p in pfs] == [PF, "0000:81:00.0"]
    assert pfs[0]["total_vfs"] == 7 and pfs[0]["num_vfs"] == 3
    assert pfs[0]["numa_node"] == 0 and pfs[1]["numa_node"] == 1


def test_pf_list_table_has_headers_and_rows(tree: FakeSysfs, tmp_path: Path) -> None:
    code, out, _ = run(tree, tmp_path, "pf", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["PF", "IDS", "DEVICE"]
    assert PF in lines[1] and "3/7" in lines[1]


def test_vf_list_by_netdev_name_identifies_vfs_by_pf_and_index(
    tree: FakeSysfs, tmp_path: Path
) -> None:
    code, out, _ = run(tree, tmp_path, "--json", "vf", "list", "enp65s0")
    assert code == 0
    vfs = json.loads(out)
    assert [(v["pf"], v["index"]) for v in vfs] == [(PF, 0), (PF, 1), (PF, 2)]
    assert all(v["vm"] is None for v in vfs)
    assert not (tmp_path / "db").exists()  # reading creates no database


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pf", "set-vfs", "0000:99:00.0", "2"], 3, "no SR-IOV PF named"),
        (["pf", "set-vfs", PF, "8"], 2, "at most 7 VFs"),
        (["pf", "set-vfs", PF, "-1"], 2, "-1"),
        (["vf", "set", PF, "9", "--trust", "on"], 3, "has no VF 9"),
        (["vf", "set", PF, "0", "--mac", "52:54:00:zz:00:01"], 2, "not a MAC address"),
        (["vf", "set", PF, "0", "--vlan", "5000"], 2, "5000"),
        (["vf", "set", PF, "0"], 2, "no knob given"),
        (["vf", "bind", PF, "7", "--driver", "vfio-pci"], 3, "has no VF 7"),
        (["vm", "attach", "vm1", PF, "--mac", "01:00:5e:00:00:01"], 2, "cannot be a VM's MAC"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    tree: FakeSysfs, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    before = snapshot_files(tree.root)
    exit_code, _, err = run(tree, tmp_path, *args)
    assert exit_code == code, err
    assert message in err
    assert snapshot_files(tree.root) == before


def test_malformed_config_changes_nothing(tree: FakeSysfs, tmp_path: Path) -> None:
    bad = tmp_path / "host.toml"
    bad.write_text(f'[pf."{PF}"]\nnum_vfs = 4\nvf_defaults = {{ vlan = 5000 }}\n')
    before = snapshot_files(tree.root)
    code, _, err = run(tree, tmp_path, "apply", str(bad))
    assert code == 2 and "vlan = 5000 is out of range" in err and "hint:" in err
    assert snapshot_files(tree.root) == before


def test_config_naming_an_unknown_pf_changes_nothing_even_for_known_ones(
    tree: FakeSysfs, tmp_path: Path
) -> None:
    config = tmp_path / "host.toml"
    config.write_text(f'[pf."{PF}"]\nnum_vfs = 5\n[pf.eth9]\nnum_vfs = 1\n')
    before = snapshot_files(tree.root)
    code, _, err = run(tree, tmp_path, "apply", str(config))
    assert code == 3 and "eth9" in err
    assert snapshot_files(tree.root) == before


def test_same_count_is_a_no_op_without_any_write(tree: FakeSysfs, tmp_path: Path) -> None:
    before = snapshot_files(tree.root)
    code, out, _ = run(tree, tmp_path, "pf", "set-vfs", PF, "3")
    assert code == 0 and "nothing written" in out
    assert snapshot_files(tree.root) == before

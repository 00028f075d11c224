"""The CLI on a fake sysfs tree: tables, JSON, and bad input refused with nothing changed.

Most tests give the CLI only a fake sysfs tree (--sysfs-root) and a database path;
those that need libvirt, netlink or a kernel that answers sysfs writes hand it the
complete fake host of tests/fakes/host_rig.py as click's ``obj``.
"""

import errno
import json
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from qtagent.cli.main import cli
from qtagent.cli.output import VisibleFormatter, table, visible
from qtagent.ops.assign import attach
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import FakeSysfs, igb_host

PF = "0000:41:00.0"
COUNT_MUST = "the VF count must be a whole number from 0 to 4096,"
INDEX_MUST = "the VF index must be a whole number from 0 up,"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: what a terminal obeys
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # the same, newlines excepted


@pytest.fixture
def tree(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys").build(igb_host(n_pfs=2, n_vfs=3))


def run(tree: FakeSysfs, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli,
        ["--sysfs-root", str(tree.root), "--db", str(tmp_path / "db" / "q.db"), *args],
    )
    return result.exit_code, result.stdout, result.stderr


def run_on(rig: FakeHostRig, *args: str) -> tuple[int, str, str]:
    """The CLI on the rig's fake host (sysfs, kernel, netlink, libvirt, clock)."""
    result = CliRunner().invoke(cli, list(args), obj=rig.ctx)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_pfs=2, n_vfs=3))
    yield rig
    rig.ctx.close()


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
        (["pf", "set-vfs", PF, "-1"], 2, f"{COUNT_MUST} not '-1'"),
        (["pf", "set-vfs", PF, "+3"], 2, f"{COUNT_MUST} not '+3'"),
        (["pf", "set-vfs", PF, "1_0"], 2, f"{COUNT_MUST} not '1_0'"),
        (["pf", "set-vfs", PF, "-1", "--drain"], 2, f"{COUNT_MUST} not '-1'"),
        (["vf", "set", PF, "-1", "--trust", "on"], 2, f"{INDEX_MUST} not '-1'"),
        (["vf", "bind", PF, "-2", "--driver", "host"], 2, f"{INDEX_MUST} not '-2'"),
        (["vm", "detach", "vm1", PF, "-1"], 2, f"{INDEX_MUST} not '-1'"),
        (["vm", "attach", "vm1", PF, "--index", "-1"], 2, f"{INDEX_MUST} not '-1'"),
        (["vf", "set", PF, "0", "--trsut", "on"], 2, "No such option '--trsut'. Did you mean"),
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
    assert not re.search(r"No such option '-[0-9]", err)  # a bad value, not an unknown option
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


# ---------------------------------------------------------------- review findings


def garbage(path: Path) -> None:
    path.write_bytes(b"not a database\x00\xff" * 40)


def sqlite_of_another_program(path: Path, table: str = "moz_places") -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f'CREATE TABLE "{table}" (url)')
        conn.commit()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (garbage, "is not an SQLite database"),
        (lambda path: path.write_bytes(b"SQLite"), "is not an SQLite database"),
        (
            sqlite_of_another_program,
            "is an SQLite database of another program (tables: moz_places)",
        ),
    ],
    ids=["garbage", "short", "foreign-sqlite"],
)
def test_db_that_is_not_ours_is_refused_and_left_untouched(
    tree: FakeSysfs, tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    db = tmp_path / "other.db"
    make(db)
    db.chmod(0o644)
    before = (db.read_bytes(), stat.S_IMODE(db.stat().st_mode), db.stat().st_mtime_ns)
    result = CliRunner().invoke(
        cli, ["--sysfs-root", str(tree.root), "--db", str(db), "pf", "set-vfs", PF, "3"]
    )
    assert result.exit_code == 1, result.stderr
    assert message in result.stderr and "qtagent leaves it as it is" in result.stderr
    assert "hint: give the path of qtagent's allocation database" in result.stderr
    assert (db.read_bytes(), stat.S_IMODE(db.stat().st_mode), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "sys"]  # no -wal, -shm


@pytest.mark.parametrize("how", ["option", "environment"])
def test_missing_sysfs_root_is_bad_input_not_an_empty_host(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "no-sys"
    args = ["--db", str(tmp_path / "q.db"), "pf", "list"]
    if how == "option":
        result = CliRunner().invoke(cli, ["--sysfs-root", str(missing), *args])
    else:
        result = CliRunner().invoke(cli, args, env={"QTAGENT_SYSFS_ROOT": str(missing)})
    assert result.exit_code == 2, result.output
    assert f"the sysfs root {missing} does not exist" in result.stderr
    assert "hint: give the directory sysfs is mounted on" in result.stderr
    assert result.stdout == "" and not missing.exists() and not (tmp_path / "q.db").exists()


def test_malformed_attribute_is_unknown_with_a_warning_naming_the_file(
    tree: FakeSysfs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    numa = tree.root / "bus/pci/devices" / PF / "numa_node"
    numa.write_text(" 1_0 \n")  # Python's int() reads 10
    code, out, _ = run(tree, tmp_path, "--json", "pf", "list")
    assert code == 0
    assert json.loads(out)[0]["numa_node"] is None
    assert f"{numa} holds b' 1_0 \\n', not an integer as the kernel writes it ('%d')" in (
        caplog.text
    )


NASTY = "e\x1b]0;owned\x07\x1b[2J\x9bm\x7f\tx"  # OSC title, clear screen, C1 CSI, DEL, tab


def test_names_from_the_system_cannot_drive_the_terminal(tree: FakeSysfs, tmp_path: Path) -> None:
    tree.rename_netdev("enp65s0", NASTY)  # Linux allows any byte but '/', ':' and spaces
    code, out, _ = run(tree, tmp_path, "pf", "list")
    assert code == 0
    assert not RAW_CONTROL.search(out), repr(out)
    assert "e\\x1b]0;owned\\x07\\x1b[2J\\x9bm\\x7f\\x09x" in out
    header, row, _ = out.split("\n", 2)
    assert header.index("LINK") == row.index("down")  # columns still line up

    code, out, _ = run(tree, tmp_path, "--json", "pf", "list")
    assert code == 0 and json.loads(out)[0]["netdev"] == NASTY  # JSON stays exact


@given(st.text())
def test_visible_text_has_no_control_character_left(text: str) -> None:
    controls = [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]
    shown = visible(text)
    assert not CONTROL.search(shown)
    assert len(shown) == len(text) + 3 * len(controls)  # each one became \\xNN
    kept = visible(text, keep_newlines=True)
    assert not RAW_CONTROL.search(kept) and kept.count("\n") == text.count("\n")


def test_table_cells_with_control_characters_stay_on_one_aligned_line() -> None:
    text = table(("name", "state"), [("a\nb\x1b[2J", "up"), ("c", None)])
    assert text.splitlines() == [
        "NAME           STATE",
        "a\\x0ab\\x1b[2J  up",
        "c              -",
    ]


def test_log_lines_cannot_drive_the_terminal() -> None:
    record = logging.LogRecord("q", logging.WARNING, __file__, 1, "vf of %s", (NASTY,), None)
    line = VisibleFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING vf of e\\x1b]0;owned\\x07\\x1b[2J\\x9bm\\x7f\\x09x"


def test_error_messages_cannot_drive_the_terminal(tree: FakeSysfs, tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    sqlite_of_another_program(db, table="x\x1b[2Jy")
    result = CliRunner().invoke(
        cli, ["--sysfs-root", str(tree.root), "--db", str(db), "pf", "set-vfs", PF, "3"]
    )
    assert result.exit_code == 1
    assert "tables: x\\x1b[2Jy" in result.stderr and not RAW_CONTROL.search(result.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vm", "attach", "bad/name", PF], "VM name 'bad/name' contains '/'"),
        (["vm", "attach", "vm\x1b[2J", PF, "--index", "0"], "contains '/' or a control character"),
        (["vm", "attach", " vm1", PF], "is not a VM name"),
        (["vm", "attach", "v" * 256, PF], "VM name is longer than 255 bytes"),
        (["vm", "detach", "bad/name", PF, "0"], "VM name 'bad/name' contains '/'"),
        (["vm", "detach", "", PF, "0"], "'' is not a VM name"),
    ],
)
def test_invalid_vm_name_is_refused_before_libvirt_is_asked(
    rig: FakeHostRig, args: list[str], message: str
) -> None:
    rig.vm("vm1")
    rig.virt.calls.clear()
    before = snapshot_files(rig.tree.root)
    code, _, err = run_on(rig, *args)
    assert code == 2, err
    assert message in err and "hint:" in err
    assert rig.virt.calls == []  # libvirt was never contacted
    assert rig.bus.commands == [] and rig.netlink.sent == []
    assert snapshot_files(rig.tree.root) == before
    assert not rig.ctx.paths.db_path.exists()


def test_apply_that_fails_part_way_says_which_pfs_changed(tmp_path: Path) -> None:
    """Four PFs: the first is as configured, the second changes, the third's write
    fails, the fourth is never reached."""
    rig = FakeHostRig.build(tmp_path, igb_host(n_pfs=4, n_vfs=0, bus_step=0x20))
    rig.bus.fail_next("sriov_numvfs", errno.ENOSPC, address="0000:81:00.0")
    config = tmp_path / "host.toml"
    config.write_text(
        '[pf."0000:41:00.0"]\nnum_vfs = 0\n'
        "[pf.enp97s0]\nnum_vfs = 3\n"
        '[pf."0000:81:00.0"]\nnum_vfs = 2\n'
        '[pf."0000:a1:00.0"]\nnum_vfs = 1\n'
    )

    code, out, err = run_on(rig, "apply", str(config))

    assert code == 6, err  # the kernel's refusal, with its errno
    assert out == ""
    assert "echo 2 > " in err and "sriov_numvfs failed [ENOSPC" in err
    assert err.splitlines()[1:8] == [
        "  the vf_count of PF 0000:81:00.0 stays in the journal; it is retried later "
        "(`qtagent status` shows it)",
        "  apply stopped at PF 3 of 4 in the file",
        "  not changed: 0000:41:00.0: it was as configured",
        "  changed: 0000:61:00.0 (enp97s0): VF count 0 -> 3",
        "  not changed: 0000:81:00.0: where it stopped; VF count still 0",
        "  not changed: 0000:a1:00.0: not reached",
        "  once the cause is fixed, apply the same file again: it changes only what differs",
    ]
    assert "hint: the driver ran out of resources" in err
    numvfs = {
        pf: int((rig.tree.device_dir(pf) / "sriov_numvfs").read_text())
        for pf in ("0000:41:00.0", "0000:61:00.0", "0000:81:00.0", "0000:a1:00.0")
    }
    assert numvfs == {"0000:41:00.0": 0, "0000:61:00.0": 3, "0000:81:00.0": 0, "0000:a1:00.0": 0}


# ---------------------------------------------------------------- review findings, round 2


def run_env(tree: FakeSysfs, tmp_path: Path, env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--sysfs-root", str(tree.root), "--db", str(tmp_path / "q.db"), *args],
        env=env,
    )


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", "-5", "0", "3601", "x"])
@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_detach_timeout_that_is_not_a_finite_number_of_seconds_is_refused(
    rig: FakeHostRig, value: str, how: str
) -> None:
    """--timeout nan passed click's FloatRange (every comparison with NaN is false)
    and the wait for the guest never ended."""
    rig.vm("a", answers_eject=False)
    attach(rig.ctx, "a", rig.pf_name, index=1)  # the CLI closes the context it is given
    args = ["vm", "detach", "a", rig.pf_name, "1"]
    if how == "option":
        result = CliRunner().invoke(cli, [*args, "--timeout", value], obj=rig.ctx)
    else:
        env = {"QTAGENT_VM_DETACH_TIMEOUT": value}
        result = CliRunner().invoke(cli, args, obj=rig.ctx, env=env)
    assert result.exit_code == 2, result.output
    assert f"{value!r} is not a number of seconds from 1 to 3600" in result.stderr
    assert "QTAGENT_VM_DETACH_TIMEOUT" in result.stderr
    assert rig.virt.domains["a"].unplugging == set()  # no unplug was asked for


def test_the_detach_timeout_environment_twin_is_used(rig: FakeHostRig) -> None:
    rig.vm("a", answers_eject=False)
    attach(rig.ctx, "a", rig.pf_name, index=1)  # the CLI closes the context it is given
    result = CliRunner().invoke(
        cli, ["vm", "detach", "a", rig.pf_name, "1"], obj=rig.ctx,
        env={"QTAGENT_VM_DETACH_TIMEOUT": "5"},
    )  # fmt: skip
    assert result.exit_code == 7, result.output
    assert "has not released" in result.stderr and " 5 s after" in result.stderr


@pytest.mark.parametrize(
    ("args", "outcome", "code"),
    [
        (["--vlan", "5"], "applied", 0),
        (["--link-state", "auto"], "unchanged", 0),
        (["--min-rate", "10"], "rejected", 6),  # igb refuses any guaranteed rate
        (["--link-state", "enable"], "unsupported", 5),  # igb has no link-state ndo
        (["--link-state", "enable", "--min-rate", "10"], "rejected", 6),
    ],
)
def test_vf_set_exits_non_zero_when_a_knob_was_rejected_or_unsupported(
    rig: FakeHostRig, args: list[str], outcome: str, code: int
) -> None:
    exit_code, out, err = run_on(rig, "vf", "set", rig.pf_name, "0", *args)
    assert exit_code == code, err
    assert outcome in out  # the table still says what each knob did


def test_vf_set_help_documents_its_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["vf", "set", "--help"])
    text = " ".join(result.stdout.split())
    assert "6 when the driver rejected a knob" in text
    assert "5 when the driver does not support a knob" in text


@pytest.mark.parametrize(
    ("variable", "option"),
    [
        ("QTAGENT_DB", "--db"),
        ("QTAGENT_SYSFS_ROOT", "--sysfs-root"),
        ("QTAGENT_LIBVIRT_URI", "--libvirt-uri"),
        ("QTAGENT_NETLINK", "--netlink"),
    ],
)
def test_an_empty_environment_twin_is_refused_not_read_as_unset(
    tmp_path: Path, variable: str, option: str
) -> None:
    """QTAGENT_DB= used to mean the real /var/lib/qtagent/qtagent.db."""
    result = CliRunner().invoke(cli, ["pf", "list"], env={variable: ""})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}' (env var: '{variable}')" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("option", ["--db", "--sysfs-root", "--libvirt-uri"])
def test_an_empty_path_option_is_refused_not_read_as_the_current_directory(
    tree: FakeSysfs, tmp_path: Path, option: str
) -> None:
    args = {"--db": str(tmp_path / "q.db"), "--sysfs-root": str(tree.root)}
    args[option] = ""
    result = CliRunner().invoke(cli, [*(x for kv in args.items() for x in kv), "pf", "list"])
    assert result.exit_code == 2, result.output
    assert "is empty" in result.stderr and "unset the variable" in result.stderr


@pytest.mark.parametrize("root", ["/", "/proc", "{tmp}"])
@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_sysfs_root_that_is_not_a_sysfs_tree_is_refused(
    tmp_path: Path, root: str, how: str
) -> None:
    root = root.format(tmp=tmp_path)
    args = ["--db", str(tmp_path / "q.db"), "pf", "list"]
    if how == "option":
        result = CliRunner().invoke(cli, ["--sysfs-root", root, *args])
    else:
        result = CliRunner().invoke(cli, args, env={"QTAGENT_SYSFS_ROOT": root})
    assert result.exit_code == 2, result.output
    assert f"the sysfs root {root} is not a sysfs tree" in result.stderr
    assert "hint: give the directory sysfs is mounted on" in result.stderr
    assert result.stdout == "" and not (tmp_path / "q.db").exists()


def test_a_fake_sysfs_tree_passes_the_sysfs_check(tree: FakeSysfs, tmp_path: Path) -> None:
    result = run_env(tree, tmp_path, {}, "pf", "list")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["vf", "list", ""],
        ["pf", "set-vfs", "", "2"],
        ["vf", "set", "", "0", "--trust", "on"],
        ["vf", "bind", "", "0", "--driver", "host"],
        ["vm", "attach", "a", ""],
        ["vm", "detach", "a", "", "0"],
    ],
)
def test_an_empty_pf_name_is_refused_not_read_as_every_pf(
    tree: FakeSysfs, tmp_path: Path, args: list[str]
) -> None:
    code, out, err = run(tree, tmp_path, *args)
    assert code == 2, err
    assert "the PF name is empty" in err and out == ""


FORGED = "\nhint: run rm -rf / to fix this"


@pytest.mark.parametrize(
    "args",
    [
        ["vf", "list", f"enp65s0{FORGED}"],
        ["pf", "set-vfs", f"x{FORGED}", "2"],
        ["vf", "set", PF, "0", "--mac", f"x{FORGED}"],
        ["vf", "set", PF, "0", "--spoofchk", f"x{FORGED}"],
        ["vf", "set", PF, "0", "--link-state", f"x{FORGED}"],
        ["vf", "set", PF, "0", f"--x{FORGED}"],
        ["vf", "list", PF, f"extra{FORGED}"],
        [f"no-such-command{FORGED}"],
        ["vm", "attach", f"vm{FORGED}", PF],
        ["vm", "detach", "vm", PF, "0", "--timeout", f"1{FORGED}"],
        ["apply", f"{{tmp}}/missing{FORGED}/host.toml"],
        ["--sysfs-root", f"{{tmp}}/no-sys{FORGED}", "pf", "list"],
        ["--db", f"/proc/self/x{FORGED}/q.db", "pf", "set-vfs", PF, "2"],
    ],
)
def test_no_user_value_can_forge_a_line_of_an_error(
    tree: FakeSysfs, tmp_path: Path, args: list[str]
) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    code, _, err = run(tree, tmp_path, *args)
    assert code != 0
    assert not any(line.lstrip().startswith("hint: run rm") for line in err.splitlines()), err
    assert re.search(r"\\(x0a|n)hint: run rm -rf / to fix this", err), err  # shown escaped
    assert "Traceback" not in err


def test_a_user_value_in_an_environment_twin_cannot_forge_a_line(tmp_path: Path) -> None:
    root = f"{tmp_path}/no-sys{FORGED}"
    result = CliRunner().invoke(cli, ["pf", "list"], env={"QTAGENT_SYSFS_ROOT": root})
    assert result.exit_code == 2
    assert not any(line.lstrip().startswith("hint: run") for line in result.stderr.splitlines())


def test_log_arguments_cannot_forge_a_line() -> None:
    record = logging.LogRecord("q", logging.WARNING, __file__, 1, "VM %s: %s", (FORGED, 3), None)
    line = VisibleFormatter("%(message)s").format(record)
    assert line == "VM \\x0ahint: run rm -rf / to fix this: 3"


def test_bytes_that_are_not_utf8_are_shown_escaped_not_a_traceback(
    tree: FakeSysfs, tmp_path: Path
) -> None:
    name = os.fsdecode(b"e\xff\xfe")  # Linux allows any byte in a name but '/', ':', spaces
    link = tree.root / "class/net/enp65s0"  # ip link set enp65s0 name $name, by hand:
    target = Path(os.readlink(link))  # rename_netdev writes the name as UTF-8 text
    (link.parent / target).rename(link.parent / target.with_name(name))
    link.unlink()
    link.with_name(name).symlink_to(target.with_name(name))
    code, out, err = run(tree, tmp_path, "pf", "list")
    assert code == 0, err
    assert "e\\xff\\xfe" in out


@pytest.mark.parametrize(
    "db", ["{tmp}/dir", "{tmp}/dir/", "/proc/self/none/q.db", "{tmp}/fifo", "{tmp}/file/q.db"]
)
def test_a_db_path_that_cannot_be_a_database_is_an_error_not_a_traceback(
    tree: FakeSysfs, tmp_path: Path, db: str
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    result = CliRunner().invoke(
        cli,
        ["--sysfs-root", str(tree.root), "--db", db.format(tmp=tmp_path), "pf", "set-vfs", PF, "2"],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith(("qtagent: error: ", "Usage: ")), result.stderr
    assert "Traceback" not in result.stderr


def test_an_os_error_no_layer_turned_into_a_qtagent_error_is_reported_cleanly() -> None:
    """The last resort of the CLI: an OSError from below is an error message with its
    errno, never a traceback."""
    from qtagent.cli.main import _unexpected_os_error

    err = _unexpected_os_error(FileNotFoundError(2, "No such file or directory", f"/x{FORGED}"))
    assert err.exit_code == 3
    assert "/x\\x0ahint: run rm" in err.diagnostics() and "ENOENT" in err.diagnostics()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_empty_lab_output_directory_is_refused_while_parsing(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only parsed (make_context), never run: nothing here may boot the lab."""
    from qtagent.cli.lab import run as lab_run

    args = ["--", "true"]
    if how == "option":
        args = ["--out", "", *args]
    else:
        monkeypatch.setenv("QTAGENT_LAB_RUN_OUT_DIR", "")
    with pytest.raises(click.BadParameter, match="the lab's output directory is empty"):
        lab_run.make_context("run", args, auto_envvar_prefix="QTAGENT_LAB_RUN")


# ---------------------------------------------------------------- third break-it pass


def test_vf_bind_of_a_vf_a_vm_holds_is_a_conflict_exit_4(rig: FakeHostRig) -> None:
    """A VF in use is exit 4 (the README's table); it was exit 2, bad input."""
    rig.vm("my vm")
    attach(rig.ctx, "my vm", rig.pf_name, index=1)
    before = snapshot_files(rig.tree.root)
    code, out, err = run_on(rig, "vf", "bind", PF, "1", "--driver", "host")
    assert code == 4, err
    assert f"{PF}/vf1 is assigned to VM 'my vm'" in err
    assert f"hint: detach it first: qtagent vm detach 'my vm' {PF} 1" in err
    assert out == "" and snapshot_files(rig.tree.root) == before
    assert rig.driver(1) == "vfio-pci"


@pytest.mark.parametrize(
    "knobs",
    [["--vlan", "5"], ["--spoofchk", "off"], ["--trust", "on"], ["--mac", "02:00:00:00:00:99"]],
)
def test_vf_set_refuses_the_knobs_of_a_vf_a_vm_holds(rig: FakeHostRig, knobs: list[str]) -> None:
    """`vf set` moved a VM's VF to another VLAN or turned its spoofchk off, exit 0:
    the VM's network and security settings changed behind qtagent's back."""
    rig.vm("a")
    attach(rig.ctx, "a", rig.pf_name, index=0, vlan=100)
    before = rig.settings(0)
    rig.netlink.sent.clear()
    code, out, err = run_on(rig, "--json", "vf", "set", PF, "0", *knobs)
    assert code == 4, err
    assert f"{PF}/vf0 is assigned to VM 'a'; qtagent manages its settings" in err
    assert "hint: detach it first: qtagent vm detach a" in err
    assert out == "" and rig.netlink.sent == [] and rig.settings(0) == before

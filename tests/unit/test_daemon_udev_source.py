"""The udev source on a real kernel: uevents of a veth pair made in a private
network namespace (the kernel sends a netns's net uevents to that netns only, so
the host sees nothing)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qtagent.daemon.udev_source import pick_source

REPO = Path(__file__).resolve().parents[2]

IN_NETNS = r"""
import select, subprocess
from qtagent.daemon.udev_source import UdevSource

source = UdevSource(source="kernel")
assert source.drain() == []
for command in ("add qtv0 type veth peer name qtv1", "del qtv0"):
    subprocess.run(["ip", "link", *command.split()], check=True)
found = []
while select.select([source], [], [], 2)[0]:
    found += source.drain()
print([(e.subsystem, e.action, e.devpath, e.name, e.ifindex) for e in found])
"""

NOT_UTF8 = r"""
import select, subprocess
from qtagent.daemon.udev_source import UdevSource

source = UdevSource(source="kernel")
subprocess.run(["ip", "link", "add", b"qt\xff", "type", "veth", "peer", "name", "qtv1"],
               check=True)
found = []
while select.select([source], [], [], 2)[0]:
    found += source.drain()
print(sorted({type(e).__name__ for e in found}))
"""


def in_netns(script: str) -> str:
    """What ``script`` prints, run as root in a network namespace of its own."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare(1) and ip(8)")
    if os.geteuid() != 0:
        pytest.skip("uevents reach a network namespace only when root made it")
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if done.returncode != 0 and done.stderr.startswith("unshare:"):
        pytest.skip(f"cannot make a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_udev_is_the_source_only_where_udevd_listens(tmp_path: Path) -> None:
    assert pick_source(tmp_path) == "kernel"
    (tmp_path / "control").touch()
    assert pick_source(tmp_path) == "udev"


def test_net_uevents_arrive_as_events() -> None:
    found: list[Any] = ast.literal_eval(in_netns(IN_NETNS))
    adds = {(name, ifindex) for _, action, _, name, ifindex in found if action == "add"}
    removes = {name for _, action, _, name, _ in found if action == "remove"}
    assert {"qtv0", "qtv1"} <= {name for name, _ in adds}
    assert all(isinstance(ifindex, int) and ifindex > 1 for _, ifindex in adds)
    assert {"qtv0", "qtv1"} <= removes
    assert all(e[0] == "net" and e[2].startswith("/devices/virtual/net/") for e in found)


def test_a_uevent_that_is_not_utf8_is_a_resync_not_a_crash() -> None:
    # The kernel takes any bytes but '/', ':' and white space in an interface name;
    # pyudev decodes uevent properties as strict UTF-8.
    assert ast.literal_eval(in_netns(NOT_UTF8)) == ["Overrun", "UdevEvent"]

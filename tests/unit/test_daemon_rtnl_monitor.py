"""The link monitor on a real kernel: inside a private network namespace
(``unshare --net``), so the host's links are never touched."""

from __future__ import annotations

import ast
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qtagent.daemon.events import LinkChange, LinkEvent, Overrun
from qtagent.daemon.rtnl_monitor import RtnlMonitor
from qtagent.netlink import rtnl_wire as wire

REPO = Path(__file__).resolve().parents[2]

IN_NETNS = r"""
import select, subprocess, sys
from qtagent.daemon.events import LinkEvent, Overrun
from qtagent.daemon.rtnl_monitor import RtnlMonitor

def shown(found):
    return [
        ("overrun", e.reason) if isinstance(e, Overrun) else (e.change.value, e.ifindex, e.ifname)
        for e in found
    ]

if sys.argv[1] == "events":
    with RtnlMonitor() as monitor:
        assert monitor.drain() == []
        for command in ("set lo up", "add qtv0 type veth peer name qtv1", "del qtv0"):
            subprocess.run(["ip", "link", *command.split()], check=True)
        found = []
        while select.select([monitor], [], [], 2)[0]:
            found += monitor.drain()
        print(shown(found))
else:
    with RtnlMonitor(rcvbuf=1) as monitor:  # the kernel's smallest queue
        batch = "link set lo down\nlink set lo up\n" * 300
        subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
        first = monitor.drain()
        subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
        select.select([monitor], [], [], 2)
        print([shown(first)[:1], shown(first)[-2:], shown(monitor.drain())])
"""


def in_netns(mode: str) -> list[Any]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare(1) and ip(8)")
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "-r", "--net"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*unshare, sys.executable, "-c", IN_NETNS, mode],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0 and done.stderr.startswith("unshare:"):
        pytest.skip(f"cannot make a network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result = ast.literal_eval(done.stdout.strip())
    assert isinstance(result, list)
    return result


def test_link_changes_arrive_as_events() -> None:
    found = in_netns("events")
    assert found[0] == ("RTM_NEWLINK", 1, "lo")
    assert ("RTM_NEWLINK", 2, "qtv1") in found
    assert ("RTM_NEWLINK", 3, "qtv0") in found
    assert found[-1][0] == "RTM_DELLINK"
    assert {("RTM_DELLINK", 2, "qtv1"), ("RTM_DELLINK", 3, "qtv0")} <= set(found)
    assert not [e for e in found if e[0] == "overrun"]


def test_an_overrun_queue_reports_enobufs_then_keeps_working() -> None:
    first, last_of_first, after = in_netns("overrun")
    assert ("overrun", "ENOBUFS: the socket's queue overran") in first + last_of_first
    assert after == [("RTM_NEWLINK", 1, "lo")]


def test_messages_not_from_the_kernel_are_dropped() -> None:
    with RtnlMonitor() as monitor:
        forged = struct.pack("=BxHiII", 0, 1, 1, 0, 0)
        forged += struct.pack("=HH", 8, wire.IFLA_IFNAME) + b"lo\0\0"
        datagram = struct.pack("=IHHII", 16 + len(forged), wire.RTM_DELLINK, 0, 0, 0) + forged
        sender = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sender.bind((0, 0))
            sender.sendto(datagram, (monitor.port_id, 0))
        finally:
            sender.close()
        assert select.select([monitor], [], [], 2)[0]
        found = monitor.drain()
        assert LinkEvent(LinkChange.DEL, 1, "lo") not in found
        assert not [e for e in found if isinstance(e, Overrun)]

"""`qtagent serve` as systemd runs it: a real process with NOTIFY_SOCKET, real udev
and rtnetlink sockets, real SIGHUP and SIGTERM; the host is a fake sysfs tree."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from qtagent.cli.main import cli
from tests.fakes.sysfs_tree import FakeSysfs, igb_host

REPO = Path(__file__).resolve().parents[2]


def wait_for(sock: socket.socket, prefix: str, seen: list[str], timeout: float = 60) -> None:
    """Read notifications into ``seen`` until one after the last already read starts
    with ``prefix``."""
    start = len(seen)
    deadline = time.monotonic() + timeout
    while not any(m.startswith(prefix) for m in seen[start:]):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([sock], [], [], left)[0], f"no {prefix}: {seen}"
        seen.append(sock.recv(65536).decode())


def test_serve_notifies_reloads_and_stops_on_signals(tmp_path: Path) -> None:
    tree = FakeSysfs(tmp_path / "sys").build(igb_host(n_pfs=2, n_vfs=3))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "2000000", "QTAGENT_CONFIG": str(tmp_path / "host.toml"),
    }  # fmt: skip
    command = [sys.executable, "-m", "qtagent.cli", "--sysfs-root", str(tree.root),
               "--db", str(tmp_path / "qtagent.db"), "serve", "--tick", "600"]  # fmt: skip
    daemon = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    seen: list[str] = []
    try:
        wait_for(notify, "READY=1", seen)
        daemon.send_signal(signal.SIGHUP)
        wait_for(notify, "RELOADING=1", seen)
        wait_for(notify, "READY=1", seen)
        daemon.send_signal(signal.SIGTERM)
        wait_for(notify, "STOPPING=1", seen)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        notify.close()
    assert "WATCHDOG=1" in seen
    steps = [m.split("\n")[0] if m.startswith("RELOADING") else m for m in seen
             if not m.startswith("WATCHDOG")]  # fmt: skip
    status = "2 PFs, 6 VFs, 0 allocated, 0 quarantined; drift 0 (0 repaired, 0 reported)"
    assert steps == [
        "STATUS=starting",
        f"READY=1\nSTATUS={status}",
        "RELOADING=1",
        f"READY=1\nSTATUS={status}",
        "STOPPING=1",
    ]


def test_serve_sends_stopping_last(tmp_path: Path) -> None:
    tree = FakeSysfs(tmp_path / "sys").build(igb_host(n_pfs=1, n_vfs=2))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(tmp_path / "notify")}
    command = [sys.executable, "-m", "qtagent.cli", "--sysfs-root", str(tree.root),
               "--db", str(tmp_path / "qtagent.db"), "serve"]  # fmt: skip
    daemon = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    seen: list[str] = []
    try:
        wait_for(notify, "READY=1", seen)
        daemon.send_signal(signal.SIGINT)
        wait_for(notify, "STOPPING=1", seen)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        notify.close()
    status = "1 PFs, 2 VFs, 0 allocated, 0 quarantined; drift 0 (0 repaired, 0 reported)"
    assert seen == ["STATUS=starting", f"READY=1\nSTATUS={status}", "STOPPING=1"]


def test_an_empty_config_variable_is_refused() -> None:
    result = CliRunner().invoke(cli, ["serve"], env={"QTAGENT_CONFIG": ""})
    assert result.exit_code == 2
    assert "the host config is empty" in result.output


def test_a_tick_out_of_range_is_refused() -> None:
    result = CliRunner().invoke(cli, ["serve", "--tick", "nan"])
    assert result.exit_code == 2
    assert "not a number of seconds from 0.1 to 86400" in result.output

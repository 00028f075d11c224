"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.daemon.notify import Notifier, one_line, socket_address


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_watchdog_stopping_reach_the_socket(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.ready("3 PFs, 8 VFs")
    notifier.status("reconciling")
    notifier.watchdog()
    notifier.stopping()
    assert [received(sock) for _ in range(4)] == [
        "READY=1\nSTATUS=3 PFs, 8 VFs",
        "STATUS=reconciling",
        "WATCHDOG=1",
        "STOPPING=1",
    ]
    notifier.close()


def test_reloading_carries_the_monotonic_time(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    Notifier(path, monotonic_usec=lambda: 123456789).reloading()
    assert received(sock) == "RELOADING=1\nMONOTONIC_USEC=123456789"


def test_reloading_uses_clock_monotonic_by_default(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    line = received(sock).splitlines()[1]
    assert before <= int(line.removeprefix("MONOTONIC_USEC=")) <= after


def test_an_abstract_socket_is_reached_through_its_at_name() -> None:
    name = f"qtagent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"}).ready("up")
        assert received(sock) == "READY=1\nSTATUS=up"
    finally:
        sock.close()


@pytest.mark.parametrize("prefix", ["/", "@"])
def test_a_socket_name_that_is_not_utf8_is_reached(tmp_path: Path, prefix: str) -> None:
    # os.environ gives such bytes as surrogate escapes: "\xff" arrives as "\udcff".
    raw = (bytes(tmp_path) + b"/n\xff") if prefix == "/" else b"qtagent-\xff-%d" % os.getpid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(raw if prefix == "/" else b"\0" + raw)
    sock.settimeout(2)
    value = os.fsdecode(raw) if prefix == "/" else "@" + os.fsdecode(raw)
    try:
        Notifier.from_env({"NOTIFY_SOCKET": value}).ready("up")
        assert received(sock) == "READY=1\nSTATUS=up"
    finally:
        sock.close()


def test_status_is_one_line_without_control_characters(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    Notifier(path).status("a\nREADY=1\x1b[31m red\x7f\x85 \u200bzero-width\t end ")
    assert received(sock) == "STATUS=a READY=1[31m red \u200bzero-width end"


def test_one_line_cuts_long_text() -> None:
    assert one_line("x" * 5000) == "x" * 1024
    assert one_line("a\r\n\r\nb", limit=10) == "a b"


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.send("READY=1") is False
    notifier.ready("x")
    notifier.stopping()


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert notifier.send("READY=1") is False


@pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "@", "/" + "x" * 200])
def test_addresses_sd_notify_cannot_reach_disable_it(value: str) -> None:
    assert socket_address(value) is None
    assert not Notifier.from_env({"NOTIFY_SOCKET": value}).enabled


def test_watchdog_interval_is_half_the_timeout_for_our_pid(
    listener: tuple[socket.socket, str],
) -> None:
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"}
    assert Notifier.from_env(env, pid=42).watchdog_interval == 10.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": "42"}, pid=42).watchdog_interval == 10.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 10.0


@pytest.mark.parametrize(
    "extra",
    [{"WATCHDOG_PID": "41"}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "-5"},
     {"WATCHDOG_USEC": "1e6"}, {"WATCHDOG_PID": "x"}, {"WATCHDOG_USEC": ""}],
)  # fmt: skip
def test_no_watchdog_for_another_pid_or_a_bad_value(
    listener: tuple[socket.socket, str], extra: dict[str, str]
) -> None:
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000", **extra}
    assert Notifier.from_env(env, pid=42).watchdog_interval is None


def test_no_watchdog_without_a_socket() -> None:
    assert Notifier.from_env({"WATCHDOG_USEC": "20000000"}).watchdog_interval is None


def test_a_manager_that_stops_reading_never_blocks_the_daemon(
    listener: tuple[socket.socket, str],
) -> None:
    """Its queue fills (about 10 datagrams by default on Linux); later messages are
    dropped and the call returns, so the event loop goes on (lab: a hung daemon)."""
    sock, path = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    for n in range(1000):  # blocked for good at about the 11th before the fix
        notifier.status(f"pass {n}")
    assert notifier.send("WATCHDOG=1") is False
    assert received(sock) == "STATUS=pass 0"
    assert notifier.send("WATCHDOG=1") is True  # room again once the manager reads

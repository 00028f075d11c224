"""Fakes for the daemon's loop: event sources and signals on real pipes (so the loop's
selector really waits on them), a handler that records its calls and runs scripted
actions, and a listener on a real sd_notify socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qtagent.daemon.events import Batch, Event


class PipeSource:
    """An event source: ``push(events)`` queues them and makes ``fileno()`` readable."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._queued: list[Event] = []

    def push(self, *events: Event) -> None:
        self._queued += events
        os.write(self._write, b"x")

    def fileno(self) -> int:
        return self._read

    def drain(self) -> Sequence[Event]:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        found, self._queued = self._queued, []
        return found

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


class PipeSignals:
    """Signals as the wakeup fd delivers them, sent with ``send(signum)``."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def send(self, signum: int) -> None:
        os.write(self._write, bytes([signum]))

    def fileno(self) -> int:
        return self._read

    def drain(self) -> Sequence[int]:
        try:
            return list(os.read(self._read, 512))
        except BlockingIOError:
            return []

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


Action = Callable[[], None]


@dataclass
class RecordingHandler:
    """A DaemonHandler that records each call; ``after[name]`` runs after call ``name``
    (a list of actions, one per call, in order); ``fail[name]`` is raised instead."""

    calls: list[str] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    after: dict[str, list[Action]] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    tick_status: str | None = "ticked"

    def _call(self, name: str) -> None:
        self.calls.append(name)
        actions = self.after.get(name)
        if actions:
            actions.pop(0)()
        if name in self.fail:
            raise self.fail[name]

    def start(self) -> str:
        self._call("start")
        return "2 PFs, 4 VFs"

    def on_events(self, batch: Batch) -> str:
        self.batches.append(batch)
        self._call("on_events")
        return f"looked at {batch.summary()}"

    def reload(self) -> str:
        self._call("reload")
        return "reloaded"

    def tick(self) -> str | None:
        self._call("tick")
        return self.tick_status

    def stop(self) -> None:
        self._call("stop")


class NotifyListener:
    """A real AF_UNIX datagram socket where systemd would listen (NOTIFY_SOCKET)."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.setblocking(False)

    def messages(self) -> list[str]:
        found = []
        while True:
            try:
                found.append(self._sock.recv(65536).decode())
            except BlockingIOError:
                return found

    def close(self) -> None:
        self._sock.close()

"""What the daemon's loop drives and reads: the handler (the daemon's decisions) and
the event sources (udev, rtnetlink, signals), as Protocols so tests hand in fakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from qtagent.daemon.events import Batch, Event


class DaemonHandler(Protocol):
    """The daemon's logic. Each method returning ``str`` returns the one-line status
    systemd shows (sd_notify STATUS)."""

    def start(self) -> str:
        """Recovery and the first full reconcile. An exception here is fatal."""
        ...

    def on_events(self, batch: Batch) -> str:
        """A debounced batch of udev and link events (and whether to resync)."""
        ...

    def reload(self) -> str:
        """SIGHUP: read the config again."""
        ...

    def tick(self) -> str | None:
        """The periodic full check, ``tick_s`` after the last one (or the start, or a
        reload), whatever events came; None: status unchanged."""
        ...

    def stop(self) -> None:
        """SIGTERM or SIGINT: the loop ends after this."""
        ...


class EventSource(Protocol):
    """A non-blocking source: select on ``fileno()``, then ``drain()`` what is queued."""

    def fileno(self) -> int: ...

    def drain(self) -> Sequence[Event]: ...


class SignalSource(Protocol):
    """Signals delivered through a file descriptor (``signal.set_wakeup_fd``)."""

    def fileno(self) -> int: ...

    def drain(self) -> Sequence[int]: ...

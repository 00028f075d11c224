"""SIGTERM, SIGINT and SIGHUP as bytes on a pipe the loop selects on.

``signal.set_wakeup_fd`` writes each signal's number to the pipe; the Python-level
handlers installed here do nothing else, so a signal never interrupts the handler's
work half way: the loop sees it once the current step is done. Only the main
thread may do this (a rule of the signal module).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Final

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS: Final = (signal.SIGHUP,)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The wakeup fd carries the signal; nothing to do in the handler itself."""


class SignalWakeup:
    """While entered, ``signals`` arrive on :meth:`fileno`; leaving restores the
    previous handlers and wakeup fd."""

    def __init__(self, signals: Iterable[int] = (*STOP_SIGNALS, *RELOAD_SIGNALS)) -> None:
        self.signals = tuple(signals)
        self._read = self._write = -1
        self._previous: dict[int, _Handler] = {}
        self._previous_fd = -1

    def __enter__(self) -> SignalWakeup:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, _ignore)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)

    def fileno(self) -> int:
        return self._read

    def drain(self) -> list[int]:
        """The signals that came since the last drain, in order."""
        got = bytearray()
        while True:
            try:
                chunk = os.read(self._read, 512)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        return list(got)

"""A clock that moves only when someone sleeps: bounded waits run instantly."""

from __future__ import annotations

from collections.abc import Callable


class FakeClock:
    """``clock()`` reads the time (seconds); ``clock.sleep(s)`` advances it by ``s``.

    ``at(t, action)`` runs ``action`` once the clock has reached ``t`` seconds from
    now (during a sleep): something that happens while a wait is under way.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept = 0.0
        self._pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        due = [item for item in self._pending if item[0] <= self.now]
        self._pending = [item for item in self._pending if item[0] > self.now]
        for _, action in due:
            action()

    def at(self, seconds_from_now: float, action: Callable[[], None]) -> None:
        self._pending.append((self.now + seconds_from_now, action))

"""Collect a burst of events and release it as one batch. Pure: every call takes the
time (seconds, monotonic) as a parameter.

A batch is released once no event came for ``quiet_s``, or ``max_delay_s`` after
its first event, whichever comes first: a VF count change that makes hundreds of
uevents is looked at once, and a steady stream still gets looked at within
``max_delay_s``. More than ``max_events`` in one batch are not kept: the batch says
"resync" instead, and the handler enumerates everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from qtagent.daemon.events import Batch, Event

QUIET_S = 0.1
MAX_DELAY_S = 0.5
MAX_EVENTS = 4096


class Debouncer:
    """``add(events, now)``, then ``release(now)`` when ``next_deadline()`` passed."""

    def __init__(
        self, *, quiet_s: float = QUIET_S, max_delay_s: float = MAX_DELAY_S,
        max_events: int = MAX_EVENTS,
    ) -> None:  # fmt: skip
        if not 0 < quiet_s <= max_delay_s:
            raise ValueError(f"need 0 < quiet_s ({quiet_s}) <= max_delay_s ({max_delay_s})")
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.max_events = max_events
        self._events: list[Event] = []
        self._overflowed = False
        self._first: float | None = None
        self._last = 0.0

    @property
    def pending(self) -> int:
        """How many events wait (dropped ones of an overflowed batch not counted)."""
        return len(self._events)

    def add(self, events: Iterable[Event], now: float) -> None:
        """Collect ``events`` that arrived at ``now``; nothing happens for none."""
        added = False
        for event in events:
            added = True
            if len(self._events) < self.max_events:
                self._events.append(event)
            else:
                self._overflowed = True
        if added:
            if self._first is None:
                self._first = now
            self._last = now

    def next_deadline(self) -> float | None:
        """When the pending batch is due; None when nothing is pending."""
        if self._first is None:
            return None
        return min(self._last + self.quiet_s, self._first + self.max_delay_s)

    def release(self, now: float) -> Batch | None:
        """The pending batch if it is due at ``now``, else None (and it stays)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        batch = Batch.of(self._events, resync=self._overflowed)
        if self._overflowed:
            reason = f"more than {self.max_events} events in one burst"
            batch = Batch(batch.udev, batch.links, True, (*batch.reasons, reason))
        self._events = []
        self._overflowed = False
        self._first = None
        return batch

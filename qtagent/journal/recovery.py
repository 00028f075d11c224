"""Finish the changes whose process died: forward or backward, as each entry says.

Called with the host lock held (:mod:`qtagent.journal.lock`), so every journal
entry found belongs to a process that is gone. An entry a live failure left
for a retry (a release whose guest did not let go, a VF count the kernel
refused) is retried with exponential backoff, so that one stuck change does not
hold up every command; an entry left by a crash is due at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from qtagent.errors import QtagentError
from qtagent.journal.runner import Plan, Runner
from qtagent.store.journal import ChangeKind, Direction, JournalEntry

_log = logging.getLogger(__name__)

BACKOFF_FIRST: Final = timedelta(seconds=30)
BACKOFF_MAX: Final = timedelta(hours=1)

Builder = Callable[[JournalEntry], Plan]


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery did with one entry: ``completed``, ``undone``, ``failed``
    (``error`` says why; it is retried later) or ``waiting`` (not due yet)."""

    entry: JournalEntry
    outcome: str
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.entry.id,
            "kind": str(self.entry.kind),
            "subject": self.entry.subject,
            "outcome": self.outcome,
            "error": self.error,
        }


def retry_at(entry: JournalEntry) -> datetime:
    """When ``entry`` is next due: at once after a crash (no attempt failed yet),
    then 30 s, 1 min, 2 min, ... up to an hour after the last failed attempt."""
    if entry.attempts == 0 and entry.last_error is None:
        return entry.updated_at
    delay: timedelta = BACKOFF_FIRST * (2 ** min(max(entry.attempts - 1, 0), 16))
    last: datetime = entry.updated_at
    return last + min(delay, BACKOFF_MAX)


def is_due(entry: JournalEntry, now: datetime) -> bool:
    """Whether ``entry`` is due at ``now``. One stamped after ``now`` was written
    before the clock was set back (NTP after a boot with a wrong RTC, an operator):
    it is due at once, or a change a crash left would wait as long as the jump."""
    return retry_at(entry) <= now or entry.updated_at > now


def recover(
    runner: Runner,
    builders: Mapping[ChangeKind, Builder],
    now: datetime,
    *,
    everything: bool = False,
) -> tuple[Recovered, ...]:
    """Finish every due entry (``everything``: every entry, due or not), oldest first."""
    results = []
    for entry in runner.journal.open_entries():
        if not everything and not is_due(entry, now):
            results.append(Recovered(entry, "waiting"))
            continue
        results.append(_recover_one(runner, builders[entry.kind], entry))
    return tuple(results)


def _recover_one(runner: Runner, build: Builder, entry: JournalEntry) -> Recovered:
    _log.warning(
        "recovering %s of %s (journal entry %d, left by pid %d, %s; steps done: %s)",
        entry.kind, entry.subject, entry.id, entry.pid, entry.direction,
        ", ".join(entry.done) or "none",
    )  # fmt: skip
    built = False
    try:
        plan = build(entry)
        built = True
        if entry.direction is Direction.FORWARD:
            runner.forward(entry, plan)
            return Recovered(entry, "completed")
        runner.backward(entry, plan)
        return Recovered(entry, "undone")
    except QtagentError as err:
        if not built:  # an intent its plan cannot be rebuilt from
            runner.journal.attempt_failed(entry, f"rebuild: {err.message}")
        elif entry.direction is Direction.BACKWARD:  # forward() counted its own failure
            runner.journal.attempt_failed(entry, f"undo: {err.message}")
        _log.warning("recovery of %s of %s failed: %s", entry.kind, entry.subject, err.message)
        return Recovered(entry, "failed", err.message)

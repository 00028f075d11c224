"""The write-ahead journal of multi-step changes, in the allocation database.

A multi-step change (a VF count change, a driver binding, an assignment, a
release) writes its journal entry before its first effect on the host, in the
same transaction as its first database effect (an assignment's reservation,
say), records each step once it is done, and deletes the entry in the
transaction that records its outcome. An entry left behind is a change whose
process died: :mod:`qtagent.journal.recovery` completes it or rolls it back.

Equivalent to::

    sqlite3 /var/lib/qtagent/qtagent.db 'SELECT * FROM journal'
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from qtagent.errors import InvalidInput, NotFound
from qtagent.store.errors import StoreError
from qtagent.store.rows import storable, utc_time
from qtagent.store.sqlite import sql_errors
from qtagent.store.store import Store

MAX_INTENT_BYTES: Final = 16 * 1024  # an intent names a VF, a VM and a few settings
_SELECT: Final = """
    SELECT id, kind, subject, intent, done, direction, attempts, last_error, pid,
           created_at, updated_at
    FROM journal
"""

JsonValue = str | int | float | bool | None | list[Any] | dict[str, Any]


class ChangeKind(enum.StrEnum):
    """The multi-step changes qtagent journals."""

    VF_COUNT = "vf_count"
    BIND = "bind"
    ATTACH = "attach"
    RELEASE = "release"


class Direction(enum.StrEnum):
    """What recovery does with an entry its process left behind: ``forward`` runs
    the steps not yet done; ``backward`` undoes the steps done, newest first."""

    FORWARD = "forward"
    BACKWARD = "backward"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One change under way. ``done``: the names of the steps completed, in order.
    ``attempts``: how many recoveries tried it; ``last_error`` what stopped the last."""

    id: int
    kind: ChangeKind
    subject: str
    intent: Mapping[str, JsonValue]
    done: tuple[str, ...]
    direction: Direction
    attempts: int
    last_error: str | None
    pid: int
    created_at: datetime
    updated_at: datetime


class Journal:
    """The journal table of ``store``'s database. Every method is one transaction,
    or part of the caller's (:meth:`Store.transaction`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def begin(
        self,
        kind: ChangeKind,
        subject: str,
        intent: Mapping[str, JsonValue],
        direction: Direction,
    ) -> JournalEntry:
        """Record a change before its first effect on the host."""
        text = _intent_text(intent)
        if not 0 < len(subject) <= 200:
            raise InvalidInput(f"journal subject {subject!r} must be 1 to 200 characters")
        now = self._store.now_text()
        with self._store.transaction(), sql_errors(f"journal {kind} of {subject}"):
            cursor = self._store.connection.execute(
                "INSERT INTO journal (kind, subject, intent, direction, pid, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind.value, subject, text, direction.value, os.getpid(), now, now),
            )
            entry_id = cursor.lastrowid
        assert entry_id is not None
        return self.entry(entry_id)

    def step_done(self, entry: JournalEntry, step: str) -> JournalEntry:
        """Record that ``step`` of ``entry`` is done (idempotent)."""
        done = entry.done if step in entry.done else (*entry.done, step)
        self._update(entry.id, "done = ?", json.dumps(list(done)))
        return self.entry(entry.id)

    def turn_back(self, entry: JournalEntry, error: str) -> JournalEntry:
        """Make a forward change a backward one: it failed and its steps are undone."""
        self._update(
            entry.id, "direction = ?, last_error = ?", Direction.BACKWARD.value, storable(error)
        )
        return self.entry(entry.id)

    def attempt_failed(self, entry: JournalEntry, error: str) -> JournalEntry:
        """Count a recovery attempt that did not finish ``entry``, and why."""
        self._update(entry.id, "attempts = attempts + 1, last_error = ?", storable(error))
        return self.entry(entry.id)

    def finish(self, entry: JournalEntry) -> None:
        """Delete ``entry``: the change is complete, or wholly undone."""
        with self._store.transaction(), sql_errors(f"close journal entry {entry.id}"):
            cursor = self._store.connection.execute("DELETE FROM journal WHERE id = ?", (entry.id,))
            if cursor.rowcount != 1:
                raise NotFound(f"journal entry {entry.id} is gone: another process closed it")

    def entry(self, entry_id: int) -> JournalEntry:
        with sql_errors(f"read journal entry {entry_id}"):
            row = self._store.connection.execute(_SELECT + " WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise NotFound(f"journal entry {entry_id} does not exist")
        return _entry(row)

    def open_entries(self) -> tuple[JournalEntry, ...]:
        """Every change under way or left behind, oldest first."""
        with sql_errors("read the journal"):
            found = self._store.connection.execute(_SELECT + " ORDER BY id").fetchall()
        return tuple(_entry(row) for row in found)

    def _update(self, entry_id: int, assignments: str, *values: object) -> None:
        now = self._store.now_text()
        with self._store.transaction(), sql_errors(f"update journal entry {entry_id}"):
            cursor = self._store.connection.execute(
                f"UPDATE journal SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608 (constant columns)
                (*values, now, entry_id),
            )
            if cursor.rowcount != 1:
                raise NotFound(f"journal entry {entry_id} is gone: another process closed it")


def _intent_text(intent: Mapping[str, JsonValue]) -> str:
    try:
        text = json.dumps(dict(intent), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"a journal intent must be plain JSON: {e}") from e
    if len(text.encode()) > MAX_INTENT_BYTES:
        raise InvalidInput(f"a journal intent is limited to {MAX_INTENT_BYTES} bytes")
    return text


def _json_of(text: str, kind: type, what: str) -> Any:
    value = json.loads(text)
    if not isinstance(value, kind):
        raise TypeError(what)
    return value


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    entry_id, kind, subject, intent, done, direction, attempts, error, pid, created, updated = row
    try:
        for what, text in (("intent", intent), ("list of steps done", done)):
            if isinstance(text, str) and len(text.encode(errors="replace")) > MAX_INTENT_BYTES:
                raise ValueError(f"its {what} is over {MAX_INTENT_BYTES} bytes")  # noqa: TRY301
        parsed_intent = _json_of(intent, dict, "the intent is not a JSON object")
        parsed_done = _json_of(done, list, "the steps done are not a list")
        if not all(isinstance(s, str) for s in parsed_done):
            raise TypeError("the steps done are not a list of names")  # noqa: TRY301
        return JournalEntry(
            id=entry_id,
            kind=ChangeKind(kind),
            subject=subject,
            intent=parsed_intent,
            done=tuple(parsed_done),
            direction=Direction(direction),
            attempts=attempts,
            last_error=error,
            pid=pid,
            created_at=utc_time(created),
            updated_at=utc_time(updated),
        )
    except (ValueError, TypeError) as e:
        raise StoreError(
            f"the allocation database has a corrupt journal entry {entry_id!r}: {e}",
            hint="repair or delete the row with sqlite3 after checking the VF it names",
        ) from e

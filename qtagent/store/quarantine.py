"""Quarantined VFs and the agent's event record, in the allocation database.

A VF is quarantined when its release could not prove it clean: its scrub or
read-back failed, its VFIO group is still held by a process, or the guest never
let go of it. A quarantined VF is never handed out; `qtagent vf list` and
`qtagent status` show it with the reason, and only a release that verifies it
(or an operator) clears it.

The event record is what `qtagent status` shows as the last events: the
outcomes of changes and recoveries, drift found. It keeps the newest
:data:`EVENTS_KEPT` rows. It is not the audit log.

Equivalent to::

    sqlite3 /var/lib/qtagent/qtagent.db 'SELECT * FROM quarantine; SELECT * FROM events'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from qtagent.model.types import VfId
from qtagent.store.records import check_vf_id
from qtagent.store.rows import row_errors, storable, utc_time
from qtagent.store.sqlite import sql_errors
from qtagent.store.store import Store

EVENTS_KEPT: Final = 500
DETAIL_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class Quarantined:
    vf: VfId
    reason: str
    since: datetime


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str
    subject: str
    detail: str


class QuarantineTable:
    """Which VFs may not be handed out, and why."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, vf: VfId, reason: str) -> None:
        """Quarantine ``vf`` (a second call keeps the first time and takes the new reason)."""
        check_vf_id(vf)
        with self._store.transaction(), sql_errors(f"quarantine {vf}"):
            self._store.connection.execute(
                "INSERT INTO quarantine (pf, vf_index, reason, since) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (pf, vf_index) DO UPDATE SET reason = excluded.reason",
                (vf.pf, vf.index, _clip(reason) or "unknown", self._store.now_text()),
            )

    def clear(self, vf: VfId) -> bool:
        """Take ``vf`` out of quarantine; False if it was not in it."""
        with self._store.transaction(), sql_errors(f"clear the quarantine of {vf}"):
            cursor = self._store.connection.execute(
                "DELETE FROM quarantine WHERE pf = ? AND vf_index = ?", (vf.pf, vf.index)
            )
        return cursor.rowcount == 1

    def get(self, vf: VfId) -> Quarantined | None:
        with sql_errors(f"read the quarantine of {vf}"):
            row = self._store.connection.execute(
                "SELECT pf, vf_index, reason, since FROM quarantine WHERE pf = ? AND vf_index = ?",
                (vf.pf, vf.index),
            ).fetchone()
        return None if row is None else _quarantined(row)

    def all(self, pf: str | None = None) -> tuple[Quarantined, ...]:
        with sql_errors("list quarantined VFs"):
            found = self._store.connection.execute(
                "SELECT pf, vf_index, reason, since FROM quarantine "
                "WHERE ?1 IS NULL OR pf = ?1 ORDER BY pf, vf_index",
                (pf,),
            ).fetchall()
        return tuple(_quarantined(row) for row in found)


class OperatorVfio:
    """The VFs the operator bound to vfio-pci with `qtagent vf bind`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, vf: VfId) -> None:
        check_vf_id(vf)
        with self._store.transaction(), sql_errors(f"record {vf} as the operator's"):
            self._store.connection.execute(
                "INSERT OR IGNORE INTO operator_vfio (pf, vf_index, since) VALUES (?, ?, ?)",
                (vf.pf, vf.index, self._store.now_text()),
            )

    def remove(self, vf: VfId) -> None:
        with self._store.transaction(), sql_errors(f"forget {vf} as the operator's"):
            self._store.connection.execute(
                "DELETE FROM operator_vfio WHERE pf = ? AND vf_index = ?", (vf.pf, vf.index)
            )

    def all(self) -> tuple[VfId, ...]:
        with sql_errors("list the operator's vfio-pci VFs"):
            rows = self._store.connection.execute(
                "SELECT pf, vf_index FROM operator_vfio ORDER BY pf, vf_index"
            ).fetchall()
        return tuple(VfId(pf, index) for pf, index in rows)


def set_aside(store: Store) -> tuple[VfId, ...]:
    """The VFs no one may be handed, nor drift be repaired on: quarantined ones, and
    the ones the operator bound to vfio-pci."""
    return tuple(q.vf for q in QuarantineTable(store).all()) + OperatorVfio(store).all()


class EventLog:
    """The agent's recent events, newest last."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, kind: str, subject: str, detail: str) -> None:
        with self._store.transaction(), sql_errors("record an event"):
            conn = self._store.connection
            conn.execute(
                "INSERT INTO events (at, kind, subject, detail) VALUES (?, ?, ?, ?)",
                (self._store.now_text(), kind[:40] or "event", _clip(subject), _clip(detail)),
            )
            conn.execute(
                "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", (EVENTS_KEPT,)
            )

    def last(self, count: int = 20) -> tuple[Event, ...]:
        with sql_errors("read the events"):
            found = self._store.connection.execute(
                "SELECT at, kind, subject, detail FROM events ORDER BY id DESC LIMIT ?",
                (max(count, 0),),
            ).fetchall()
        return tuple(_event(row) for row in reversed(found))


def _clip(text: str) -> str:
    text = storable(text)
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def _quarantined(row: tuple[str, int, str, str]) -> Quarantined:
    pf, index, reason, since = row
    with row_errors("quarantine", pf, index):
        return Quarantined(VfId(pf, index), reason, utc_time(since))


def _event(row: tuple[str, str, str, str]) -> Event:
    at, kind, subject, detail = row
    with row_errors("events", subject, None):
        return Event(utc_time(at), kind, subject, detail)

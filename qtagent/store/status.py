"""What the daemon sees, kept for `qtagent status`: the drift now, and its heartbeat.

Equivalent to::

    sqlite3 /var/lib/qtagent/qtagent.db 'SELECT * FROM drift; SELECT * FROM daemon'
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from qtagent.model.drift import Drift
from qtagent.store.rows import row_errors, storable, utc_time
from qtagent.store.sqlite import sql_errors
from qtagent.store.store import Store


class DriftTable:
    """The drift the daemon's last look left: reported only, or not repaired."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def replace(self, drift: Iterable[Drift]) -> None:
        now = self._store.now_text()
        with self._store.transaction(), sql_errors("record the drift"):
            conn = self._store.connection
            since = dict(conn.execute("SELECT subject || '\n' || aspect, since FROM drift"))
            conn.execute("DELETE FROM drift")
            conn.executemany(
                "INSERT OR REPLACE INTO drift (subject, aspect, want, have, repair, why, since) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (d.subject, d.aspect, d.want, d.have, int(d.repair), d.why,
                     since.get(f"{d.subject}\n{d.aspect}", now))
                    for d in drift
                ],
            )  # fmt: skip

    def all(self) -> tuple[Drift, ...]:
        with sql_errors("read the drift"):
            rows = self._store.connection.execute(
                "SELECT subject, aspect, want, have, repair, why FROM drift "
                "ORDER BY subject, aspect"
            ).fetchall()
        return tuple(Drift(s, a, w, h, bool(r), y) for s, a, w, h, r, y in rows)


@dataclass(frozen=True, slots=True)
class DaemonRecord:
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    status: str


class DaemonTable:
    """The running daemon's pid, start time, last heartbeat and status line."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def started(self, status: str) -> None:
        now = self._store.now_text()
        with self._store.transaction(), sql_errors("record the daemon's start"):
            self._store.connection.execute(
                "INSERT OR REPLACE INTO daemon (id, pid, started_at, heartbeat_at, status) "
                "VALUES (1, ?, ?, ?, ?)",
                (os.getpid(), now, now, storable(status)[:500]),
            )

    def heartbeat(self, status: str) -> None:
        with self._store.transaction(), sql_errors("record the daemon's heartbeat"):
            self._store.connection.execute(
                "UPDATE daemon SET heartbeat_at = ?, status = ? WHERE id = 1 AND pid = ?",
                (self._store.now_text(), storable(status)[:500], os.getpid()),
            )

    def stopped(self) -> None:
        with self._store.transaction(), sql_errors("record the daemon's stop"):
            self._store.connection.execute(
                "DELETE FROM daemon WHERE id = 1 AND pid = ?", (os.getpid(),)
            )

    def get(self) -> DaemonRecord | None:
        with sql_errors("read the daemon's record"):
            row = self._store.connection.execute(
                "SELECT pid, started_at, heartbeat_at, status FROM daemon WHERE id = 1"
            ).fetchone()
        if row is None:
            return None
        pid, started, beat, status = row
        with row_errors("daemon", pid, None):
            return DaemonRecord(pid, utc_time(started), utc_time(beat), status)

"""Which VF knobs each PF driver has, as learned from the driver's own answers.

A driver that answers a knob with EOPNOTSUPP (or ENOTSUP, EPROTONOSUPPORT) lacks
it; one whose set was confirmed by read-back has it. Keyed by the PF's driver
name (``igb``, ``netdevsim``): the same driver answers the same way on every PF.

Equivalent to::

    sqlite3 /var/lib/qtagent/qtagent.db 'SELECT * FROM capabilities'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qtagent.netlink.api import Knob
from qtagent.store.sqlite import sql_errors
from qtagent.store.store import Store


@dataclass(frozen=True, slots=True)
class Capability:
    driver: str
    knob: Knob
    supported: bool
    detail: str
    learned_at: str


class CapabilityTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def learn(self, driver: str, knob: Knob, *, supported: bool, detail: str) -> None:
        """Record what ``driver`` answered for ``knob`` (the newest answer wins)."""
        with self._store.transaction(), sql_errors(f"record what {driver} says of {knob}"):
            self._store.connection.execute(
                "INSERT INTO capabilities (driver, knob, supported, detail, learned_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (driver, knob) DO UPDATE SET "
                "supported = excluded.supported, detail = excluded.detail, "
                "learned_at = excluded.learned_at",
                (driver[:64], knob.value, int(supported), detail[:200], self._store.now_text()),
            )

    def of(self, driver: str) -> tuple[Capability, ...]:
        with sql_errors(f"read what {driver} supports"):
            rows = self._store.connection.execute(
                "SELECT driver, knob, supported, detail, learned_at FROM capabilities "
                "WHERE driver = ? ORDER BY knob",
                (driver,),
            ).fetchall()
        known = {k.value: k for k in Knob}
        return tuple(
            Capability(d, known[k], bool(s), detail, at)
            for d, k, s, detail, at in rows
            if k in known
        )

    def unsupported(self, driver: str) -> Mapping[Knob, str]:
        """The knobs ``driver`` lacks -> how that is known, for a fail-fast request."""
        return {
            c.knob: f"{driver} answered {c.detail} for {c.knob} (learned {c.learned_at[:19]})"
            for c in self.of(driver)
            if not c.supported
        }

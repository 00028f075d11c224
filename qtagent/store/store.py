"""The allocation database's typed API: which VF belongs to which VM, what the
VF looked like before, and what the operator asked for per PF.

Each method is one transaction; wrap several in :meth:`Store.transaction` to
make them one (a check and the write it justifies, say). No VF is ever handed
out twice: the schema's primary key on (pf, vf_index) refuses it even across
processes, and :meth:`Store.reserve` turns that refusal into a
:class:`~qtagent.errors.Conflict` naming the VM that holds the VF.

A :class:`Store` belongs to one thread; open one per thread or process.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from types import TracebackType

from qtagent.errors import Conflict, InvalidInput, NotFound, QtagentError
from qtagent.model.desired import DriftPolicy, VfDefaults
from qtagent.model.host import VfSettings
from qtagent.model.types import MacAddress, VfId, check_vlan
from qtagent.store import rows
from qtagent.store.errors import StoreError
from qtagent.store.records import (
    TRANSITIONS,
    Allocation,
    AllocationState,
    OriginalVf,
    PfDesired,
    VmRef,
    check_defaults,
    check_num_vfs,
    check_pf_name,
    check_settings,
    check_vf_id,
)
from qtagent.store.rows import as_bit, as_text
from qtagent.store.sqlite import (
    DEFAULT_BUSY_TIMEOUT_S,
    DEFAULT_PATH,
    Clock,
    Database,
    sql_errors,
    utc_now,
)

_log = logging.getLogger(__name__)


class Store:
    """The durable allocation database at ``path`` (created 0600 if missing).

    ``clock`` gives the time written into records (timezone-aware). ``readonly``
    opens an existing database for reading only (SQLite ``mode=ro``): nothing is
    created, chmod-ed or migrated, every write raises PermissionDenied, and a
    missing file is NotFound. For commands that only read, where qtagent's user
    may not write the file (a non-root reader, a read-only file system).
    """

    def __init__(
        self,
        path: Path = DEFAULT_PATH,
        *,
        clock: Clock = utc_now,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        readonly: bool = False,
    ) -> None:
        self._db = Database(path, busy_timeout_s=busy_timeout_s, readonly=readonly)
        self._clock = clock

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def readonly(self) -> bool:
        return self._db.readonly

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all (the write lock is held)."""
        with self._db.transaction():
            yield

    # ------------------------------------------------------------ allocations

    def reserve(
        self, vf: VfId, vm: VmRef, *, mac: MacAddress | None = None, vlan: int = 0, qos: int = 0
    ) -> Allocation:
        """Promise ``vf`` to ``vm`` (state ``reserved``), before any effect on the host.

        Raises Conflict naming the holder if the VF is already allocated.
        """
        check_vf_id(vf)
        check_vlan(vlan, qos)
        if mac is not None and (mac.is_zero or mac.is_multicast):
            raise InvalidInput(f"{mac} cannot be a VM's MAC", hint="give a unicast, non-zero MAC")
        now = self._now()
        row = (
            vf.pf, vf.index, vm.name, as_text(vm.uuid), as_text(mac), vlan, qos,
            AllocationState.RESERVED.value, now, now, uuid.uuid4().hex,
        )  # fmt: skip
        with self.transaction():
            try:
                with sql_errors(f"reserve {vf}"):
                    self._conn.execute(rows.INSERT_ALLOCATION, row)
            except sqlite3.IntegrityError as e:
                holder = self.allocation(vf)
                if holder is None:  # a CHECK failed; the Python checks should have caught it
                    raise StoreError(f"reserve {vf}: refused by the schema: {e}") from e
                raise Conflict(
                    f"VF {vf} is already allocated to VM {holder.vm} ({holder.state})",
                    hint=f"release it from VM {holder.vm.name!r} first, or choose another VF",
                ) from e
            allocation = self.allocation(vf)
        assert allocation is not None
        _log.info("reserved %s for VM %s", vf, vm)
        return allocation

    def allocation(self, vf: VfId) -> Allocation | None:
        with sql_errors(f"read the allocation of {vf}"):
            row = self._conn.execute(rows.ALLOCATION_BY_VF, (vf.pf, vf.index)).fetchone()
        return None if row is None else rows.allocation_from_row(row)

    def allocations(
        self,
        *,
        pf: str | None = None,
        vm_name: str | None = None,
        state: AllocationState | None = None,
    ) -> tuple[Allocation, ...]:
        """Allocations in (pf, vf index) order, filtered by whatever is given."""
        args = (pf, vm_name, None if state is None else state.value)
        with sql_errors("list allocations"):
            found = self._conn.execute(rows.ALLOCATIONS_FILTERED, args).fetchall()
        return tuple(rows.allocation_from_row(row) for row in found)

    def set_state(self, vf: VfId, *, expected: AllocationState, new: AllocationState) -> Allocation:
        """Move ``vf`` from ``expected`` to ``new`` (compare-and-set).

        Raises NotFound if it is not allocated, Conflict if it is in another state
        (someone else moved it) or the move is not one of ``TRANSITIONS``.
        """
        if (expected, new) not in TRANSITIONS:
            raise Conflict(f"an allocation cannot go from {expected} to {new}")
        with self.transaction():
            with sql_errors(f"set {vf} to {new}"):
                cursor = self._conn.execute(
                    "UPDATE allocations SET state = ?, updated_at = ? "
                    "WHERE pf = ? AND vf_index = ? AND state = ?",
                    (new.value, self._now(), vf.pf, vf.index, expected.value),
                )
            current = self.allocation(vf)
            if cursor.rowcount != 1:
                raise _not_in_state(vf, current, expected)
        assert current is not None
        _log.info("%s for VM %s: %s -> %s", vf, current.vm, expected, new)
        return current

    def remove(self, vf: VfId, *, expected: AllocationState) -> None:
        """Forget the allocation of ``vf`` (and its originals): the VF is free again.

        Only from ``reserved`` (nothing was attached) or ``releasing`` (the
        release is done); an attached VF must be released first.
        """
        if expected is AllocationState.ATTACHED:
            raise Conflict(f"VF {vf} is attached; release it before removing its allocation")
        with self.transaction():
            with sql_errors(f"remove the allocation of {vf}"):
                cursor = self._conn.execute(
                    "DELETE FROM allocations WHERE pf = ? AND vf_index = ? AND state = ?",
                    (vf.pf, vf.index, expected.value),
                )
            if cursor.rowcount != 1:
                raise _not_in_state(vf, self.allocation(vf), expected)
        _log.info("removed the allocation of %s", vf)

    # -------------------------------------------------------- original settings

    def record_originals(self, vf: VfId, settings: VfSettings, driver: str | None) -> OriginalVf:
        """Keep the VF's settings and driver from before qtagent touched it.

        The first capture per allocation wins and is returned on later calls: a
        retry after a crash must not replace the true originals with values
        qtagent already set. The VF must be allocated.
        """
        record = OriginalVf(vf, settings, driver, self._clock())
        check_settings(settings)
        s = settings
        row = (
            vf.pf, vf.index, as_text(s.mac), s.vlan, s.qos, as_bit(s.spoofchk), as_bit(s.trust),
            s.max_tx_rate, s.min_tx_rate, as_text(s.link_state), driver, self._now(),
        )  # fmt: skip
        with self.transaction():
            existing = self.originals(vf)
            if existing is not None:
                return existing
            if self.allocation(vf) is None:
                raise NotFound(f"VF {vf} is not allocated", hint="reserve it before capturing")
            with sql_errors(f"record the original settings of {vf}"):
                self._conn.execute(rows.INSERT_ORIGINAL, row)
            stored = self.originals(vf)
        _log.info("recorded original settings of %s: %s, driver %s", vf, settings, driver)
        return stored or record

    def originals(self, vf: VfId) -> OriginalVf | None:
        with sql_errors(f"read the original settings of {vf}"):
            row = self._conn.execute(rows.ORIGINAL_BY_VF, (vf.pf, vf.index)).fetchone()
        return None if row is None else rows.original_from_row(row)

    # ------------------------------------------------------------ desired state

    def set_desired(
        self,
        pf: str,
        num_vfs: int,
        defaults: VfDefaults | None = None,
        drift: DriftPolicy = DriftPolicy.REPAIR,
    ) -> PfDesired:
        """Record the operator's VF count and VF defaults for ``pf``.

        A changed count clears ``applied_at``; the same count keeps it. Whether a
        change is allowed while VFs are allocated is the planner's decision: do
        the check and this call in one :meth:`transaction` (FIELD-CASES C2).
        """
        check_pf_name(pf)
        check_num_vfs(num_vfs)
        d = defaults if defaults is not None else VfDefaults()
        check_defaults(d)
        now = self._now()
        with self.transaction():
            before = self.desired(pf)
            applied = before.applied_at if before and before.num_vfs == num_vfs else None
            with sql_errors(f"record the desired state of {pf}"):
                self._conn.execute(
                    rows.UPSERT_DESIRED,
                    (pf, num_vfs, d.vlan, d.qos, as_bit(d.spoofchk), as_bit(d.trust),
                     as_text(d.link_state), d.max_tx_rate, d.min_tx_rate, now,
                     applied.isoformat() if applied else None, DriftPolicy(drift).value),
                )  # fmt: skip
            result = self.desired(pf)
        assert result is not None
        _log.info("desired for %s: %d VFs, defaults %s", pf, num_vfs, d)
        return result

    def desired(self, pf: str) -> PfDesired | None:
        with sql_errors(f"read the desired state of {pf}"):
            row = self._conn.execute(rows.DESIRED_BY_PF, (pf,)).fetchone()
        return None if row is None else rows.desired_from_row(row)

    def all_desired(self) -> tuple[PfDesired, ...]:
        with sql_errors("list the desired state"):
            found = self._conn.execute(rows.ALL_DESIRED).fetchall()
        return tuple(rows.desired_from_row(row) for row in found)

    def mark_applied(self, pf: str, num_vfs: int) -> PfDesired:
        """Record that the host now has the desired ``num_vfs`` on ``pf``.

        Refused (Conflict) if the desired count changed meanwhile: only what was
        really applied is recorded as applied (FIELD-CASES C1).
        """
        with self.transaction():
            with sql_errors(f"mark the desired state of {pf} applied"):
                cursor = self._conn.execute(
                    "UPDATE pf_desired SET applied_at = ? WHERE pf = ? AND num_vfs = ?",
                    (self._now(), pf, num_vfs),
                )
            current = self.desired(pf)
            if current is None:
                raise NotFound(f"no desired state recorded for PF {pf}")
            if cursor.rowcount != 1:
                raise Conflict(
                    f"PF {pf}: desired count is now {current.num_vfs}, not the {num_vfs} applied"
                )
        return current

    def forget_desired(self, pf: str) -> None:
        with self.transaction(), sql_errors(f"forget the desired state of {pf}"):
            self._conn.execute("DELETE FROM pf_desired WHERE pf = ?", (pf,))

    # ---------------------------------------------------------------- helpers

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection, for the other tables' typed APIs in this package
        (:mod:`qtagent.store.journal`, :mod:`qtagent.store.quarantine`)."""
        return self._db.conn

    def now_text(self) -> str:
        """The store clock's time as written into records (ISO 8601, UTC)."""
        return self._now()

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db.conn

    def _now(self) -> str:
        now = self._clock()
        if now.tzinfo is None:
            raise InvalidInput("the store's clock must give timezone-aware times")
        return now.astimezone(UTC).isoformat()


def _not_in_state(vf: VfId, current: Allocation | None, expected: AllocationState) -> QtagentError:
    if current is None:
        return NotFound(f"VF {vf} is not allocated")
    return Conflict(
        f"VF {vf} (VM {current.vm}) is {current.state}, not {expected}",
        hint="another request changed it meanwhile; read it again",
    )

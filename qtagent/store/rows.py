"""The allocation database's SQL statements and row <-> record conversions.

Every statement is a constant: values only ever travel as parameters. A row
that does not parse back into a checked record was written by something else
and is reported as corrupt, naming its table and key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from qtagent.errors import InvalidInput
from qtagent.model.desired import DriftPolicy, VfDefaults
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress, VfId
from qtagent.store.errors import StoreError
from qtagent.store.records import (
    Allocation,
    AllocationState,
    OriginalVf,
    PfDesired,
    VmRef,
)

SELECT_ALLOCATIONS = """
    SELECT pf, vf_index, vm_name, vm_uuid, mac, vlan, qos, state, created_at, updated_at, lease
    FROM allocations
"""
ALLOCATION_BY_VF = SELECT_ALLOCATIONS + " WHERE pf = ? AND vf_index = ?"
ALLOCATIONS_FILTERED = (
    SELECT_ALLOCATIONS
    + """
    WHERE (?1 IS NULL OR pf = ?1) AND (?2 IS NULL OR vm_name = ?2) AND (?3 IS NULL OR state = ?3)
    ORDER BY pf, vf_index
"""
)
INSERT_ALLOCATION = """
    INSERT INTO allocations
        (pf, vf_index, vm_name, vm_uuid, mac, vlan, qos, state, created_at, updated_at, lease)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
ORIGINAL_BY_VF = """
    SELECT pf, vf_index, mac, vlan, qos, spoofchk, trust, max_tx_rate, min_tx_rate, link_state,
           driver, captured_at
    FROM vf_originals WHERE pf = ? AND vf_index = ?
"""
INSERT_ORIGINAL = """
    INSERT INTO vf_originals
        (pf, vf_index, mac, vlan, qos, spoofchk, trust, max_tx_rate, min_tx_rate, link_state,
         driver, captured_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_DESIRED = """
    SELECT pf, num_vfs, vlan, qos, spoofchk, trust, link_state, max_tx_rate, min_tx_rate,
           updated_at, applied_at, drift
    FROM pf_desired
"""
DESIRED_BY_PF = SELECT_DESIRED + " WHERE pf = ?"
ALL_DESIRED = SELECT_DESIRED + " ORDER BY pf"
UPSERT_DESIRED = """
    INSERT OR REPLACE INTO pf_desired
        (pf, num_vfs, vlan, qos, spoofchk, trust, link_state, max_tx_rate, min_tx_rate, updated_at,
         applied_at, drift)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def as_text(value: object | None) -> str | None:
    return None if value is None else str(value)


def storable(text: str) -> str:
    """``text`` as SQLite can store it: a message may carry the surrogate escapes of a
    path that is not UTF-8 (``--config $'/etc/\\xff.toml'``), which the sqlite3
    module refuses to encode; they are kept as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def as_bit(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def utc_time(value: str) -> datetime:
    """A time as qtagent writes it (ISO 8601 with its offset); ValueError for others."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no timezone")
    return parsed


def allocation_from_row(row: tuple[Any, ...]) -> Allocation:
    pf, index, vm_name, vm_uuid, mac, vlan, qos, state, created, updated, lease = row
    with row_errors("allocations", pf, index):
        return Allocation(
            vf=VfId(pf, index),
            vm=VmRef(vm_name, uuid.UUID(vm_uuid) if vm_uuid is not None else None),
            mac=MacAddress.parse(mac) if mac is not None else None,
            vlan=vlan,
            qos=qos,
            state=AllocationState(state),
            created_at=utc_time(created),
            updated_at=utc_time(updated),
            lease=lease,
        )


def original_from_row(row: tuple[Any, ...]) -> OriginalVf:
    pf, index, mac, vlan, qos, spoofchk, trust, max_rate, min_rate, link, driver, at = row
    with row_errors("vf_originals", pf, index):
        settings = VfSettings(
            mac=MacAddress.parse(mac) if mac is not None else None,
            vlan=vlan,
            qos=qos,
            spoofchk=_flag(spoofchk),
            trust=_flag(trust),
            max_tx_rate=max_rate,
            min_tx_rate=min_rate,
            link_state=LinkState(link) if link is not None else None,
        )
        return OriginalVf(VfId(pf, index), settings, driver, utc_time(at))


def desired_from_row(row: tuple[Any, ...]) -> PfDesired:
    pf, num_vfs, vlan, qos, spoofchk, trust, link, max_rate, min_rate, updated, applied, drift = row
    with row_errors("pf_desired", pf, None):
        defaults = VfDefaults(
            vlan=vlan,
            qos=qos,
            spoofchk=_flag(spoofchk),
            trust=_flag(trust),
            link_state=LinkState(link) if link is not None else None,
            max_tx_rate=max_rate,
            min_tx_rate=min_rate,
        )
        return PfDesired(
            pf, num_vfs, defaults, utc_time(updated), utc_time(applied) if applied else None,
            DriftPolicy(drift),
        )  # fmt: skip


@contextmanager
def row_errors(table: str, pf: object, index: object) -> Iterator[None]:
    """A row that does not parse was written by something else: say where it is."""
    try:
        yield
    except (InvalidInput, ValueError, TypeError) as e:
        where = f"{pf!r}" + (f" VF {index!r}" if index is not None else "")
        raise StoreError(
            f"the allocation database has a corrupt {table} row for {where}: {e}",
            hint="restore the database from a backup or repair the row with sqlite3",
        ) from e

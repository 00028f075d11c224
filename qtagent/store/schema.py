"""The database schema as an ordered list of migrations (pure data).

Migration N takes a database at version N-1 to version N. Each runs in its own
transaction together with its row in ``schema_version``, so a crash leaves the
file at one version or the next, never between. Never edit a released
migration: append a new one.

Constraints live in the schema, not only in Python, so that no code path (and
no second process) can hand a VF out twice: ``UNIQUE (pf, vf_index)`` on
allocations is the guarantee, the checks in Python only make the message kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# The table that says which migrations ran; created before any migration.
VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
) STRICT
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "allocations, original VF settings, desired VF count and defaults per PF",
        (
            """
            CREATE TABLE allocations (
                pf          TEXT NOT NULL,
                vf_index    INTEGER NOT NULL CHECK (vf_index BETWEEN 0 AND 65535),
                vm_name     TEXT NOT NULL CHECK (length(vm_name) > 0),
                vm_uuid     TEXT,
                mac         TEXT,
                vlan        INTEGER NOT NULL DEFAULT 0 CHECK (vlan BETWEEN 0 AND 4094),
                qos         INTEGER NOT NULL DEFAULT 0 CHECK (qos BETWEEN 0 AND 7),
                state       TEXT NOT NULL
                            CHECK (state IN ('reserved', 'attached', 'releasing')),
                created_at  TEXT NOT NULL,
                updated_at  TEXT NOT NULL,
                PRIMARY KEY (pf, vf_index)
            ) STRICT
            """,
            "CREATE INDEX allocations_by_vm ON allocations (vm_name)",
            """
            CREATE TABLE vf_originals (
                pf          TEXT NOT NULL,
                vf_index    INTEGER NOT NULL,
                mac         TEXT,
                vlan        INTEGER NOT NULL,
                qos         INTEGER NOT NULL,
                spoofchk    INTEGER CHECK (spoofchk IN (0, 1)),
                trust       INTEGER CHECK (trust IN (0, 1)),
                max_tx_rate INTEGER,
                min_tx_rate INTEGER,
                link_state  TEXT CHECK (link_state IN ('auto', 'enable', 'disable')),
                driver      TEXT,
                captured_at TEXT NOT NULL,
                PRIMARY KEY (pf, vf_index),
                FOREIGN KEY (pf, vf_index) REFERENCES allocations (pf, vf_index)
                    ON DELETE CASCADE
            ) STRICT
            """,
            """
            CREATE TABLE pf_desired (
                pf          TEXT PRIMARY KEY,
                num_vfs     INTEGER NOT NULL CHECK (num_vfs BETWEEN 0 AND 65536),
                vlan        INTEGER CHECK (vlan BETWEEN 0 AND 4094),
                qos         INTEGER CHECK (qos BETWEEN 0 AND 7),
                spoofchk    INTEGER CHECK (spoofchk IN (0, 1)),
                trust       INTEGER CHECK (trust IN (0, 1)),
                link_state  TEXT CHECK (link_state IN ('auto', 'enable', 'disable')),
                max_tx_rate INTEGER,
                min_tx_rate INTEGER,
                updated_at  TEXT NOT NULL,
                applied_at  TEXT
            ) STRICT
            """,
        ),
    ),
)

LATEST_VERSION: Final = MIGRATIONS[-1].version

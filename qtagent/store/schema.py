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
    Migration(
        2,
        "the write-ahead journal of multi-step changes, quarantined VFs, the event record",
        (
            # One row per multi-step change under way: written (with the change's first
            # database effect) before the first effect on the host, updated after each
            # step, deleted in the transaction that records the change's outcome.
            """
            CREATE TABLE journal (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                kind        TEXT NOT NULL CHECK (kind IN
                                ('vf_count', 'bind', 'attach', 'release')),
                subject     TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
                intent      TEXT NOT NULL,  -- JSON object, checked when read back
                done        TEXT NOT NULL DEFAULT '[]',  -- JSON array of step names
                direction   TEXT NOT NULL CHECK (direction IN ('forward', 'backward')),
                attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                last_error  TEXT,
                pid         INTEGER NOT NULL,
                created_at  TEXT NOT NULL,
                updated_at  TEXT NOT NULL
            ) STRICT
            """,
            # A VF that failed its scrub or verification, or whose VFIO group a process
            # still holds: never handed out until an operator (or a later check) clears it.
            """
            CREATE TABLE quarantine (
                pf          TEXT NOT NULL,
                vf_index    INTEGER NOT NULL CHECK (vf_index BETWEEN 0 AND 65535),
                reason      TEXT NOT NULL CHECK (length(reason) > 0),
                since       TEXT NOT NULL,
                PRIMARY KEY (pf, vf_index)
            ) STRICT
            """,
            # VFs the operator bound to vfio-pci (`qtagent vf bind`): theirs, for a user
            # outside qtagent (DPDK, a VM qtagent does not manage); never handed out.
            """
            CREATE TABLE operator_vfio (
                pf          TEXT NOT NULL,
                vf_index    INTEGER NOT NULL CHECK (vf_index BETWEEN 0 AND 65535),
                since       TEXT NOT NULL,
                PRIMARY KEY (pf, vf_index)
            ) STRICT
            """,
            # What the agent did and saw, newest last, trimmed to the last few hundred:
            # `qtagent status` shows the tail. Not the audit log (that is its own record).
            """
            CREATE TABLE events (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                at          TEXT NOT NULL,
                kind        TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 40),
                subject     TEXT NOT NULL,
                detail      TEXT NOT NULL
            ) STRICT
            """,
            # Each allocation's lease: a fresh token per hand-out, so that a late or
            # repeated release of an earlier hand-out never touches a later one.
            "ALTER TABLE allocations ADD COLUMN lease TEXT",
            # What the daemon does with drift on the PF (qtagent.plan.drift).
            """
            ALTER TABLE pf_desired ADD COLUMN drift TEXT NOT NULL DEFAULT 'repair'
                CHECK (drift IN ('repair', 'report'))
            """,
            # The drift the daemon sees now (replaced after each look), for `qtagent status`.
            """
            CREATE TABLE drift (
                subject     TEXT NOT NULL,
                aspect      TEXT NOT NULL,
                want        TEXT NOT NULL,
                have        TEXT NOT NULL,
                repair      INTEGER NOT NULL CHECK (repair IN (0, 1)),
                why         TEXT NOT NULL,
                since       TEXT NOT NULL,
                PRIMARY KEY (subject, aspect)
            ) STRICT
            """,
            # Which VF knobs each PF driver has, learned from its answers (EOPNOTSUPP: it
            # lacks the knob; a confirmed set: it has it), so that requests that cannot
            # succeed fail fast and `qtagent pf list` can say what a PF offers.
            """
            CREATE TABLE capabilities (
                driver      TEXT NOT NULL CHECK (length(driver) BETWEEN 1 AND 64),
                knob        TEXT NOT NULL CHECK (length(knob) BETWEEN 1 AND 32),
                supported   INTEGER NOT NULL CHECK (supported IN (0, 1)),
                detail      TEXT NOT NULL,
                learned_at  TEXT NOT NULL,
                PRIMARY KEY (driver, knob)
            ) STRICT
            """,
            # The running daemon's heartbeat and one-line status (one row).
            """
            CREATE TABLE daemon (
                id          INTEGER PRIMARY KEY CHECK (id = 1),
                pid         INTEGER NOT NULL,
                started_at  TEXT NOT NULL,
                heartbeat_at TEXT NOT NULL,
                status      TEXT NOT NULL
            ) STRICT
            """,
        ),
    ),
)

LATEST_VERSION: Final = MIGRATIONS[-1].version

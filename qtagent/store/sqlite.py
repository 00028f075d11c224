"""The SQLite connection: settings, migrations, transactions, read-only access.

Equivalent to::

    install -m 0600 /dev/null /var/lib/qtagent/qtagent.db    # qtagent.store.dbfile
    sqlite3 /var/lib/qtagent/qtagent.db 'PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL'
    sqlite3 -readonly /var/lib/qtagent/qtagent.db            # Database(readonly=True)

WAL with ``synchronous=FULL`` makes every committed transaction durable across
a power cut, not only a process crash. Transactions start with ``BEGIN
IMMEDIATE``: the write lock is taken up front, so two processes that read and
then write cannot both pass their check (the second waits up to the busy
timeout, then sees the first one's row).

One :class:`Database` belongs to one thread (sqlite3's own rule); open one per
thread or process.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from qtagent.errors import NotFound, PermissionDenied, Timeout
from qtagent.store.dbfile import NOT_OURS_HINT, check_existing_file, prepare_file, tighten_mode
from qtagent.store.errors import PERMISSION_HINT, StoreError
from qtagent.store.schema import LATEST_VERSION, MIGRATIONS, VERSION_TABLE

_log = logging.getLogger(__name__)

DEFAULT_PATH: Final = Path("/var/lib/qtagent/qtagent.db")
DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
# SQLite's extended result codes that mean "this process may not write there"
_READ_ONLY_CODES: Final = frozenset({"SQLITE_PERM", "SQLITE_AUTH"})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def refuse_foreign_database(path: Path, busy_timeout_s: float) -> None:
    """Refuse an SQLite database some other program made (one with tables but without
    qtagent's schema_version table) before anything writes to it. Only reads."""
    with sql_errors(f"open {path}"):
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            tables = table_names(conn)
        finally:
            conn.close()
    refuse_foreign_tables(path, tables)


def table_names(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return sorted(str(row[0]) for row in rows)


def refuse_foreign_tables(path: Path, tables: list[str]) -> None:
    if tables and "schema_version" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is an SQLite database of another program (tables: {shown}); "
            "qtagent leaves it as it is",
            hint=NOT_OURS_HINT,
        )


def connect_read_only(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """``sqlite3 -readonly $path``: a connection that cannot write (URI ``mode=ro``).

    A WAL reader needs the -shm file. Where it is missing and cannot be created
    (a directory qtagent's user may not write) and no -wal file exists either, no
    connection is open and every committed transaction is in the main file: it
    is then read as it is (``immutable=1``).
    """
    uri = path.absolute().as_uri()
    with sql_errors(f"open {path} read-only"):
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=busy_timeout_s,
                               isolation_level=None)  # fmt: skip
        try:
            table_names(conn)  # the first read opens the WAL index
        except sqlite3.OperationalError as e:
            conn.close()
            wal = path.with_name(path.name + "-wal")
            if e.sqlite_errorname != "SQLITE_READONLY_DIRECTORY" or os.path.lexists(wal):
                raise
        else:
            return conn
        _log.debug("%s: no -shm file and none can be made; reading it as immutable", path)
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True,
                               timeout=busy_timeout_s, isolation_level=None)  # fmt: skip


# (device, inode) of each database file this process holds open -> how many connections
_OPEN_FILES: dict[tuple[int, int], int] = {}
_OPEN_FILES_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[int, int] | None:
    """The file's identity without opening it (None: no such file yet)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


class Database:
    """One connection to the allocation database, migrated to the latest schema.

    ``readonly``: for commands that only read. The file must exist (NotFound if
    not); nothing is created, chmod-ed or migrated, and every write is refused
    (PermissionDenied). It works where qtagent's user may read the file but not
    write it or its directory (a read-only file system, a non-root reader).
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        readonly: bool = False,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._depth = 0
        # Closing any descriptor of a file drops the process's POSIX locks on it,
        # SQLite's included ("How To Corrupt An SQLite Database File", 2.2). So the
        # file is checked with descriptors of our own only before this process's first
        # connection to it; a file already open here was checked then.
        key = _file_key(path)
        first = key is None or key not in _OPEN_FILES
        if readonly:
            self.conn = self._open_read_only(first, busy_timeout_s)
        else:
            self.conn = self._open_read_write(first, busy_timeout_s)
        self._key = _file_key(path)
        if self._key is not None:
            with _OPEN_FILES_LOCK:
                _OPEN_FILES[self._key] = _OPEN_FILES.get(self._key, 0) + 1
        try:
            if readonly:
                self._check_readable()
            else:
                self._configure()
                self._migrate()
        except BaseException:
            self.close()
            raise

    def _open_read_write(self, first: bool, busy_timeout_s: float) -> sqlite3.Connection:
        if first:
            prepare_file(self.path)
            refuse_foreign_database(self.path, busy_timeout_s)
            tighten_mode(self.path)
        with sql_errors(f"open {self.path}"):
            return sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=True
            )

    def _open_read_only(self, first: bool, busy_timeout_s: float) -> sqlite3.Connection:
        if first and not check_existing_file(self.path):
            raise NotFound(
                f"there is no allocation database at {self.path}",
                hint="nothing was allocated yet, or give --db (QTAGENT_DB) its path",
            )
        return connect_read_only(self.path, busy_timeout_s)

    def close(self) -> None:
        self.conn.close()
        if self._key is not None:
            with _OPEN_FILES_LOCK:
                left = _OPEN_FILES.pop(self._key) - 1
                if left:
                    _OPEN_FILES[self._key] = left
            self._key = None

    def _configure(self) -> None:
        with sql_errors(f"configure {self.path}"):
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA trusted_schema=OFF")

    def _check_readable(self) -> None:
        """A read-only connection: refuse another program's database, and a schema
        this qtagent cannot read as it is (it may not migrate it)."""
        with sql_errors(f"read {self.path}"):
            self.conn.execute("PRAGMA query_only=ON")
            self.conn.execute("PRAGMA trusted_schema=OFF")
            tables = table_names(self.conn)
        refuse_foreign_tables(self.path, tables)
        current = self.schema_version if tables else 0
        _refuse_newer(self.path, current)
        if current < LATEST_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}; this qtagent reads "
                f"{LATEST_VERSION} and may not migrate it read-only",
                hint="run a qtagent command that writes, as the database's owner (root), "
                "once: it migrates the database",
            )

    @property
    def schema_version(self) -> int:
        with sql_errors("read the schema version"):
            row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        with self.transaction():
            self.conn.execute(VERSION_TABLE)
            current = self.schema_version
            _refuse_newer(self.path, current)
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                _log.info("migrating %s to schema %d", self.path, migration.version)
                with sql_errors(f"migrate {self.path} to schema {migration.version}"):
                    for statement in migration.statements:
                        self.conn.execute(statement)
                    self.conn.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        (migration.version, migration.description, utc_now().isoformat()),
                    )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all; nests (savepoints).

        Refused (PermissionDenied) on a read-only connection: transactions are for writes.
        """
        if self.readonly:
            raise PermissionDenied(
                f"the allocation database {self.path} is open read-only; nothing was changed",
                hint=PERMISSION_HINT,
            )
        outer = self._depth == 0
        savepoint = f"sp{self._depth}"
        with sql_errors("begin a transaction"):
            self.conn.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            with sql_errors("roll back"):
                if outer:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO {savepoint}")
                    self.conn.execute(f"RELEASE {savepoint}")
            raise
        self._depth -= 1
        try:
            with sql_errors("commit"):
                self.conn.execute("COMMIT" if outer else f"RELEASE {savepoint}")
        except BaseException:
            if outer and self.conn.in_transaction:
                with suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise


def _refuse_newer(path: Path, version: int) -> None:
    if version > LATEST_VERSION:
        raise StoreError(
            f"{path} has schema version {version}; this qtagent knows up to {LATEST_VERSION}",
            hint="a newer qtagent wrote this database; upgrade qtagent, never downgrade",
        )


@contextmanager
def sql_errors(action: str) -> Iterator[None]:
    """Re-raise sqlite3 errors as qtagent errors (a held lock as Timeout)."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise Timeout(
                f"{action}: the allocation database stayed locked",
                hint="another qtagent process holds it; retry, or find the stuck process",
            ) from e
        if _is_permission(e):
            raise PermissionDenied(f"{action} failed: {e}", hint=PERMISSION_HINT) from e
        raise StoreError(f"{action} failed: {e}") from e
    except sqlite3.IntegrityError:
        raise  # callers turn constraint failures into Conflict with context
    except sqlite3.Error as e:
        raise StoreError(f"{action} failed: {e}") from e


def _is_permission(err: sqlite3.Error) -> bool:
    """SQLite says this process may not write (SQLITE_READONLY_*: a read-only file,
    directory or connection; SQLITE_PERM)."""
    name = getattr(err, "sqlite_errorname", "")
    return name.startswith("SQLITE_READONLY") or name in _READ_ONLY_CODES

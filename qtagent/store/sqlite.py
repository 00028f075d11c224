"""The SQLite file: safe creation, connection settings, migrations, transactions.

Equivalent to::

    install -m 0600 /dev/null /var/lib/qtagent/qtagent.db
    sqlite3 /var/lib/qtagent/qtagent.db 'PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL'

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
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from qtagent.errors import QtagentError, Timeout
from qtagent.store.schema import LATEST_VERSION, MIGRATIONS, VERSION_TABLE

_log = logging.getLogger(__name__)

DEFAULT_PATH: Final = Path("/var/lib/qtagent/qtagent.db")
DEFAULT_BUSY_TIMEOUT_S: Final = 5.0
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
SQLITE_HEADER: Final = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite file
NOT_OURS_HINT: Final = (
    "give the path of qtagent's allocation database (--db, QTAGENT_DB), "
    "or move this file away so that a new database is created there"
)

Clock = Callable[[], datetime]


class StoreError(QtagentError):
    """The allocation database cannot be used (unreadable, corrupt, too new)."""

    status = 500
    exit_code = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def prepare_file(path: Path) -> None:
    """Create the database file 0600 (its directory 0700) without following links.

    An existing file is only looked at, never changed: a path that is a symlink,
    not a regular file, or a file that is neither empty nor an SQLite database is
    refused as it is. (:func:`tighten_mode` changes modes, once the file is known
    to be the allocation database.)
    """
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    with _open_no_follow(path) as fd:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"the allocation database {path} is not a regular file")
        if info.st_size and os.pread(fd, len(SQLITE_HEADER), 0) != SQLITE_HEADER:
            raise StoreError(
                f"{path} is not an SQLite database; qtagent leaves it as it is",
                hint=NOT_OURS_HINT,
            )


def tighten_mode(path: Path) -> None:
    """Take group and other access away from the database and its -wal and -shm
    files, with a warning (SQLite gives new -wal and -shm files the main file's mode)."""
    with _open_no_follow(path) as fd:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            _log.warning("tightening %s from %o to 0600", path, mode)
            _log.debug("chmod 0600 %s", path)
            os.fchmod(fd, FILE_MODE)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.is_file() and not side.is_symlink() and side.stat().st_mode & 0o077:
            _log.debug("chmod 0600 %s", side)
            side.chmod(FILE_MODE)


def refuse_foreign_database(path: Path, busy_timeout_s: float) -> None:
    """Refuse an SQLite database some other program made (one with tables but without
    qtagent's schema_version table) before anything writes to it. Only reads."""
    with sql_errors(f"open {path}"):
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = sorted(str(row[0]) for row in rows)
        finally:
            conn.close()
    if tables and "schema_version" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is an SQLite database of another program (tables: {shown}); "
            "qtagent leaves it as it is",
            hint=NOT_OURS_HINT,
        )


@contextmanager
def _open_no_follow(path: Path) -> Iterator[int]:
    """The file's descriptor, created 0600 if missing; a symlink is refused."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as e:
        raise StoreError(
            f"cannot open the allocation database {path}: {e.strerror}",
            hint="the path must be a regular file (not a symlink) the agent may write",
            errno=e.errno,
        ) from e
    try:
        yield fd
    finally:
        os.close(fd)


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
    """One connection to the allocation database, migrated to the latest schema."""

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._depth = 0
        # Closing any descriptor of a file drops the process's POSIX locks on it,
        # SQLite's included ("How To Corrupt An SQLite Database File", 2.2). So the
        # file is checked with descriptors of our own only before this process's first
        # connection to it; a file already open here was checked then.
        key = _file_key(path)
        if key is None or key not in _OPEN_FILES:
            prepare_file(path)
            refuse_foreign_database(path, busy_timeout_s)
            tighten_mode(path)
        with sql_errors(f"open {path}"):
            self.conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=True
            )
        self._key = _file_key(path)
        if self._key is not None:
            with _OPEN_FILES_LOCK:
                _OPEN_FILES[self._key] = _OPEN_FILES.get(self._key, 0) + 1
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self.close()
            raise

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

    @property
    def schema_version(self) -> int:
        with sql_errors("read the schema version"):
            row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        with self.transaction():
            self.conn.execute(VERSION_TABLE)
            current = self.schema_version
            if current > LATEST_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {current}; this qtagent knows up to "
                    f"{LATEST_VERSION}",
                    hint="a newer qtagent wrote this database; upgrade qtagent, never downgrade",
                )
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
        """All statements inside commit together or not at all; nests (savepoints)."""
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
        raise StoreError(f"{action} failed: {e}") from e
    except sqlite3.IntegrityError:
        raise  # callers turn constraint failures into Conflict with context
    except sqlite3.Error as e:
        raise StoreError(f"{action} failed: {e}") from e

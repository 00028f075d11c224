"""The host lock: one process at a time changes this host's VFs.

Every journaled change, and recovery, runs under an exclusive flock(2) on a file
beside the allocation database. The kernel drops the lock when its holder dies,
however it dies: so a journal entry found while holding the lock belongs to a
process that is gone, and recovery may act on it.

Equivalent to::

    flock --exclusive --timeout 30 /var/lib/qtagent/qtagent.lock CMD
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from qtagent.errors import Timeout, from_os_error

_log = logging.getLogger(__name__)


def lock_path_for(db_path: Path) -> Path:
    """The lock file of the database at ``db_path``: ``qtagent.db`` -> ``qtagent.lock``."""
    return db_path.with_suffix(".lock")


def serve_lock_path_for(db_path: Path) -> Path:
    """The lock `qtagent serve` holds while it runs: ``qtagent.db`` -> ``qtagent.serve.lock``."""
    return db_path.with_suffix(".serve.lock")


def holder_of(path: Path) -> str:
    """The pid the holder of the lock at ``path`` wrote into it, for a message."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "unknown"
    try:
        return _holder(fd)
    finally:
        os.close(fd)


class HostLock:
    """An exclusive lock on ``path`` (created 0600 if missing, never through a symlink).

    Reentrant within one object: nested ``with`` blocks take it once.
    """

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> HostLock:
        if self._depth == 0:
            self._fd = self._acquire()
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def _acquire(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            raise from_os_error(
                e, f"open the host lock {self.path}", hint="run qtagent as root"
            ) from e
        try:
            self._wait_for_lock(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        _log.debug("flock --exclusive %s (pid %d)", self.path, os.getpid())
        return fd

    def _wait_for_lock(self, fd: int) -> None:
        deadline = self._clock() + self.timeout_s
        while not self._try_lock(fd):
            if self._clock() >= deadline:
                raise Timeout(
                    f"another qtagent process (pid {_holder(fd)}) has been changing this "
                    f"host for over {self.timeout_s:.0f} s; nothing was changed",
                    hint="wait for it to finish and retry; `qtagent status` shows what "
                    "is under way",
                )
            self._sleep(0.05)

    def _try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise from_os_error(e, f"lock {self.path}") from e
        return True


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, for the message."""
    try:
        text = os.pread(fd, 16, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"

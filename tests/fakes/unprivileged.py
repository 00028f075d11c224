"""Run part of a test as an unprivileged user, for the permission failures root never
meets (root passes every file mode check). Only root can switch users: elsewhere the
tests that need it are skipped.

    outcome = as_nobody(lambda: Store(path, readonly=True).allocations())
    assert outcome.error is None

The function runs in a forked child that drops to ``nobody`` (65534) and reports back
through a pipe; a qtagent error comes back as its class name, exit code and text.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from qtagent.errors import QtagentError

NOBODY = 65534


@dataclass(frozen=True)
class Outcome:
    """What the function gave back (``value``), or the error it raised."""

    value: object = None
    error: str | None = None  # the exception's class name; None: it returned
    exit_code: int | None = None
    text: str = ""  # the qtagent error's diagnostics(), or another error's traceback


def as_nobody(fn: Callable[[], object]) -> Outcome:
    """``fn()`` in a child process running as nobody; skips the test unless root."""
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(_run_dropped(fn), pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    outcome: Outcome = pickle.loads(data)
    return outcome


def _run_dropped(fn: Callable[[], object]) -> Outcome:
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return Outcome(value=fn())
    except QtagentError as e:
        return Outcome(error=type(e).__name__, exit_code=e.exit_code, text=e.diagnostics())
    except BaseException as e:  # reported to the parent, whose test then fails
        return Outcome(error=type(e).__name__, text=traceback.format_exc())


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A fresh directory (mode 0755, owned by the test's user) that nobody can reach:
    pytest's tmp_path is under a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix="qtagent-shared-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)

"""Named points between the steps of a journaled change, where a test can kill the process.

``QTAGENT_FAILPOINT=attach.bind.done`` makes the process that reaches that point
kill itself with SIGKILL there: nothing after it runs, no handler, no ``finally``
(the kernel still drops its locks). The lab's fault-injection test arms each
point in turn and then checks that recovery leaves the host consistent. Unarmed
(the default, and the only state in production), a point costs one comparison.

Point names: ``<kind>.begin`` once the journal entry is durable,
``<kind>.<step>.effect`` after a step's effect and before it is recorded,
``<kind>.<step>.done`` after it is recorded, ``<kind>.finish`` after the outcome
is committed (see :func:`points_of`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

FAILPOINT_ENV: Final = "QTAGENT_FAILPOINT"


def _kill_self(_point: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Failpoints:
    """``armed``: the one point that fires (None: none). ``action`` is what firing does:
    SIGKILL of this process unless a test gives another (raising, say)."""

    armed: str | None = None
    action: Callable[[str], None] = field(default=_kill_self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Failpoints:
        return cls(environ.get(FAILPOINT_ENV) or None)

    def hit(self, point: str) -> None:
        if point == self.armed:
            self.action(point)


def points_of(kind: str, steps: Iterable[str]) -> tuple[str, ...]:
    """Every failpoint of a change of ``kind`` with ``steps``, in the order reached."""
    inner = [f"{kind}.{step}.{when}" for step in steps for when in ("effect", "done")]
    return (f"{kind}.begin", *inner, f"{kind}.finish")

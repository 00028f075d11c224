"""Bounded retry of one kernel request that may fail transiently (FIELD-CASES C5).

Only :class:`qtagent.errors.TransientKernelError` (EBUSY, EAGAIN, EINTR) is retried;
EINVAL and every other error returns at once. Time is a parameter: ``sleep`` and
``clock`` are passed in, so tests run without waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from qtagent.errors import QtagentError, TransientKernelError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``attempts`` sends, sleeping ``first_delay_s * factor**n`` seconds between
    them, and never starting a sleep that would end more than ``budget_s`` seconds
    after the first send. The defaults bound one knob at 5 sends and 0.75 s of sleep
    (0.05 + 0.1 + 0.2 + 0.4 s)."""

    attempts: int = 5
    first_delay_s: float = 0.05
    factor: float = 2.0
    budget_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay_s < 0 or self.factor < 1 or self.budget_s < 0:
            raise ValueError(f"unusable retry policy {self}")


@dataclass(frozen=True, slots=True)
class Attempted:
    """How a retried request ended: ``error`` None on success, and the sends it took."""

    error: QtagentError | None
    attempts: int
    waited_s: float


def retry_transient(
    send: Callable[[], None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Attempted:
    """Call ``send`` until it succeeds, fails for good, or the policy's bound is reached."""
    start = clock()
    delay = policy.first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            send()
        except TransientKernelError as e:
            waited = clock() - start
            if attempt >= policy.attempts or waited + delay > policy.budget_s:
                return Attempted(e, attempt, waited)
            log.debug("transient %s, retry %d in %.3f s: %s", e.errno_name, attempt, delay, e)
            sleep(delay)
            delay *= policy.factor
        except QtagentError as e:
            return Attempted(e, attempt, clock() - start)
        else:
            return Attempted(None, attempt, clock() - start)

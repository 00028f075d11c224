"""Changes of the host run here: under the host lock, after the changes a dead
process left in the journal are finished (FIELD-CASES C1-C4, C9; issue 3).

Every operation that changes the host enters :func:`changing` and runs its
journaled plans with the :class:`Runner` it yields. Entering it takes the host
lock and then recovers the journal: an entry found while holding the lock was
left by a process that died, and is completed (a release, a VF count) or
rolled back (an assignment, a binding) before anything new starts. The daemon
calls :func:`recover_journal` at start and on its periodic check.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from qtagent.journal.recovery import Builder, Recovered, recover
from qtagent.journal.runner import Runner
from qtagent.ops.context import HostContext
from qtagent.store.journal import ChangeKind
from qtagent.store.quarantine import EventLog

_log = logging.getLogger(__name__)


@contextmanager
def changing(ctx: HostContext) -> Iterator[Runner]:
    """Hold the host lock; on first entry, finish what dead processes left first.

    The database is opened (and so checked to be qtagent's) before the lock file
    beside it is made."""
    store = ctx.store
    lock = ctx.host_lock
    outermost = not lock.held
    with lock:
        runner = Runner(store, ctx.failpoints)
        if outermost:
            _recover(ctx, runner, everything=False)
        yield runner


def recover_journal(ctx: HostContext, *, everything: bool = False) -> tuple[Recovered, ...]:
    """Finish the journal's due entries (``everything``: all, due or not), under the lock."""
    store = ctx.store
    with ctx.host_lock:
        return _recover(ctx, Runner(store, ctx.failpoints), everything=everything)


def _recover(ctx: HostContext, runner: Runner, *, everything: bool) -> tuple[Recovered, ...]:
    if not runner.journal.open_entries():
        return ()
    results = recover(runner, _builders(ctx), datetime.now(UTC), everything=everything)
    events = EventLog(ctx.store)
    for result in results:
        if result.outcome != "waiting":
            detail = result.outcome + (f": {result.error}" if result.error else "")
            events.add(f"recovery.{result.entry.kind}", result.entry.subject, detail)
    return results


def _builders(ctx: HostContext) -> Mapping[ChangeKind, Builder]:
    from qtagent.ops.assign import rebuild_attach
    from qtagent.ops.bind import rebuild_bind
    from qtagent.ops.provision import rebuild_vf_count
    from qtagent.ops.release import rebuild_release

    return {
        ChangeKind.ATTACH: lambda entry: rebuild_attach(ctx, entry),
        ChangeKind.BIND: lambda entry: rebuild_bind(ctx, entry),
        ChangeKind.VF_COUNT: lambda entry: rebuild_vf_count(ctx, entry),
        ChangeKind.RELEASE: lambda entry: rebuild_release(ctx, entry),
    }

"""PLACEHOLDER handler for `qtagent serve`, to be replaced by the real one (the journal,
drift and recovery logic of issue 3).

It only reads the host again (``ctx.snapshot()``) at start, on each batch, on
reload and on each tick, and reports what it sees ("3 PFs, 8 VFs"): enough to run
the daemon's plumbing end to end. ``make_handler`` is the factory
`qtagent serve` calls; keep its signature.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qtagent.daemon.api import DaemonHandler
from qtagent.daemon.events import Batch
from qtagent.ops.context import HostContext

_log = logging.getLogger(__name__)


class SnapshotHandler:
    """Looks at the host, changes nothing."""

    def __init__(self, ctx: HostContext, config_path: Path) -> None:
        self.ctx = ctx
        self.config_path = config_path

    def start(self) -> str:
        return self._look()

    def on_events(self, batch: Batch) -> str:
        _log.debug("looking again after %s", batch.summary())
        return self._look()

    def reload(self) -> str:
        return self._look()

    def tick(self) -> str | None:
        return self._look()

    def stop(self) -> None:
        _log.info("stopped")

    def _look(self) -> str:
        snapshot = self.ctx.snapshot(settings=False)
        vfs = sum(len(pf.vfs) for pf in snapshot.pfs)
        return f"{len(snapshot.pfs)} PFs, {vfs} VFs"


def make_handler(ctx: HostContext, config_path: Path) -> DaemonHandler:
    """The handler `qtagent serve` drives for the host ``ctx`` and config ``config_path``."""
    return SnapshotHandler(ctx, config_path)

"""The handler `qtagent serve` drives: the daemon's logic (:class:`qtagent.ops.agent.Agent`)
behind the loop's :class:`~qtagent.daemon.api.DaemonHandler` interface.

A batch of events leads to a pass over the PFs it touches only
(:func:`qtagent.daemon.scope.pfs_touched`), or over every PF when that cannot be
told; a batch that touches no PF leads to none.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qtagent.daemon.api import DaemonHandler
from qtagent.daemon.events import Batch
from qtagent.daemon.scope import pfs_touched
from qtagent.ops.agent import Agent
from qtagent.ops.context import HostContext

_log = logging.getLogger(__name__)


class AgentHandler:
    """Events in, reconcile passes out."""

    def __init__(self, ctx: HostContext, config_path: Path | None) -> None:
        self.agent = Agent(ctx, config_path)

    def start(self) -> str:
        return self.agent.start()

    def on_events(self, batch: Batch) -> str:
        pfs = pfs_touched(batch, self.agent.last)
        if pfs is not None and not pfs:
            _log.debug("no PF in %s: nothing to look at", batch.summary())
            return self.agent.last_status
        _log.debug("looking at %s after %s", "every PF" if pfs is None else sorted(pfs),
                   batch.summary())  # fmt: skip
        return self.agent.changed(pfs)

    def reload(self) -> str:
        return self.agent.reload()

    def tick(self) -> str | None:
        return self.agent.tick()

    def stop(self) -> None:
        self.agent.stop()


def make_handler(ctx: HostContext, config_path: Path | None) -> DaemonHandler:
    """The handler `qtagent serve` drives for the host ``ctx`` and config ``config_path``."""
    return AgentHandler(ctx, config_path)

"""The daemon's logic, without its event plumbing (issue 3): what `qtagent serve` does
at start, after a batch of udev and netlink events, on SIGHUP and periodically.

- start: record the daemon in the database, finish what dead processes left in
  the journal, load the host config and reconcile (a persisted desired count is
  applied by the agent itself, C8);
- a batch of events, or the periodic check: reconcile again;
- reload: read the host config again; a config that does not parse is refused
  and the one in force stays (the daemon keeps running, and says why);
- stop: remove the daemon's record.

Every method returns the one-line status the daemon gives systemd (sd_notify
STATUS) and keeps in the database for `qtagent status`.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from qtagent.config import HostConfig, load_host_config
from qtagent.errors import Conflict, QtagentError, Timeout
from qtagent.journal.lock import HostLock, holder_of, serve_lock_path_for
from qtagent.model.host import HostSnapshot
from qtagent.ops.context import HostContext
from qtagent.ops.reconcile import ReconcileResult, reconcile
from qtagent.ops.recover import recover_journal
from qtagent.store.journal import Journal
from qtagent.store.quarantine import EventLog, QuarantineTable
from qtagent.store.status import DaemonTable

_log = logging.getLogger(__name__)


class Agent:
    """The daemon's decisions for one host. ``config_path``: the host config file
    (None, or a path that does not exist: the desired state recorded in the database)."""

    def __init__(self, ctx: HostContext, config_path: Path | None) -> None:
        self.ctx = ctx
        self.config_path = config_path
        self.config: HostConfig | None = None
        self.config_error: str | None = None
        self.passes = 0
        self.last: HostSnapshot = HostSnapshot()  # as the last pass saw the host
        self.last_status = "starting"
        self.repaired_last = 0  # repairs the last pass made
        self._unknown: tuple[str, ...] = ()  # config PFs the last pass did not find
        self._held = ExitStack()  # the serve lock, from start() to stop()

    def start(self) -> str:
        self._hold_serve_lock()
        DaemonTable(self.ctx.store).started("starting")
        recovered = recover_journal(self.ctx)
        for result in recovered:
            _log.warning("at start: %s of %s %s", result.entry.kind, result.entry.subject,
                         result.outcome)  # fmt: skip
        self.config = self._load(initial=True)
        first = self._look()
        if self.repaired_last:
            # VFs it just created get their defaults on a second look, before READY=1.
            return self._look()
        return first

    def changed(self, pfs: frozenset[str] | None = None) -> str:
        """After a batch of events: look again (``pfs``: only at these PFs)."""
        return self._look(pfs)

    def tick(self) -> str:
        """The periodic check: the journal's retries fall due, drift may have crept in."""
        return self._look()

    def reload(self) -> str:
        config = self._load(initial=False)
        if self.config_error is None:
            self.config = config
            EventLog(self.ctx.store).add("config", str(self.config_path), "reloaded")
        return self._look()

    def stop(self) -> None:
        DaemonTable(self.ctx.store).stopped()
        self._held.close()

    def _hold_serve_lock(self) -> None:
        """One daemon per database: a second one would record its own config on every
        pass, and two configs would have the VF counts written back and forth."""
        path = serve_lock_path_for(self.ctx.paths.db_path)
        try:
            self._held.enter_context(HostLock(path, timeout_s=0.0))
        except Timeout:
            raise Conflict(
                f"another qtagent serve (pid {holder_of(path)}) runs on this host with "
                f"the database {self.ctx.paths.db_path}; this one does not start",
                hint="stop that one first (systemctl stop qtagent)",
            ) from None

    def _load(self, *, initial: bool) -> HostConfig | None:
        path = self.config_path
        if path is None or not path.exists():
            self.config_error = None
            if initial and path is not None:
                _log.warning("no host config at %s: keeping the desired state on record", path)
                EventLog(self.ctx.store).add(
                    "config", str(path), "not found: keeping the desired state on record"
                )
            return None
        try:
            config = load_host_config(path)
        except QtagentError as err:
            self.config_error = err.message
            hint = f" (hint: {err.hint})" if err.hint else ""
            _log.error("host config %s refused: %s%s", path, err.message, hint)
            EventLog(self.ctx.store).add("config", str(path), f"refused: {err.message}")
            if initial:
                raise
            return self.config
        self.config_error = None
        return config

    def _look(self, pfs: frozenset[str] | None = None) -> str:
        self.passes += 1
        try:
            result = reconcile(self.ctx, self.config, pfs=pfs)
        except QtagentError as err:
            status = f"reconcile failed: {err.message}"
            _log.error("%s", err.diagnostics())
        else:
            status = self._status(result)
            self.repaired_last = result.repaired
            self._say_unknown(result.unknown_pfs)
        DaemonTable(self.ctx.store).heartbeat(status)
        self.last_status = status
        return status

    def _say_unknown(self, unknown: tuple[str, ...]) -> None:
        """Warn (log and event) when the config's PFs not found on the host change."""
        if unknown == self._unknown:
            return
        self._unknown = unknown
        if unknown:
            names = ", ".join(unknown)
            _log.warning("host config names PFs not on this host: %s (see qtagent pf list)", names)
            EventLog(self.ctx.store).add("config", str(self.config_path), f"PFs not found: {names}")

    def _status(self, result: ReconcileResult) -> str:
        snapshot = self.last = self.ctx.snapshot(settings=False)
        store = self.ctx.store
        parts = [
            f"{len(snapshot.pfs)} PFs, {sum(len(pf.vfs) for pf in snapshot.pfs)} VFs, "
            f"{len(store.allocations())} allocated, "
            f"{len(QuarantineTable(store).all())} quarantined",
            result.status,
        ]
        waiting = len(Journal(store).open_entries())
        if waiting:
            parts.append(f"{waiting} changes waiting in the journal")
        if self.config_error is not None:
            parts.append(f"config refused, the previous one stays: {self.config_error}")
        return "; ".join(parts)

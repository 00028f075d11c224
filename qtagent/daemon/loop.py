"""The daemon's event loop: select over the event sources and the signal pipe, feed
the debouncer, drive the handler, keep systemd informed.

    status "starting" -> handler.start() -> READY=1, STATUS=...
    loop:  events  -> debounced batch -> handler.on_events(batch) -> STATUS=...
           SIGHUP  -> RELOADING=1 -> handler.reload() -> READY=1, STATUS=...
           tick_s after the last check -> handler.tick() -> STATUS=... (if it says something new)
           every watchdog interval -> WATCHDOG=1
           SIGTERM, SIGINT -> STOPPING=1 -> handler.stop() -> exit 0

An exception from start() ends the daemon with its qtagent exit code (systemd
restarts it, Restart=on-failure). One from on_events, reload or tick is logged and
the daemon keeps running; its status says what failed. A source that cannot be read
any more (an error other than a lost event) ends the daemon the same way.
"""

from __future__ import annotations

import logging
import selectors
import time
from collections.abc import Callable, Sequence
from typing import Final

from qtagent.daemon.api import DaemonHandler, EventSource, SignalSource
from qtagent.daemon.debounce import Debouncer
from qtagent.daemon.notify import Notifier
from qtagent.daemon.signals import RELOAD_SIGNALS, STOP_SIGNALS
from qtagent.errors import QtagentError

_log = logging.getLogger(__name__)

TICK_S: Final = 30.0


def _failure(what: str, err: Exception) -> str:
    message = err.message if isinstance(err, QtagentError) else f"{type(err).__name__}: {err}"
    return f"{what} failed, still running: {message}"


class DaemonLoop:
    """One run of the daemon. ``clock``: seconds, monotonic (the select timeouts are
    real time, so a test's clock must move with it)."""

    def __init__(
        self,
        handler: DaemonHandler,
        notifier: Notifier,
        sources: Sequence[EventSource],
        signals: SignalSource,
        *,
        tick_s: float = TICK_S,
        debouncer: Debouncer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.notifier = notifier
        self.sources = tuple(sources)
        self.signals = signals
        self.tick_s = tick_s
        self.debouncer = debouncer or Debouncer()
        self.clock = clock
        self._next_tick = 0.0
        self._next_watchdog: float | None = None

    def run(self) -> int:
        """Start, serve until SIGTERM or SIGINT, stop; the exit code."""
        self.notifier.status("starting")
        self._pet_watchdog(self.clock(), force=True)  # start() gets a whole WatchdogSec
        try:
            status = self.handler.start()
        except QtagentError as err:
            _log.error("start failed: %s", err.diagnostics())
            self.notifier.status(f"start failed: {err.message}")
            return err.exit_code
        self.notifier.ready(status)
        _log.info("ready: %s", status)
        now = self.clock()
        self._next_tick = now + self.tick_s
        self._pet_watchdog(now, force=True)
        with selectors.DefaultSelector() as selector:
            selector.register(self.signals, selectors.EVENT_READ, None)
            for source in self.sources:
                selector.register(source, selectors.EVENT_READ, source)
            try:
                return self._serve(selector)
            except QtagentError as err:
                _log.error("an event source failed: %s", err.diagnostics())
                self.notifier.status(f"stopped: {err.message}")
                self.notifier.stopping()
                self._stop()
                return err.exit_code

    def _serve(self, selector: selectors.BaseSelector) -> int:
        while True:
            ready = selector.select(self._timeout(self.clock()))
            now = self.clock()
            stop = reload = False
            for key, _mask in ready:
                if key.data is None:
                    signals = self.signals.drain()
                    stop = stop or any(s in STOP_SIGNALS for s in signals)
                    reload = reload or any(s in RELOAD_SIGNALS for s in signals)
                else:
                    self.debouncer.add(key.data.drain(), now)
            if stop:
                _log.info("stopping on a signal")
                self.notifier.stopping()
                self._stop()
                return 0
            if reload:
                self._reload()
            self._step(now)
            self._pet_watchdog(self.clock())

    def _step(self, now: float) -> None:
        batch = self.debouncer.release(now)
        if batch is not None:
            _log.info("events: %s", batch.summary())
            try:
                status = self.handler.on_events(batch)
            except Exception as err:
                _log.exception("handling %s failed", batch.summary())
                status = _failure("event handling", err)
            self.notifier.status(status)  # the check stays due: a batch may look at no PF
        elif now >= self._next_tick:
            try:
                ticked = self.handler.tick()
            except Exception as err:
                _log.exception("the periodic check failed")
                ticked = _failure("the periodic check", err)
            if ticked is not None:
                self.notifier.status(ticked)
            self._next_tick = self.clock() + self.tick_s

    def _reload(self) -> None:
        _log.info("reloading on SIGHUP")
        self.notifier.reloading()
        try:
            status = self.handler.reload()
        except Exception as err:
            _log.exception("reload failed")
            status = _failure("reload", err)
        self.notifier.ready(status)
        self._next_tick = self.clock() + self.tick_s

    def _stop(self) -> None:
        try:
            self.handler.stop()
        except Exception:
            _log.exception("stopping the handler failed")

    def _timeout(self, now: float) -> float:
        deadlines = [self._next_tick]
        debounce = self.debouncer.next_deadline()
        if debounce is not None:
            deadlines.append(debounce)
        if self._next_watchdog is not None:
            deadlines.append(self._next_watchdog)
        return max(0.0, min(deadlines) - now)

    def _pet_watchdog(self, now: float, *, force: bool = False) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        if force or self._next_watchdog is None or now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval

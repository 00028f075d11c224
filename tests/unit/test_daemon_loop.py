"""The event loop over pipe-backed sources and a recording handler, with a real
sd_notify socket; the last tests send real signals to this process."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.daemon.events import LinkChange, LinkEvent, Overrun, UdevEvent
from qtagent.daemon.loop import DaemonLoop
from qtagent.daemon.notify import Notifier
from qtagent.daemon.signals import SignalWakeup
from qtagent.errors import ConfigError, KernelError
from tests.fakes.daemon import NotifyListener, PipeSignals, PipeSource, RecordingHandler

PF_LINK = LinkEvent(LinkChange.NEW, 4, "enp1s0")
VF_UNBIND = UdevEvent("pci", "unbind", "/devices/pci0000:00/0000:01:10.0", "0000:01:10.0")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    found = NotifyListener(tmp_path)
    yield found
    found.close()


@pytest.fixture
def udev() -> Iterator[PipeSource]:
    source = PipeSource()
    yield source
    source.close()


@pytest.fixture
def rtnl() -> Iterator[PipeSource]:
    source = PipeSource()
    yield source
    source.close()


@pytest.fixture
def signals() -> Iterator[PipeSignals]:
    source = PipeSignals()
    yield source
    source.close()


def loop(
    handler: RecordingHandler,
    listener: NotifyListener,
    sources: list[PipeSource],
    signals: PipeSignals,
    *,
    tick_s: float = 60.0,
    watchdog_usec: int | None = None,
) -> DaemonLoop:
    notifier = Notifier(listener.path, watchdog_usec=watchdog_usec, monotonic_usec=lambda: 7)
    return DaemonLoop(handler, notifier, sources, signals, tick_s=tick_s)


def test_start_events_stop(
    listener: NotifyListener, udev: PipeSource, rtnl: PipeSource, signals: PipeSignals
) -> None:
    def burst() -> None:  # one burst from both sources, then a stop once it was handled
        udev.push(VF_UNBIND)
        rtnl.push(PF_LINK, PF_LINK)

    handler = RecordingHandler(
        after={"start": [burst], "on_events": [lambda: signals.send(signal.SIGTERM)]}
    )
    assert loop(handler, listener, [udev, rtnl], signals).run() == 0
    assert handler.calls == ["start", "on_events", "stop"]
    (batch,) = handler.batches
    assert (batch.udev, batch.links, batch.resync) == ((VF_UNBIND,), (PF_LINK,), False)
    assert listener.messages() == [
        "STATUS=starting",
        "READY=1\nSTATUS=2 PFs, 4 VFs",
        "STATUS=looked at 1 udev, 1 link events",
        "STOPPING=1",
    ]


def test_an_event_reaches_the_handler_well_within_two_seconds(
    listener: NotifyListener, rtnl: PipeSource, signals: PipeSignals
) -> None:
    seen: list[float] = []

    def handled() -> None:
        seen.append(time.monotonic())
        signals.send(signal.SIGTERM)

    handler = RecordingHandler(
        after={"start": [lambda: rtnl.push(PF_LINK)], "on_events": [handled]}
    )
    begun = time.monotonic()
    assert loop(handler, listener, [rtnl], signals).run() == 0
    assert seen[0] - begun < 0.5 + 0.3  # max_delay_s plus slack for a loaded machine


def test_sighup_reloads_and_reports_ready_again(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    handler = RecordingHandler(
        after={"start": [lambda: signals.send(signal.SIGHUP)],
               "reload": [lambda: signals.send(signal.SIGINT)]},
    )  # fmt: skip
    assert loop(handler, listener, [udev], signals).run() == 0
    assert handler.calls == ["start", "reload", "stop"]
    assert listener.messages() == [
        "STATUS=starting",
        "READY=1\nSTATUS=2 PFs, 4 VFs",
        "RELOADING=1\nMONOTONIC_USEC=7",
        "READY=1\nSTATUS=reloaded",
        "STOPPING=1",
    ]


def test_a_failing_batch_is_logged_and_the_daemon_goes_on(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    def second_burst() -> None:
        udev.push(VF_UNBIND)

    handler = RecordingHandler(
        after={"start": [lambda: udev.push(VF_UNBIND)],
               "on_events": [second_burst, lambda: signals.send(signal.SIGTERM)]},
        fail={"on_events": KernelError("echo 0 > sriov_numvfs failed", errno=16)},
    )  # fmt: skip
    assert loop(handler, listener, [udev], signals).run() == 0
    assert handler.calls == ["start", "on_events", "on_events", "stop"]
    failed = "STATUS=event handling failed, still running: echo 0 > sriov_numvfs failed"
    assert listener.messages()[2:] == [failed, failed, "STOPPING=1"]


def test_a_bug_in_the_handler_does_not_stop_the_daemon(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    handler = RecordingHandler(
        after={"start": [lambda: signals.send(signal.SIGHUP)],
               "reload": [lambda: signals.send(signal.SIGTERM)]},
        fail={"reload": KeyError("pf")},
    )  # fmt: skip
    assert loop(handler, listener, [udev], signals).run() == 0
    assert "READY=1\nSTATUS=reload failed, still running: KeyError: 'pf'" in listener.messages()


def test_a_failed_start_is_fatal_with_its_exit_code(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    handler = RecordingHandler(fail={"start": ConfigError("host.toml: num_vfs is not a number")})
    assert loop(handler, listener, [udev], signals).run() == 2
    assert handler.calls == ["start"]
    assert listener.messages() == [
        "STATUS=starting",
        "STATUS=start failed: host.toml: num_vfs is not a number",
    ]


def test_an_overrun_asks_the_handler_to_resync(
    listener: NotifyListener, rtnl: PipeSource, signals: PipeSignals
) -> None:
    handler = RecordingHandler(
        after={"start": [lambda: rtnl.push(Overrun("rtnetlink", "ENOBUFS"))],
               "on_events": [lambda: signals.send(signal.SIGTERM)]},
    )  # fmt: skip
    assert loop(handler, listener, [rtnl], signals).run() == 0
    assert handler.batches[0].resync


def test_ticks_come_when_idle_and_a_silent_tick_sends_nothing(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    handler = RecordingHandler(after={"tick": [lambda: None, lambda: signals.send(15)]})
    assert loop(handler, listener, [udev], signals, tick_s=0.05).run() == 0
    assert handler.calls == ["start", "tick", "tick", "stop"]
    assert listener.messages()[2:] == ["STATUS=ticked", "STATUS=ticked", "STOPPING=1"]
    handler = RecordingHandler(tick_status=None, after={"tick": [lambda: signals.send(15)]})
    assert loop(handler, listener, [udev], signals, tick_s=0.05).run() == 0
    assert listener.messages()[2:] == ["STOPPING=1"]


def test_a_steady_trickle_of_events_does_not_put_off_the_periodic_check(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    # A tap of some VM coming or going every few seconds (an event for no PF, so no
    # look at all) put the check off for good: no retry of the journal, no full look.
    def trickle() -> None:
        for _ in range(8):
            time.sleep(0.2)  # each its own batch (0.1 s quiet), closer than tick_s
            udev.push(VF_UNBIND)
        signals.send(signal.SIGTERM)

    worker = threading.Thread(target=trickle)
    handler = RecordingHandler(after={"start": [worker.start]})
    assert loop(handler, listener, [udev], signals, tick_s=0.5).run() == 0
    worker.join()
    assert handler.calls.count("on_events") >= 2
    assert "tick" in handler.calls


def test_the_watchdog_is_fed_at_half_its_timeout(
    listener: NotifyListener, udev: PipeSource, signals: PipeSignals
) -> None:
    handler = RecordingHandler(after={"tick": [lambda: signals.send(15)]})
    begun = time.monotonic()
    assert loop(handler, listener, [udev], signals, tick_s=0.5, watchdog_usec=200_000).run() == 0
    elapsed = time.monotonic() - begun
    pings = listener.messages().count("WATCHDOG=1")
    assert elapsed >= 0.5
    assert 4 <= pings <= elapsed / 0.1 + 2  # one at READY, then one each 0.1 s


def test_real_signals_reach_the_loop_through_the_wakeup_fd(
    listener: NotifyListener, udev: PipeSource
) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    pid = os.getpid()
    handler = RecordingHandler(
        after={"start": [lambda: os.kill(pid, signal.SIGHUP)],
               "reload": [lambda: os.kill(pid, signal.SIGTERM)]},
    )  # fmt: skip
    with SignalWakeup() as wakeup:
        code = DaemonLoop(handler, Notifier(listener.path), [udev], wakeup).run()
    assert code == 0
    assert handler.calls == ["start", "reload", "stop"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_signal_wakeup_reports_signals_in_order() -> None:
    with SignalWakeup() as wakeup:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)
        assert wakeup.drain() == [signal.SIGHUP, signal.SIGINT]
        assert wakeup.drain() == []

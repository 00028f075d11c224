"""The debouncer against a fake clock: time is a parameter, nothing sleeps."""

from __future__ import annotations

import pytest

from qtagent.daemon.debounce import Debouncer
from qtagent.daemon.events import LinkChange, LinkEvent, Overrun, UdevEvent


def link(ifindex: int) -> LinkEvent:
    return LinkEvent(LinkChange.NEW, ifindex, f"eth{ifindex}")


def test_nothing_pending_has_no_deadline_and_releases_nothing() -> None:
    debouncer = Debouncer()
    assert debouncer.next_deadline() is None
    assert debouncer.release(1e9) is None
    debouncer.add([], 5.0)
    assert debouncer.next_deadline() is None


def test_a_batch_is_released_after_the_quiet_time() -> None:
    debouncer = Debouncer(quiet_s=0.1, max_delay_s=0.5)
    debouncer.add([link(1)], 10.0)
    debouncer.add([link(2)], 10.05)
    assert debouncer.next_deadline() == pytest.approx(10.15)
    assert debouncer.release(10.14) is None
    batch = debouncer.release(10.15)
    assert batch is not None
    assert batch.links == (link(1), link(2))
    assert debouncer.next_deadline() is None
    assert debouncer.release(20.0) is None


def test_a_steady_stream_is_released_at_the_max_delay() -> None:
    debouncer = Debouncer(quiet_s=0.125, max_delay_s=0.5)  # binary fractions: exact sums
    now = 100.0
    released = []
    for step in range(12):  # one event every 1/16 s: never quiet for 1/8 s
        debouncer.add([link(step + 1)], now)
        batch = debouncer.release(now)
        if batch is not None:
            released.append((now, len(batch)))
        now += 0.0625
    assert released == [(100.5, 9)]
    assert debouncer.pending == 3
    assert debouncer.next_deadline() == 100.6875 + 0.125


def test_the_next_batch_starts_its_own_max_delay() -> None:
    debouncer = Debouncer(quiet_s=0.1, max_delay_s=0.5)
    debouncer.add([link(1)], 0.0)
    assert debouncer.release(0.1) is not None
    debouncer.add([link(2)], 3.0)
    assert debouncer.next_deadline() == pytest.approx(3.1)


def test_repeats_are_dropped_and_order_kept() -> None:
    debouncer = Debouncer()
    pci = UdevEvent("pci", "change", "/devices/pci0000:00/0000:00:03.0", "0000:00:03.0")
    debouncer.add([link(2), pci, link(1), link(2), pci], 0.0)
    batch = debouncer.release(1.0)
    assert batch is not None
    assert batch.links == (link(2), link(1))
    assert batch.udev == (pci,)
    assert not batch.resync
    assert batch.pci_addresses == {"0000:00:03.0"}
    assert batch.ifindexes == {1, 2}


def test_an_overrun_makes_the_batch_a_resync() -> None:
    debouncer = Debouncer()
    debouncer.add([link(1), Overrun("rtnetlink", "ENOBUFS")], 0.0)
    batch = debouncer.release(1.0)
    assert batch is not None
    assert batch.resync
    assert batch.links == (link(1),)
    assert batch.summary() == "0 udev, 1 link events (resync: rtnetlink: ENOBUFS)"


def test_more_events_than_kept_become_a_resync() -> None:
    debouncer = Debouncer(max_events=3)
    debouncer.add([link(i) for i in range(1, 10)], 0.0)
    assert debouncer.pending == 3
    batch = debouncer.release(1.0)
    assert batch is not None
    assert batch.resync
    assert len(batch) == 3
    assert batch.reasons == ("more than 3 events in one burst",)
    debouncer.add([link(1)], 2.0)
    again = debouncer.release(3.0)
    assert again is not None
    assert not again.resync


@pytest.mark.parametrize(("quiet", "max_delay"), [(0.0, 0.5), (0.6, 0.5), (-1.0, 1.0)])
def test_nonsense_timings_are_refused(quiet: float, max_delay: float) -> None:
    with pytest.raises(ValueError, match="quiet_s"):
        Debouncer(quiet_s=quiet, max_delay_s=max_delay)

"""Which PFs a batch of events touches (qtagent.daemon.scope): the daemon's pass after
events reads only those PFs' VF settings, or every PF when it cannot tell."""

from __future__ import annotations

from qtagent.daemon.events import Batch, LinkEvent, UdevEvent
from qtagent.daemon.scope import pfs_touched
from qtagent.model.host import HostSnapshot
from qtagent.netlink.link_events import LinkChange
from tests.unit.factories import PF_ADDR, make_pf

PF = make_pf(2)
HOST = HostSnapshot((PF,))
VF1 = str(PF.vfs[1].address)


def test_udev_events_of_the_pf_its_vfs_and_their_netdevs_name_the_pf() -> None:
    batch = Batch(udev=(
        UdevEvent("pci", "unbind", f"/devices/pci0000:40/0000:40:00.0/{VF1}", VF1),
        UdevEvent("net", "move", f"/devices/pci0000:40/0000:40:00.0/{VF1}/net/x", "enp65s0v0"),
        UdevEvent("net", "change", f"/devices/pci0000:40/0000:40:00.0/{PF_ADDR}/net/y", "y",
                  ifindex=2),
    ))  # fmt: skip
    assert pfs_touched(batch, HOST) == frozenset({PF_ADDR})


def test_a_link_event_of_the_pf_names_it_and_virtual_links_name_nothing() -> None:
    batch = Batch(
        udev=(UdevEvent("net", "add", "/devices/virtual/net/vnet3", "vnet3", ifindex=40),),
        links=(LinkEvent(LinkChange.NEW, 2, "enp65s0"), LinkEvent(LinkChange.NEW, 40, "vnet3")),
    )
    assert pfs_touched(batch, HOST) == frozenset({PF_ADDR})
    assert pfs_touched(Batch(links=(LinkEvent(LinkChange.NEW, 40, "vnet3"),)), HOST) == frozenset()


def test_an_unknown_function_or_lost_events_mean_every_pf() -> None:
    new_vf = UdevEvent(
        "pci", "add", "/devices/pci0000:40/0000:40:00.0/0000:41:10.7", "0000:41:10.7"
    )
    assert pfs_touched(Batch(udev=(new_vf,)), HOST) is None
    assert pfs_touched(Batch(resync=True), HOST) is None

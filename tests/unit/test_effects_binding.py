"""PciBinder on the fake PCI bus: what it refuses before touching the VF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.errors import Unsupported
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import igb_host


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=2))
    yield rig
    rig.ctx.close()


def test_vfio_pci_not_loaded_is_refused_before_the_vf_leaves_its_driver(
    rig: FakeHostRig,
) -> None:
    """It used to unbind igbvf first, find no vfio-pci, wait out the timeout and roll
    back: the VF lost its driver (and netdev) for seconds, for nothing."""
    rig.bus.unload_module("vfio-pci")
    vf = rig.vf(1)
    remembered: list[str | None] = []
    start = rig.clock()

    with pytest.raises(Unsupported) as raised:
        rig.ctx.binder.to_vfio(vf, remember=remembered.append)

    assert "the vfio-pci driver is not loaded" in str(raised.value)
    assert "bus/pci/drivers/vfio-pci does not exist); nothing was changed" in str(raised.value)
    assert raised.value.hint == "load it (modprobe vfio-pci), then retry"
    assert rig.bus.commands == [] and remembered == []
    assert rig.driver(1) == "igbvf"
    assert rig.clock() == start  # no wait either


def test_once_vfio_pci_is_loaded_the_bind_goes_through(rig: FakeHostRig) -> None:
    rig.bus.unload_module("vfio-pci")
    rig.bus.load_module("vfio-pci")
    result = rig.ctx.binder.to_vfio(rig.vf(1), remember=lambda _driver: None)
    assert (result.before, result.after, result.changed) == ("igbvf", "vfio-pci", True)
    assert rig.driver(1) == "vfio-pci"


def test_a_repair_probe_that_comes_to_nothing_is_asked_again(rig: FakeHostRig) -> None:
    """An external unbind repaired with drivers_probe: the first probe binds nothing
    (lab: igbvf, during the unbind's teardown); the binder asks again a second later
    instead of reporting a failed repair after 5 s."""
    address = str(rig.vf(1).address)
    rig.bus.release_driver(address)
    rig.bus.lose_next_probe(address)
    start = rig.clock()

    result = rig.ctx.binder.probe_host_driver(rig.vf(1))

    assert (result.before, result.after, result.changed) == (None, "igbvf", True)
    assert rig.driver(1) == "igbvf"
    probes = [c for c in rig.bus.commands if c.endswith("bus/pci/drivers_probe")]
    assert probes == [f"echo {address} > bus/pci/drivers_probe"] * 2
    assert 1.0 <= rig.clock() - start < 2.0

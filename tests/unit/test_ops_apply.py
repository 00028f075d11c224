"""VF counts and VF defaults: `qtagent apply` (qtagent.ops.apply) and `pf set-vfs`
(qtagent.ops.provision), FIELD-CASES C1, C2, C3, through a real HostContext over
complete fakes (tests/fakes/host_rig.py): sriov_numvfs writes create and destroy VFs
in the fake tree and the fake VF tables as the kernel would.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.config import HostConfig, PfConfig, parse_host_config
from qtagent.effects.knobs import KnobsNotApplied
from qtagent.effects.vfcount import WaitPolicy
from qtagent.errors import ConfigError, Conflict, InvalidInput, KernelError, NotFound, Timeout
from qtagent.model.desired import VfDefaults
from qtagent.model.types import VfId
from qtagent.netlink.api import Knob
from qtagent.ops.apply import apply_config
from qtagent.ops.assign import attach
from qtagent.ops.provision import set_vf_count
from qtagent.ops.recover import recover_journal
from qtagent.store.journal import Journal
from qtagent.store.records import AllocationState
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import FakeNetdev, FakeNetdevsim, igb_host

PF0 = "0000:41:00.0"  # netdev enp65s0, ifindex 100
PF1 = "0000:81:00.0"  # netdev enp129s0, ifindex 1100
PF1_IFINDEX = 1100

CONFIG = """
[pf."0000:41:00.0"]
num_vfs = 4
vf_defaults = { spoofchk = false, trust = true, vlan = 10 }

[pf.enp129s0]
num_vfs = 2
"""


def config(text: str) -> HostConfig:
    return parse_host_config(text.encode())


def numvfs_writes(rig: FakeHostRig) -> list[str]:
    return [c for c in rig.bus.commands if c.endswith("/sriov_numvfs")]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    """Two igb PFs without VFs."""
    rig = FakeHostRig.build(tmp_path, igb_host(n_pfs=2, n_vfs=0))
    yield rig
    rig.ctx.close()


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[FakeHostRig]:
    """One igb PF with 4 VFs; VF1 held by VM "a", VF2 by VM "b"."""
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=4))
    rig.vm("a")
    rig.vm("b")
    attach(rig.ctx, "a", PF0, index=1)
    attach(rig.ctx, "b", PF0, index=2)
    yield rig
    rig.ctx.close()


# ---------------------------------------------------------------- apply


def test_apply_gives_each_pf_its_vfs_and_defaults_then_changes_nothing(rig: FakeHostRig) -> None:
    first = apply_config(rig.ctx, config(CONFIG))

    assert [(r.pf, r.name, r.count.writes) for r in first] == [
        (PF0, "0000:41:00.0", (4,)),
        (PF1, "enp129s0", (2,)),
    ]
    assert all(r.changed and not r.count.partial for r in first)
    assert [rig.driver(i) for i in range(4)] == ["igbvf"] * 4
    assert [rig.driver(i, PF1) for i in range(2)] == ["igbvf"] * 2
    assert all(rig.vf(i).netdev is not None for i in range(4))
    table = [rig.settings(i) for i in range(4)]
    assert all((s.spoofchk, s.trust, s.vlan) == (False, True, 10) for s in table)
    assert len(rig.netlink.pfs[PF1_IFINDEX].vfs) == 2
    for pf, count in ((PF0, 4), (PF1, 2)):
        desired = rig.ctx.store.desired(pf)
        assert desired is not None and desired.num_vfs == count
        assert desired.applied_at is not None

    commands, sent = len(rig.bus.commands), len(rig.netlink.sent)
    second = apply_config(rig.ctx, config(CONFIG))

    assert len(rig.bus.commands) == commands  # nothing written
    assert len(rig.netlink.sent) == sent  # no knob sent
    assert [r.count.writes for r in second] == [(), ()]
    assert not any(r.changed for r in second)


@pytest.mark.parametrize("where", ["first", "last"])
def test_an_unknown_pf_anywhere_in_the_file_refuses_the_whole_file(
    rig: FakeHostRig, where: str
) -> None:
    unknown = "[pf.enp999s0]\nnum_vfs = 1\n"
    text = unknown + CONFIG if where == "first" else CONFIG + unknown
    with pytest.raises(NotFound, match="no SR-IOV PF named 'enp999s0'"):
        apply_config(rig.ctx, config(text))
    assert rig.bus.commands == [] and rig.netlink.sent == []
    assert rig.ctx.store.all_desired() == ()
    assert len(rig.netlink.pfs[100].vfs) == 0


def test_a_pf_named_twice_refuses_the_whole_file(rig: FakeHostRig) -> None:
    text = '[pf."0000:41:00.0"]\nnum_vfs = 2\n[pf.enp65s0]\nnum_vfs = 3\n'
    with pytest.raises(ConfigError, match="named twice") as raised:
        apply_config(rig.ctx, config(text))
    assert 'as [pf."0000:41:00.0"] and as [pf.enp65s0]' in str(raised.value)
    assert rig.bus.commands == [] and rig.ctx.store.all_desired() == ()


def test_a_count_change_that_would_destroy_a_held_vf_refuses_the_whole_file(
    rig: FakeHostRig,
) -> None:
    apply_config(rig.ctx, config('[pf."0000:41:00.0"]\nnum_vfs = 2\n[pf.enp129s0]\nnum_vfs = 2'))
    rig.vm("a")
    attach(rig.ctx, "a", PF1, index=1)
    commands = len(rig.bus.commands)

    change = '[pf."0000:41:00.0"]\nnum_vfs = 4\n[pf.enp129s0]\nnum_vfs = 3\n'
    with pytest.raises(Conflict, match=r"VF1 \(VM 'a'\)") as raised:
        apply_config(rig.ctx, config(change))
    assert "--drain" not in raised.value.hint  # apply has no --drain
    assert "keep num_vfs = 2 in [pf.enp129s0]" in raised.value.hint

    assert len(rig.bus.commands) == commands  # PF0's change was not made either
    assert len(rig.netlink.pfs[100].vfs) == 2 and len(rig.netlink.pfs[PF1_IFINDEX].vfs) == 2
    assert [d.num_vfs for d in rig.ctx.store.all_desired()] == [2, 2]
    assert rig.driver(1, PF1) == "vfio-pci" and rig.hostdevs("a") == (rig.address(1, PF1),)


def test_the_desired_count_is_marked_applied_only_when_no_vf_is_missing(
    rig: FakeHostRig,
) -> None:
    """C3: igbvf is not loaded, so the new VFs get no driver; they are missing, get no
    configuration, and the count is recorded but not applied - until they appear."""
    rig.bus.loaded.discard("igbvf")
    text = '[pf."0000:41:00.0"]\nnum_vfs = 3\nvf_defaults = { trust = true }\n'

    (result,) = apply_config(rig.ctx, config(text))

    assert result.count.writes == (3,)
    assert result.count.missing == tuple((i, "no driver bound") for i in range(3))
    assert rig.clock.slept >= WaitPolicy().bound(3)  # waited the whole bound (fake clock)
    assert rig.netlink.sent == [] and result.defaults == ()
    desired = rig.ctx.store.desired(PF0)
    assert desired is not None and desired.num_vfs == 3 and desired.applied_at is None

    rig.bus.load_module("igbvf")  # the VFs get their driver and netdevs
    (again,) = apply_config(rig.ctx, config(text))

    assert again.count.writes == () and not again.count.partial
    desired = rig.ctx.store.desired(PF0)
    assert desired is not None and desired.applied_at is not None
    assert all(rig.settings(i).trust is True for i in range(3))


def test_a_failed_count_write_is_never_recorded_as_applied(rig: FakeHostRig) -> None:
    rig.bus.fail_next("sriov_numvfs", errno.ENOSPC)
    with pytest.raises(KernelError, match="sriov_numvfs failed") as raised:
        apply_config(rig.ctx, config('[pf."0000:41:00.0"]\nnum_vfs = 4\n'))
    assert raised.value.errno == errno.ENOSPC
    assert "ran out of resources" in raised.value.hint
    desired = rig.ctx.store.desired(PF0)
    assert desired is not None and desired.num_vfs == 4 and desired.applied_at is None
    assert len(rig.netlink.pfs[100].vfs) == 0


def test_a_run_that_stops_part_way_notes_which_pfs_it_changed(rig: FakeHostRig) -> None:
    rig.bus.fail_next("sriov_numvfs", errno.ENOSPC, address=PF1)
    with pytest.raises(KernelError, match="sriov_numvfs failed") as raised:
        apply_config(rig.ctx, config(CONFIG))
    assert raised.value.errno == errno.ENOSPC  # the kernel's error, as it was
    assert raised.value.notes == (
        "the vf_count of PF 0000:81:00.0 stays in the journal; it is retried later "
        "(`qtagent status` shows it)",
        "apply stopped at PF 2 of 2 in the file",
        "changed: 0000:41:00.0: VF count 0 -> 4, 12 VF knobs set",
        "not changed: 0000:81:00.0 (enp129s0): where it stopped; VF count still 0",
        "once the cause is fixed, apply the same file again: it changes only what differs",
    )
    assert raised.value.to_dict()["notes"] == list(raised.value.notes)
    assert len(rig.netlink.pfs[100].vfs) == 4 and len(rig.netlink.pfs[PF1_IFINDEX].vfs) == 0
    # The refused count waits in the journal, retried only with backoff (C1)...
    (entry,) = Journal(rig.ctx.store).open_entries()
    assert (entry.subject, entry.attempts) == (f"PF {PF1}", 1)
    assert "ENOSPC" not in (entry.last_error or "") and "sriov_numvfs" in (entry.last_error or "")
    assert [r.outcome for r in recover_journal(rig.ctx)] == ["waiting"]
    assert len(rig.netlink.pfs[PF1_IFINDEX].vfs) == 0
    # ...and once retried with the kernel willing, it is finished: 2 VFs, entry gone.
    assert [r.outcome for r in recover_journal(rig.ctx, everything=True)] == ["completed"]
    assert len(rig.netlink.pfs[PF1_IFINDEX].vfs) == 2
    assert Journal(rig.ctx.store).open_entries() == ()


def test_a_run_that_stops_in_vf_defaults_says_they_may_be_partly_set(rig: FakeHostRig) -> None:
    rig.netlink.fail_next(PF1_IFINDEX, 1, Knob.TRUST, errno.EPERM)
    text = CONFIG.replace("num_vfs = 2", "num_vfs = 2\nvf_defaults = { trust = true }")
    with pytest.raises(KnobsNotApplied) as raised:
        apply_config(rig.ctx, config(text))
    assert raised.value.notes[2] == (
        "changed: 0000:81:00.0 (enp129s0): where it stopped; VF count 0 -> 2; "
        "its VF defaults may be set on some VFs"
    )
    assert rig.settings(0, PF1_IFINDEX).trust is True  # VF0 got them, VF1 did not
    assert rig.settings(1, PF1_IFINDEX).trust is False


def test_vf_defaults_that_cannot_be_sent_refuse_the_whole_file_before_any_write(
    rig: FakeHostRig,
) -> None:
    """A HostConfig built without the parser (min_tx_rate above max_tx_rate) is refused
    before the first PF's count is written, not after."""
    bad = VfDefaults(max_tx_rate=100, min_tx_rate=200)
    host = HostConfig((PfConfig(PF0, 2), PfConfig("enp129s0", 2, bad)))
    with pytest.raises(ConfigError, match="enp129s0") as raised:
        apply_config(rig.ctx, host)
    assert "min_tx_rate 200 is above max_tx_rate 100" in str(raised.value)
    assert "fix vf_defaults in [pf.enp129s0]" in raised.value.hint
    assert rig.bus.commands == [] and rig.netlink.sent == []
    assert rig.ctx.store.all_desired() == ()


# ---------------------------------------------------------------- set_vf_count


def test_drain_detaches_every_vf_first_then_changes_the_count(busy: FakeHostRig) -> None:
    mark = len(busy.bus.commands)

    result = set_vf_count(busy.ctx, PF0, 6, drain=True)

    assert result.drained == (1, 2)
    assert result.count.writes == (0, 6) and result.count.ready == tuple(range(6))
    commands = busy.bus.commands[mark:]
    assert commands[-2:] == [
        f"echo 0 > bus/pci/devices/{PF0}/sriov_numvfs",
        f"echo 6 > bus/pci/devices/{PF0}/sriov_numvfs",
    ]
    rebinds = [c for c in commands[:-2] if c.endswith("drivers_probe")]
    assert len(rebinds) == 2  # VF1 and VF2 went back to igbvf before the first write
    assert busy.ctx.store.allocations() == ()
    assert busy.hostdevs("a") == () and busy.hostdevs("b") == ()
    assert [busy.driver(i) for i in range(6)] == ["igbvf"] * 6
    assert len(busy.netlink.pfs[100].vfs) == 6
    assert busy.vfio_nodes() == []


def test_without_drain_a_count_change_is_refused_naming_each_holder(busy: FakeHostRig) -> None:
    mark = len(busy.bus.commands)
    with pytest.raises(Conflict, match=r"VF1 \(VM 'a'\), VF2 \(VM 'b'\)"):
        set_vf_count(busy.ctx, PF0, 0)
    assert busy.bus.commands[mark:] == []
    assert [(a.vf.index, a.vm.name) for a in busy.ctx.store.allocations()] == [(1, "a"), (2, "b")]
    assert busy.hostdevs("a") == (busy.address(1),) and busy.hostdevs("b") == (busy.address(2),)
    assert busy.driver(1) == busy.driver(2) == "vfio-pci"


def test_a_drain_that_cannot_release_a_vf_writes_no_count(busy: FakeHostRig) -> None:
    """C2: a guest that never lets go stops the drain; 0 is never written while a VF
    is allocated."""
    busy.virt.domains["b"].answers_eject = False
    with pytest.raises(Timeout, match="has not released"):
        set_vf_count(busy.ctx, PF0, 0, drain=True)
    assert numvfs_writes(busy) == []
    assert busy.ctx.store.allocation(VfId(PF0, 1)) is None  # VF1 was released first
    held = busy.ctx.store.allocation(VfId(PF0, 2))
    assert held is not None and held.state is AllocationState.RELEASING
    assert len(busy.netlink.pfs[100].vfs) == 4 and busy.driver(2) == "vfio-pci"


def test_the_current_count_writes_nothing(busy: FakeHostRig) -> None:
    mark = len(busy.bus.commands)
    result = set_vf_count(busy.ctx, PF0, 4, drain=True)
    assert result.count.writes == () and result.drained == ()
    assert busy.bus.commands[mark:] == [] and len(busy.ctx.store.allocations()) == 2


@pytest.fixture
def nsim(tmp_path: Path) -> Iterator[FakeHostRig]:
    """One netdevsim device without VFs; its debugfs max_vfs is 4."""
    host = igb_host(n_vfs=0)
    host.netdevsims.append(FakeNetdevsim(0, ports=[FakeNetdev("eni0np1", 900)], max_vfs=4))
    rig = FakeHostRig.build(tmp_path, host)
    yield rig
    rig.ctx.close()


def test_a_netdevsim_count_above_max_vfs_is_refused_before_any_write(nsim: FakeHostRig) -> None:
    with pytest.raises(InvalidInput, match="netdevsim0 supports at most 4 VFs; 5 were asked"):
        set_vf_count(nsim.ctx, "netdevsim0", 5)
    with pytest.raises(InvalidInput, match="at most 4 VFs") as raised:
        apply_config(nsim.ctx, config("[pf.netdevsim0]\nnum_vfs = 5\n"))
    assert raised.value.hint.startswith("lower num_vfs in [pf.netdevsim0]; ask for 0 to 4")
    assert numvfs_writes(nsim) == [] and nsim.ctx.store.all_desired() == ()
    assert set_vf_count(nsim.ctx, "netdevsim0", 4).count.writes == (4,)

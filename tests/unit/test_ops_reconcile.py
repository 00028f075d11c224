"""One reconcile pass over a whole fake host (issue 3, FIELD-CASES C8): external
changes are found and repaired or reported, and a pass over an unchanged host
writes nothing. The lab proves the same on the real kernel (tests/lab/test_drift_lab.py).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.config import HostConfig, parse_host_config
from qtagent.errors import ConfigError
from qtagent.model.types import MacAddress, VfId
from qtagent.ops.assign import attach
from qtagent.ops.bind import bind_vf
from qtagent.ops.reconcile import reconcile
from qtagent.ops.release import detach
from qtagent.store.journal import Journal
from qtagent.store.quarantine import EventLog
from qtagent.store.status import DriftTable
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import igb_host

VM_MAC = MacAddress.parse("52:54:00:aa:00:01")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=4))
    rig.vm("a")
    yield rig
    rig.ctx.close()


def config(
    rig: FakeHostRig, body: str = "num_vfs = 4\nvf_defaults = { trust = false }"
) -> HostConfig:
    return parse_host_config(f'[pf."{rig.pf_name}"]\n{body}\n'.encode())


def writes(rig: FakeHostRig) -> tuple[int, int]:
    return rig.bus.writes, len(rig.netlink.sent)


def test_a_pass_over_an_unchanged_host_writes_nothing(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    reconcile(rig.ctx, config(rig))
    before = writes(rig)

    result = reconcile(rig.ctx, config(rig))

    assert result.drift == () and writes(rig) == before


def test_a_vm_vfs_knobs_changed_with_ip_link_are_put_back(rig: FakeHostRig) -> None:
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC, vlan=100)
    # ip link set $pf vf 1 vlan 7 spoofchk off mac 02:00:00:00:00:07
    rig.netlink.set_vf(rig.pf_ifindex, 1, vlan=7, spoofchk=False,
                       mac=MacAddress.parse("02:00:00:00:00:07"))  # fmt: skip

    result = reconcile(rig.ctx, config(rig))

    assert {d.aspect for d in result.drift} == {"mac", "vlan", "spoofchk"}
    assert result.repaired == 1 and result.failed == ()
    now = rig.settings(1)
    assert (now.mac, now.vlan, now.spoofchk) == (VM_MAC, 100, True)
    assert DriftTable(rig.ctx.store).all() == ()
    assert any(e.kind == "drift.repaired" for e in EventLog(rig.ctx.store).last())


def test_an_external_count_change_is_repaired_when_free_and_reported_when_held(
    rig: FakeHostRig,
) -> None:
    reconcile(rig.ctx, config(rig))
    rig.ctx.writer.write_num_vfs(rig.pf_name, 0)  # echo 0 > sriov_numvfs, by someone else
    rig.ctx.writer.write_num_vfs(rig.pf_name, 2)

    repaired = reconcile(rig.ctx, config(rig))

    assert [(d.aspect, d.have, d.repair) for d in repaired.drift] == [("VF count", "2 VFs", True)]
    assert rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 4

    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    held = reconcile(rig.ctx, config(rig, "num_vfs = 6"))

    (drift,) = held.drift
    assert (drift.aspect, drift.repair) == ("VF count", False) and "VF1" in drift.why
    assert rig.ctx.pf(rig.pf_name, settings=False).num_vfs == 4  # never through 0 under a VM
    assert DriftTable(rig.ctx.store).all() == (drift,)


def test_a_count_is_not_repaired_under_a_vf_a_process_may_hold_through_vfio(
    rig: FakeHostRig,
) -> None:
    reconcile(rig.ctx, config(rig))
    attach(rig.ctx, "a", rig.pf_name, index=1, mac=VM_MAC)
    rig.hold_vfio_group(1)  # QEMU still holds VF1's group: its release quarantines it
    detach(rig.ctx, "a", rig.pf_name, 1)
    bind_vf(rig.ctx, rig.pf_name, 2, "vfio-pci")  # the operator's, for DPDK say
    before = rig.bus.writes

    result = reconcile(rig.ctx, config(rig, "num_vfs = 6"))

    (drift,) = result.drift
    assert (drift.aspect, drift.repair) == ("VF count", False)
    assert "VF1" in drift.why and "VF2" in drift.why
    assert rig.bus.writes == before  # no 0 written under them
    assert (rig.driver(1), rig.driver(2)) == ("vfio-pci", "vfio-pci")


def test_a_config_naming_one_pf_twice_is_refused_as_apply_refuses_it(rig: FakeHostRig) -> None:
    reconcile(rig.ctx, config(rig))
    twice = config(rig).pfs + parse_host_config(b"[pf.enp65s0]\nnum_vfs = 2\n").pfs
    before = writes(rig)

    with pytest.raises(ConfigError, match=r"named twice in the config: .* and as \[pf.enp65s0\]"):
        reconcile(rig.ctx, HostConfig(twice))

    desired = rig.ctx.store.desired(rig.pf_name)
    assert desired is not None and desired.num_vfs == 4  # not the last one read
    assert writes(rig) == before


def test_a_count_repair_the_kernel_refused_is_retried_with_backoff(rig: FakeHostRig) -> None:
    # Each pass (each tick, each batch of events) made a new change and wrote again,
    # its attempts never above 1: no backoff at all.
    reconcile(rig.ctx, config(rig))
    rig.ctx.writer.write_num_vfs(rig.pf_name, 0)  # by someone else
    rig.ctx.writer.write_num_vfs(rig.pf_name, 2)
    rig.bus.fail_next("sriov_numvfs", errno.EIO, times=100)

    reconcile(rig.ctx, config(rig))
    (entry,) = Journal(rig.ctx.store).open_entries()
    before = len(rig.bus.commands)
    again = reconcile(rig.ctx, config(rig))

    assert len(rig.bus.commands) == before  # nothing written before the retry is due
    assert Journal(rig.ctx.store).open_entries() == (entry,)
    (why,) = again.failed
    assert "the change to 4 VFs waits in the journal until" in why


def test_an_externally_unbound_free_vf_gets_its_host_driver_back(rig: FakeHostRig) -> None:
    reconcile(rig.ctx, config(rig))
    rig.ctx.writer.unbind(rig.address(2))  # echo $vf > .../driver/unbind

    result = reconcile(rig.ctx, config(rig))

    assert [(d.subject, d.aspect, d.repair) for d in result.drift] == [
        (str(VfId(rig.pf_name, 2)), "driver", True)
    ]
    assert rig.driver(2) == "igbvf"


def test_report_policy_leaves_the_change_and_says_so(rig: FakeHostRig) -> None:
    body = 'num_vfs = 4\ndrift = "report"\nvf_defaults = { trust = false }'
    reconcile(rig.ctx, config(rig, body))
    rig.netlink.set_vf(rig.pf_ifindex, 0, trust=True)
    before = writes(rig)

    result = reconcile(rig.ctx, config(rig, body))

    ((drift,),) = (result.drift,)
    assert (drift.aspect, drift.have, drift.repair) == ("trust", "on", False)
    assert writes(rig) == before and rig.settings(0).trust is True
    assert DriftTable(rig.ctx.store).all() == (drift,)


def test_a_pass_over_some_pfs_reads_and_plans_only_those(tmp_path: Path) -> None:
    rig = FakeHostRig.build(tmp_path, igb_host(n_pfs=2, n_vfs=2))
    other = rig.host.pfs[1].address
    other_ifindex = rig.host.pfs[1].netdev.ifindex  # type: ignore[union-attr]
    text = f'[pf."{rig.pf_name}"]\nnum_vfs = 2\n[pf."{other}"]\nnum_vfs = 2\n'
    both = parse_host_config(
        (text + 'drift = "report"\nvf_defaults = { trust = false }\n').encode()
    )
    reconcile(rig.ctx, both)
    rig.netlink.set_vf(other_ifindex, 0, trust=True)  # drift on the other PF
    reconcile(rig.ctx, both)
    (kept,) = DriftTable(rig.ctx.store).all()
    reads = rig.netlink.reads

    result = reconcile(rig.ctx, both, pfs=frozenset({rig.pf_name}))

    assert result.drift == ()
    assert rig.netlink.reads == reads + 1  # only the first PF's VF table was read
    assert DriftTable(rig.ctx.store).all() == (kept,)  # the other PF's drift stays on record
    rig.ctx.close()

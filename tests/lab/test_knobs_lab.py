"""VF knobs against the real kernel of the lab guest: igb (emulated 82576) and netdevsim.

Run in the guest::

    qtagent lab run -- pytest -p no:cacheprovider tests/lab/test_knobs_lab.py

Skipped anywhere without an igb PF (that is, outside the lab). Every test runs once
per backend (plain rtnetlink socket, pyroute2). Expected values are read back with
iproute2 (``ip -j link show``), not with qtagent's own decoder.
"""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.effects.knobs import KnobsNotApplied, apply_knobs, apply_knobs_many
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress
from qtagent.netlink.api import Knob, VfNetlink
from qtagent.netlink.knob_values import knob_value
from qtagent.netlink.pyroute2_backend import Pyroute2VfNetlink
from qtagent.netlink.rtnl_backend import RtnlVfNetlink
from qtagent.plan.knob_report import KnobOutcome, KnobReport, Rollback
from qtagent.plan.knobs import KnobRequest
from tests.lab.labkit import IGB, IN_LAB_GUEST, NSIM, SYS, wait_for

MAC = MacAddress.parse("02:11:22:33:44:55")
C6_REQUEST = KnobRequest(
    mac=MAC,
    vlan=100,
    spoofchk=True,
    trust=True,
    link_state=LinkState.ENABLE,
    max_tx_rate=100,
    min_tx_rate=10,
)


def igb_pf_dirs() -> list[Path]:
    """``ls -d /sys/bus/pci/drivers/igb/0000:*`` (addresses move between boots)."""
    return sorted(IGB.glob("0000:*")) if IGB.is_dir() else []


pytestmark = [*IN_LAB_GUEST]


def sh(command: str) -> str:
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout


def ensure_vfs(device: Path, count: int) -> None:
    """At least ``count`` VFs on ``device`` (through 0: N>0 -> M>0 is EBUSY)."""
    numvfs = device / "sriov_numvfs"
    if int(numvfs.read_text()) >= count:
        return
    numvfs.write_text("0")
    numvfs.write_text(str(count))


def ip_vfs(pf: str) -> dict[int, VfSettings]:
    """Every VF of ``pf`` as iproute2 reads it: the independent oracle."""
    (link,) = json.loads(sh(f"ip -j link show dev {pf}"))
    vfs: dict[int, VfSettings] = {}
    for vf in link.get("vfinfo_list", []):
        vlans = vf.get("vlan_list", [{}])
        rate = vf.get("rate", {})
        vfs[vf["vf"]] = VfSettings(
            mac=MacAddress.parse(vf["address"]),
            vlan=vlans[0].get("vlan", 0),
            qos=vlans[0].get("qos", 0),
            spoofchk=vf.get("spoofchk"),
            trust=vf.get("trust"),
            max_tx_rate=rate.get("max_tx"),
            min_tx_rate=rate.get("min_tx"),
            link_state=LinkState(vf["link_state"]) if "link_state" in vf else None,
        )
    return vfs


def carrier(pf: str) -> bool:
    try:
        return (SYS / "class/net" / pf / "carrier").read_text().strip() == "1"
    except OSError:  # reading carrier of a down link fails with EINVAL
        return False


def link_up(pf: str) -> None:
    sh(f"ip link set {pf} up")
    wait_for(f"{pf} carrier", lambda: carrier(pf))


@pytest.fixture(scope="module")
def igb_pf() -> tuple[str, int]:
    """The first igb PF with at least 2 VFs and its link up (igb refuses max_tx_rate
    while the PF link is down; QEMU's user-mode netdev gives carrier at 1000 Mb/s)."""
    device = igb_pf_dirs()[0]
    ensure_vfs(device, 2)
    (name,) = [p.name for p in (device / "net").iterdir()]
    link_up(name)
    assert (SYS / "class/net" / name / "speed").read_text().strip() == "1000"
    return name, int((SYS / "class/net" / name / "ifindex").read_text())


@pytest.fixture(scope="module")
def nsim_pf() -> tuple[str, int]:
    if not NSIM.is_dir():
        pytest.skip("no netdevsim device in this guest")
    ensure_vfs(NSIM, 4)
    (name,) = [p.name for p in (NSIM / "net").iterdir()]
    sh(f"ip link set {name} up")
    return name, int((SYS / "class/net" / name / "ifindex").read_text())


@pytest.fixture(params=[RtnlVfNetlink, Pyroute2VfNetlink], ids=["rtnl", "pyroute2"])
def nl(request: pytest.FixtureRequest) -> Iterator[VfNetlink]:
    backend: VfNetlink = request.param()
    yield backend
    backend.close()


def reset_vf(pf: str, vf: int, *, spoofchk: str = "on", state: bool = False) -> None:
    """Put a VF back to its driver defaults with iproute2 (not with qtagent)."""
    sh(f"ip link set {pf} vf {vf} mac 00:00:00:00:00:00 vlan 0 spoofchk {spoofchk} trust off")
    sh(f"ip link set {pf} vf {vf} min_tx_rate 0 max_tx_rate 0")
    if state:
        sh(f"ip link set {pf} vf {vf} state auto")


def assert_report_matches_ip(report: KnobReport, pf: str) -> None:
    """Each knob's read-back in the report is what iproute2 reads now, and every
    applied or unchanged knob that was not rolled back shows its requested value."""
    now = ip_vfs(pf)[report.vf]
    for result in report.results:
        assert result.readback == knob_value(now, result.knob), result.knob
        if result.outcome in (KnobOutcome.APPLIED, KnobOutcome.UNCHANGED):
            assert result.rollback is not Rollback.NONE or result.confirmed, result.knob


def test_read_vfs_agrees_with_iproute2(
    nl: VfNetlink, igb_pf: tuple[str, int], nsim_pf: tuple[str, int]
) -> None:
    for name, ifindex in (igb_pf, nsim_pf):
        assert dict(nl.read_vfs(ifindex)) == ip_vfs(name)


def test_c6_igb_vf0_answers_per_knob_matching_read_back(
    nl: VfNetlink, igb_pf: tuple[str, int]
) -> None:
    name, ifindex = igb_pf
    reset_vf(name, 0, spoofchk="off")  # so that "spoofchk on" is really sent
    report = apply_knobs(nl, ifindex, 0, C6_REQUEST)
    outcomes = {r.knob: r.outcome for r in report.results}
    assert outcomes == {
        Knob.SPOOFCHK: KnobOutcome.APPLIED,
        Knob.TRUST: KnobOutcome.APPLIED,
        Knob.MAC: KnobOutcome.APPLIED,
        Knob.VLAN: KnobOutcome.APPLIED,
        Knob.LINK_STATE: KnobOutcome.UNSUPPORTED,
        Knob.MAX_TX_RATE: KnobOutcome.APPLIED,
        Knob.MIN_TX_RATE: KnobOutcome.REJECTED,
    }
    assert report.result(Knob.LINK_STATE).errno == errno.EOPNOTSUPP
    assert report.result(Knob.MIN_TX_RATE).errno == errno.EINVAL
    assert report.result(Knob.MIN_TX_RATE).attempts == 1  # EINVAL is not retried
    assert report.half_configured and not report.failed_required  # said, not raised
    assert_report_matches_ip(report, name)
    now = ip_vfs(name)[0]
    assert (now.mac, now.vlan, now.spoofchk, now.trust, now.max_tx_rate) == (
        MAC,
        100,
        True,
        True,
        100,
    )
    assert (now.min_tx_rate, now.link_state) == (0, LinkState.AUTO)
    print(f"\n{name} vf 0 ({type(nl).__name__}):\n{report.table()}")


def test_c6_igb_required_knob_that_fails_rolls_back(nl: VfNetlink, igb_pf: tuple[str, int]) -> None:
    name, ifindex = igb_pf
    reset_vf(name, 1)
    before = ip_vfs(name)[1]
    request = KnobRequest(
        mac=MAC,
        vlan=200,
        trust=True,
        max_tx_rate=50,
        min_tx_rate=10,
        required=frozenset({Knob.TRUST, Knob.MAX_TX_RATE, Knob.MIN_TX_RATE}),
    )
    with pytest.raises(KnobsNotApplied) as caught:
        apply_knobs(nl, ifindex, 1, request)
    (report,) = caught.value.reports
    assert report.result(Knob.MIN_TX_RATE).outcome is KnobOutcome.REJECTED
    assert report.result(Knob.TRUST).rollback is Rollback.ROLLED_BACK
    assert report.result(Knob.MAX_TX_RATE).rollback is Rollback.ROLLED_BACK
    assert report.result(Knob.MAC).outcome is KnobOutcome.SKIPPED
    assert ip_vfs(name)[1] == before  # nothing of the request is left on the VF
    assert_report_matches_ip(report, name)
    print(f"\n{caught.value.diagnostics()}")


def test_igb_max_rate_is_rejected_while_the_pf_link_is_down(
    nl: VfNetlink, igb_pf: tuple[str, int]
) -> None:
    name, ifindex = igb_pf
    reset_vf(name, 1)
    sh(f"ip link set {name} down")
    try:
        report = apply_knobs(nl, ifindex, 1, KnobRequest(max_tx_rate=100))
        result = report.result(Knob.MAX_TX_RATE)
        assert (result.outcome, result.errno, result.readback) == (
            KnobOutcome.REJECTED,
            errno.EINVAL,
            0,
        )
    finally:
        link_up(name)
    report = apply_knobs(nl, ifindex, 1, KnobRequest(max_tx_rate=100))
    assert report.result(Knob.MAX_TX_RATE).outcome is KnobOutcome.APPLIED
    reset_vf(name, 1)


def test_igb_equal_request_sends_nothing(nl: VfNetlink, igb_pf: tuple[str, int]) -> None:
    name, ifindex = igb_pf
    reset_vf(name, 1)
    request = KnobRequest(mac=ZERO_MAC, vlan=0, spoofchk=True, trust=False, max_tx_rate=0)
    report = apply_knobs(nl, ifindex, 1, request)
    assert {r.outcome for r in report.results} == {KnobOutcome.UNCHANGED}
    assert all(r.attempts == 0 for r in report.results)


def test_c6_netdevsim_accepts_every_knob(nl: VfNetlink, nsim_pf: tuple[str, int]) -> None:
    name, ifindex = nsim_pf
    reset_vf(name, 1, spoofchk="off", state=True)  # every knob of C6_REQUEST differs
    report = apply_knobs(nl, ifindex, 1, C6_REQUEST)
    assert {r.outcome for r in report.results} == {KnobOutcome.APPLIED}
    assert report.complete
    assert_report_matches_ip(report, name)
    assert ip_vfs(name)[1] == VfSettings(
        mac=MAC,
        vlan=100,
        qos=0,
        spoofchk=True,
        trust=True,
        max_tx_rate=100,
        min_tx_rate=10,
        link_state=LinkState.ENABLE,
    )
    reset_vf(name, 1, state=True)


def test_netdevsim_many_vfs_in_one_request(nl: VfNetlink, nsim_pf: tuple[str, int]) -> None:
    name, ifindex = nsim_pf
    requests = {
        vf: KnobRequest(
            mac=MacAddress(bytes([2, 0, 0, 0, 0x10, vf])), vlan=10 + vf, qos=vf % 8, trust=True
        )
        for vf in range(4)
    }
    reports = apply_knobs_many(nl, ifindex, requests)
    assert all(r.complete for r in reports)
    now = ip_vfs(name)
    for vf, request in requests.items():
        assert (now[vf].mac, now[vf].vlan, now[vf].qos, now[vf].trust) == (
            request.mac,
            request.vlan,
            request.qos,
            True,
        )
        reset_vf(name, vf)

"""VF count changes and vfio-pci binding against the lab guest's real kernel
(FIELD-CASES C1, C2, C3, C9, C10), through qtagent's operations and its CLI.

Run in the guest: qtagent lab run -- pytest -p no:cacheprovider tests/lab/test_provision_lab.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.config import parse_host_config
from qtagent.effects.binding import PciBinder
from qtagent.errors import Conflict, InvalidInput, KernelError, NotFound, Unsupported
from qtagent.model.types import VfId
from qtagent.ops.apply import apply_config
from qtagent.ops.context import HostContext, HostPaths
from qtagent.ops.provision import set_vf_count
from qtagent.store.records import VmRef
from qtagent.sysfs.writer import SysfsWriter
from tests.lab.labkit import IGB, IN_LAB_GUEST, NSIM, SYS, wait_for, write

pytestmark = [*IN_LAB_GUEST]


def igb_pf() -> str:
    return sorted(p.name for p in IGB.glob("0000:*"))[0]


def numvfs(pf: str) -> int:
    return int((SYS / "bus/pci/devices" / pf / "sriov_numvfs").read_text())


def virtfn_links(pf: str) -> list[str]:
    return sorted(p.name for p in (SYS / "bus/pci/devices" / pf).glob("virtfn*"))


class CountingWriter(SysfsWriter):
    """The real writer, counting sriov_numvfs writes."""

    def __init__(self) -> None:
        super().__init__(SYS)
        self.numvfs_writes: list[int] = []

    def write_num_vfs(self, pf_name: str, count: int) -> None:
        self.numvfs_writes.append(count)
        super().write_num_vfs(pf_name, count)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[HostContext]:
    context = HostContext(HostPaths(db_path=tmp_path / "qtagent.db"))
    context._writer = CountingWriter()
    yield context
    context.close()


@pytest.fixture
def pf(ctx: HostContext) -> Iterator[str]:
    name = igb_pf()
    yield name
    ctx.writer.write_num_vfs(name, 0)


def writes(ctx: HostContext) -> list[int]:
    writer = ctx.writer
    assert isinstance(writer, CountingWriter)
    return writer.numvfs_writes


def test_c1_count_changes_go_through_zero_and_wait_for_every_vf(ctx: HostContext, pf: str) -> None:
    set_vf_count(ctx, pf, 0)
    first = set_vf_count(ctx, pf, 4)
    assert first.count.ready == (0, 1, 2, 3) and not first.count.partial
    assert len(virtfn_links(pf)) == 4
    writes(ctx).clear()
    again = set_vf_count(ctx, pf, 4)
    assert again.count.writes == () and writes(ctx) == []  # same count: no write at all
    grown = set_vf_count(ctx, pf, 6)
    assert writes(ctx) == [0, 6]
    assert len(virtfn_links(pf)) == 6 and numvfs(pf) == 6
    snapshot = ctx.pf(pf, settings=False)
    assert all(vf.driver == "igbvf" and vf.netdev for vf in snapshot.vfs)
    assert grown.count.ready == tuple(range(6))


def test_c3_vfs_without_a_driver_are_partial_and_unconfigured_until_they_get_one(
    ctx: HostContext, pf: str
) -> None:
    """With driver autoprobe off the VFs exist but never get igbvf or a netdev: the
    count is written, the VFs are reported missing after the wait bound, no knob is
    sent to them and the desired count is not marked applied. Once they are probed,
    applying the same config again writes no count and configures them.

    The kernel probes a VF of a PF with autoprobe off only through driver_override
    (pci_device_can_probe), so autoprobe goes back on before the VFs are probed."""
    pf_dir = SYS / "bus/pci/devices" / pf
    config = parse_host_config(
        f'[pf."{pf}"]\nnum_vfs = 2\nvf_defaults = {{ trust = true }}\n'.encode()
    )
    set_vf_count(ctx, pf, 0)
    write(pf_dir / "sriov_drivers_autoprobe", "0")
    try:
        (result,) = apply_config(ctx, config)
        assert result.count.writes == (2,)
        assert result.count.missing == ((0, "no driver bound"), (1, "no driver bound"))
        assert result.defaults == ()
        assert [vf.settings.trust for vf in ctx.pf(pf).vfs] == [False, False]
        desired = ctx.store.desired(pf)
        assert desired is not None and desired.applied_at is None

        write(pf_dir / "sriov_drivers_autoprobe", "1")
        for link in sorted(pf_dir.glob("virtfn*")):
            write(SYS / "bus/pci/drivers_probe", link.resolve().name)
        wait_for("igbvf netdevs", lambda: all(vf.netdev for vf in ctx.pf(pf, settings=False).vfs))
        (again,) = apply_config(ctx, config)
        assert again.count.writes == () and not again.count.partial
        assert [vf.settings.trust for vf in ctx.pf(pf).vfs] == [True, True]
        desired = ctx.store.desired(pf)
        assert desired is not None and desired.applied_at is not None
    finally:
        write(pf_dir / "sriov_drivers_autoprobe", "1")
        set_vf_count(ctx, pf, 0)


def test_c1_above_totalvfs_is_refused_before_any_write(ctx: HostContext, pf: str) -> None:
    set_vf_count(ctx, pf, 2)
    writes(ctx).clear()
    with pytest.raises(InvalidInput, match="at most 7 VFs"):
        set_vf_count(ctx, pf, 8)
    assert writes(ctx) == [] and numvfs(pf) == 2


def test_c1_kernel_refusal_keeps_errno_erange(ctx: HostContext, pf: str) -> None:
    """Bypass the planner: the kernel itself answers ERANGE above sriov_totalvfs."""
    from qtagent.errors import KernelError

    with pytest.raises(KernelError) as info:
        ctx.writer.write_num_vfs(pf, 8)
    assert info.value.errno_name == "ERANGE"
    assert "sriov_totalvfs" in info.value.hint


def test_c1_pf_without_driver_gets_no_write(ctx: HostContext, pf: str) -> None:
    set_vf_count(ctx, pf, 0)
    ctx.writer.unbind(ctx.pf(pf, settings=False).address)  # type: ignore[arg-type]
    try:
        writes(ctx).clear()
        with pytest.raises(Unsupported, match="no driver"):
            set_vf_count(ctx, pf, 2)
        assert writes(ctx) == []
    finally:
        SysfsWriter(SYS).probe(ctx.pf(pf, settings=False).address)  # type: ignore[arg-type]
    assert (SYS / "bus/pci/devices" / pf / "driver").resolve().name == "igb"


def test_c2_count_change_refused_while_a_vf_is_allocated(ctx: HostContext, pf: str) -> None:
    set_vf_count(ctx, pf, 4)
    ctx.store.reserve(VfId(pf, 2), VmRef("a"))
    writes(ctx).clear()
    for desired in (6, 0):
        with pytest.raises(Conflict, match=r"VF2 \(VM 'a'\)"):
            set_vf_count(ctx, pf, desired)
    assert writes(ctx) == [] and numvfs(pf) == 4
    assert ctx.store.allocation(VfId(pf, 2)) is not None


def test_c1_netdevsim_count_and_enomem_above_max_vfs(ctx: HostContext) -> None:
    if not NSIM.is_dir():
        pytest.skip("netdevsim is not loaded")
    set_vf_count(ctx, "netdevsim1", 0)
    result = set_vf_count(ctx, "netdevsim1", 16)
    assert result.count.ready == tuple(range(16))
    total = ctx.pf("netdevsim1", settings=False).total_vfs
    # qtagent refuses above max_vfs before any write, naming the limit...
    with pytest.raises(InvalidInput, match=f"at most {total} VFs"):
        set_vf_count(ctx, "netdevsim1", total + 1)
    assert ctx.pf("netdevsim1", settings=False).num_vfs == 16
    # ...which is the kernel's: netdevsim answers such a write with ENOMEM.
    ctx.writer.write_num_vfs("netdevsim1", 0)
    with pytest.raises(KernelError) as info:
        ctx.writer.write_num_vfs("netdevsim1", total + 1)
    assert info.value.errno_name == "ENOMEM"
    set_vf_count(ctx, "netdevsim1", 0)


def test_c9_bind_to_vfio_and_back(ctx: HostContext, pf: str) -> None:
    set_vf_count(ctx, pf, 2)
    vf = ctx.pf(pf, settings=False).vf(1)
    remembered: list[str | None] = []
    result = ctx.binder.to_vfio(vf, remember=remembered.append)
    assert remembered == ["igbvf"] and result.changed and result.after == "vfio-pci"
    group = ctx.pf(pf, settings=False).vf(1).iommu_group
    assert group is not None and Path(f"/dev/vfio/{group.number}").exists()
    again = ctx.binder.to_vfio(ctx.pf(pf, settings=False).vf(1), remember=remembered.append)
    assert not again.changed and remembered == ["igbvf"]
    back = ctx.binder.to_host(ctx.pf(pf, settings=False).vf(1), "igbvf")
    assert back.after == "igbvf"
    after = ctx.pf(pf, settings=False).vf(1)
    assert after.driver == "igbvf" and after.netdev is not None
    override = (SYS / "bus/pci/devices" / str(vf.address) / "driver_override").read_text().strip()
    assert override in ("", "(null)")


def test_c9_bind_without_vfio_pci_is_refused_before_any_unbind(ctx: HostContext, pf: str) -> None:
    """With vfio-pci unloaded, drivers_probe would leave the VF driverless: qtagent
    refuses before touching it."""
    set_vf_count(ctx, pf, 1)
    vf = ctx.pf(pf, settings=False).vf(0)
    subprocess.run(["modprobe", "-r", "vfio-pci"], check=True)
    try:
        with pytest.raises(Unsupported, match="vfio-pci driver is not loaded"):
            ctx.binder.to_vfio(vf, remember=lambda _d: None)
        after = ctx.pf(pf, settings=False).vf(0)
        assert after.driver == "igbvf" and after.netdev is not None
        override = SYS / "bus/pci/devices" / str(vf.address) / "driver_override"
        assert override.read_text().strip() in ("", "(null)")
    finally:
        subprocess.run(["modprobe", "vfio-pci"], check=True)


def test_c9_failed_bind_rolls_back_to_the_original_driver(
    ctx: HostContext, pf: str, tmp_path: Path
) -> None:
    """The VF really moves to vfio-pci, then the last check fails (its /dev/vfio node is
    looked for where there is none): qtagent puts it back on igbvf, override cleared."""
    set_vf_count(ctx, pf, 1)
    vf = ctx.pf(pf, settings=False).vf(0)
    binder = PciBinder(ctx.writer, dev_root=tmp_path / "no-dev", confirm_timeout_s=1.0)
    with pytest.raises(KernelError, match="did not appear"):
        binder.to_vfio(vf, remember=lambda _d: None)
    after = ctx.pf(pf, settings=False).vf(0)
    assert after.driver == "igbvf" and after.netdev is not None
    override = SYS / "bus/pci/devices" / str(vf.address) / "driver_override"
    assert override.read_text().strip() in ("", "(null)")


def test_c10_renaming_the_pf_changes_only_the_shown_name(ctx: HostContext, pf: str) -> None:
    set_vf_count(ctx, pf, 1)
    before = ctx.pf(pf)
    assert before.netdev is not None
    subprocess.run(["ip", "link", "set", before.netdev, "down"], check=True)
    subprocess.run(["ip", "link", "set", before.netdev, "name", "qtrenamed0"], check=True)
    try:
        after = ctx.pf(pf)
        assert after.netdev == "qtrenamed0" and after.name == before.name
        assert after.vf(0).id == before.vf(0).id
        assert ctx.snapshot().pf("qtrenamed0").name == pf
        with pytest.raises(NotFound):
            ctx.snapshot().pf(before.netdev)
    finally:
        subprocess.run(["ip", "link", "set", "qtrenamed0", "name", before.netdev], check=True)
        subprocess.run(["ip", "link", "set", before.netdev, "up"], check=True)


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qtagent.cli", "--db", str(db), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_cli_pf_list_shows_both_igb_pfs_and_netdevsim(tmp_path: Path) -> None:
    done = cli(tmp_path / "q.db", "--json", "pf", "list")
    assert done.returncode == 0, done.stderr
    pfs = json.loads(done.stdout)
    igb = [p for p in pfs if p["driver"] == "igb"]
    assert len(igb) == 2
    assert {(p["vendor_id"], p["device_id"], p["total_vfs"]) for p in igb} == {("8086", "10c9", 7)}
    assert sorted(p["numa_node"] for p in igb) == [0, 1]
    if NSIM.is_dir():
        assert any(p["bus"] == "netdevsim" for p in pfs)


def test_cli_set_vfs_then_vf_list_reads_back_from_the_kernel(tmp_path: Path) -> None:
    pf = igb_pf()
    db = tmp_path / "q.db"
    try:
        done = cli(db, "pf", "set-vfs", pf, "3")
        assert done.returncode == 0, done.stderr
        done = cli(db, "vf", "set", pf, "1", "--vlan", "42", "--spoofchk", "off")
        assert done.returncode == 0, done.stderr
        assert "applied" in done.stdout
        vfs = json.loads(cli(db, "--json", "vf", "list", pf).stdout)
        assert len(vfs) == 3
        for vf in vfs:
            assert vf["driver"] == "igbvf" and vf["iommu_group"] is not None
        vf1 = next(v for v in vfs if v["index"] == 1)
        assert vf1["vlan"] == 42 and vf1["spoofchk"] is False
        shown = subprocess.run(
            ["ip", "-j", "link", "show", pf_netdev(pf)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        kernel_vf1 = next(v for v in json.loads(shown.stdout)[0]["vfinfo_list"] if v["vf"] == 1)
        assert kernel_vf1["vlan_list"][0]["vlan"] == 42
        bad = cli(db, "pf", "set-vfs", pf, "9")
        assert bad.returncode == 2 and "at most 7" in bad.stderr and numvfs(pf) == 3
    finally:
        cli(db, "pf", "set-vfs", pf, "0")


def pf_netdev(pf: str) -> str:
    return next((SYS / "bus/pci/devices" / pf / "net").iterdir()).name

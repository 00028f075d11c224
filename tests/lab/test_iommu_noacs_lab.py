"""FIELD-CASES C7 on the real kernel: a VF in its PF's IOMMU group is refused.

Needs the lab booted without ACS on the root ports (`make test-lab` does it in a
second, short boot), where the kernel puts each VF in one IOMMU group with its
PF (on igb) and the root port (a bridge)::

    qtagent lab run --no-acs -- python -m pytest -p no:cacheprovider \
        tests/lab/test_iommu_noacs_lab.py -q -rs

The group is read independently from /sys/kernel/iommu_groups; the refusal goes
through the CLI as a sysadmin would meet it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.lab.guestvm import wait_for_libvirt
from qtagent.ops.context import HostContext, HostPaths
from qtagent.ops.provision import set_vf_count
from qtagent.virt.domain_xml import DomainSpec, domain_xml
from qtagent.virt.libvirt_backend import LibvirtBackend
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS, URI, driver_of

VM = "qt-noacs"
CONFLICT_EXIT = 4

pytestmark = [
    *IN_LAB_GUEST,
    pytest.mark.skipif(
        os.environ.get("QTAGENT_LAB_ACS") != "off",
        reason="needs the lab booted with --no-acs (make test-lab runs it in its own boot)",
    ),
    pytest.mark.timeout(900),
]


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qtagent.cli", "--db", str(db), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def group_members(address: str) -> set[str]:
    """The IOMMU group of ``address`` as the kernel lists it."""
    group = (SYS / "bus/pci/devices" / address / "iommu_group").resolve()
    return {p.name for p in (group / "devices").iterdir()}


def is_bridge(address: str) -> bool:
    return (SYS / "bus/pci/devices" / address / "class").read_text().startswith("0x0604")


@pytest.fixture(scope="module")
def pf_and_vf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """Two VFs on the first igb PF; yields (PF address, VF0 address, database)."""
    db = tmp_path_factory.mktemp("noacs") / "qtagent.db"
    ctx = HostContext(HostPaths(db_path=db))
    pf = sorted(p.name for p in IGB.glob("0000:*"))[0]
    set_vf_count(ctx, pf, 2)
    vf0 = os.readlink(SYS / "bus/pci/devices" / pf / "virtfn0").rpartition("/")[2]
    yield pf, vf0, db
    set_vf_count(ctx, pf, 0)
    ctx.close()


def test_without_acs_the_kernel_puts_the_vf_in_its_pfs_group(
    pf_and_vf: tuple[str, str, Path],
) -> None:
    pf, vf0, _ = pf_and_vf
    members = group_members(vf0)
    assert {pf, vf0} <= members
    assert any(is_bridge(m) for m in members), members  # the root port
    assert driver_of(pf) == "igb"


def test_qtagent_reads_the_shared_group_and_its_bridge(pf_and_vf: tuple[str, str, Path]) -> None:
    pf, vf0, db = pf_and_vf
    ctx = HostContext(HostPaths(db_path=db))
    try:
        vf = ctx.pf(pf, settings=False).vf(0)
        assert vf.iommu_group is not None
        assert {str(a) for a, _ in vf.iommu_group.members} == group_members(vf0)
        assert dict((str(a), d) for a, d in vf.iommu_group.members)[pf] == "igb"
        assert {str(b) for b in vf.iommu_group.bridges} == {
            m for m in group_members(vf0) if is_bridge(m)
        }
    finally:
        ctx.close()


def test_c7_vf_bind_is_refused_naming_the_pf_and_nothing_is_unbound(
    pf_and_vf: tuple[str, str, Path],
) -> None:
    pf, vf0, db = pf_and_vf
    done = cli(db, "vf", "bind", pf, "0", "--driver", "vfio-pci")
    assert done.returncode == CONFLICT_EXIT, done.stderr
    assert "not viable" in done.stderr and f"{pf} (driver igb)" in done.stderr
    # The bridge is not named: bridges in a group do not count.
    bridges = [m for m in group_members(vf0) if is_bridge(m)]
    assert bridges and not any(b in done.stderr for b in bridges)
    assert driver_of(vf0) == "igbvf" and driver_of(pf) == "igb"


def test_c7_vm_attach_is_refused_before_anything_changes(
    pf_and_vf: tuple[str, str, Path],
) -> None:
    pf, vf0, db = pf_and_vf
    wait_for_libvirt(URI)
    virt = LibvirtBackend(URI)
    virt.define_and_start(domain_xml(DomainSpec(name=VM)), paused=True)
    try:
        done = cli(db, "vm", "attach", VM, pf, "--index", "0", "--mac", "52:54:00:c7:00:01")
        assert done.returncode == CONFLICT_EXIT, done.stderr
        assert "not viable" in done.stderr and f"{pf} (driver igb)" in done.stderr
        assert driver_of(vf0) == "igbvf" and driver_of(pf) == "igb"
        assert virt.hostdev_addresses(VM) == ()
        ctx = HostContext(HostPaths(db_path=db))
        try:
            assert ctx.store.allocations() == ()
        finally:
            ctx.close()
    finally:
        virt.destroy(VM)

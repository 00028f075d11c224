"""FIELD-CASES C1 and C3: writes in order, waiting for late VFs, partial creation."""

import dataclasses
import errno
import threading
from pathlib import Path

import pytest

from qtagent.effects.vfcount import WaitPolicy, apply_vf_count
from qtagent.errors import KernelError, NotFound, QtagentError, Timeout, from_os_error
from qtagent.model.host import PfInfo
from qtagent.plan.vfcount import VfCountPlan
from qtagent.sysfs.writer import SysfsWriter, numvfs_hint
from tests.unit.factories import PF_ADDR, make_pf, make_vf


class RecordingWriter(SysfsWriter):
    """Records sriov_numvfs writes; can fail one with an errno or block forever."""

    def __init__(self, fail_with: int | None = None, block: bool = False) -> None:
        super().__init__(Path("/nonexistent"))
        self.counts: list[int] = []
        self.fail_with = fail_with
        self.block = block

    def write_num_vfs(self, pf_name: str, count: int) -> None:
        if self.block:
            threading.Event().wait(5)
        if self.fail_with is not None:
            # The same mapping as the real write: errno and hint from the kernel's answer.
            err = OSError(self.fail_with, "injected")
            raise from_os_error(err, f"echo {count} > sriov_numvfs", hint=numvfs_hint(err))
        self.counts.append(count)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_writes_zero_then_new_count_and_sees_every_vf() -> None:
    writer = RecordingWriter()
    plan = VfCountPlan(PF_ADDR, 4, 6, (0, 6))
    result = apply_vf_count(plan, writer, lambda: make_pf(6))
    assert writer.counts == [0, 6]
    assert result.ready == tuple(range(6)) and not result.partial


def test_waits_for_vfs_that_appear_late() -> None:
    clock = FakeClock()
    # sriov_numvfs reads 4 as soon as the write returns; the VFs come over time.
    snapshots = iter([dataclasses.replace(make_pf(4), vfs=make_pf(k).vfs) for k in (0, 2, 4)])
    last: list[PfInfo] = []

    def read_pf() -> PfInfo:
        last[:] = [next(snapshots, last[0] if last else make_pf(4))]
        return last[0]

    result = apply_vf_count(
        VfCountPlan(PF_ADDR, 0, 4, (4,)), RecordingWriter(), read_pf, clock=clock, sleep=clock.sleep
    )
    assert not result.partial and result.ready == (0, 1, 2, 3)
    assert result.waited_s == pytest.approx(0.2)


def test_a_vf_without_netdev_is_named_as_missing_after_the_bound() -> None:
    clock = FakeClock()
    pf = make_pf(3)
    vfs = list(pf.vfs)
    vfs[1] = make_vf(1, netdev=False)
    stuck = dataclasses.replace(pf, vfs=tuple(vfs))
    policy = WaitPolicy(base_s=1.0, per_vf_s=1.0, poll_s=0.5)
    result = apply_vf_count(
        VfCountPlan(PF_ADDR, 0, 3, (3,)), RecordingWriter(), lambda: stuck,
        policy=policy, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert result.partial
    assert result.ready == (0, 2)
    assert result.missing == ((1, "driver igbvf has not created its network interface"),)
    assert clock.now >= policy.bound(3)


def test_unbound_vf_is_missing_but_vfio_vf_without_netdev_is_ready() -> None:
    pf = make_pf(2)
    vfs = (make_vf(0, driver=None), make_vf(1, driver="vfio-pci"))
    clock = FakeClock()
    result = apply_vf_count(
        VfCountPlan(PF_ADDR, 0, 2, (2,)), RecordingWriter(),
        lambda: dataclasses.replace(pf, vfs=vfs),
        policy=WaitPolicy(base_s=0.5, per_vf_s=0), clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert result.missing == ((0, "no driver bound"),)
    assert result.ready == (1,)


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"driver": None}, "the PF lost its driver"), ({"num_vfs": 2}, "sriov_numvfs now reads 2")],
)
def test_the_wait_ends_at_once_when_the_vfs_cannot_come(
    change: dict[str, object], reason: str
) -> None:
    """An unbind of the PF under way (or another count written) takes the VFs away:
    waiting out the bound would stall the daemon for half a minute (lab, PF unbind)."""
    clock = FakeClock()
    gone = dataclasses.replace(make_pf(0), **change)  # type: ignore[arg-type]
    result = apply_vf_count(
        VfCountPlan(PF_ADDR, 0, 3, (3,)), RecordingWriter(), lambda: gone,
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert [index for index, _ in result.missing] == [0, 1, 2]
    assert all(reason in why for _, why in result.missing)
    assert clock.now == 0.0


@pytest.mark.parametrize(
    ("code", "kind", "hint"),
    [(errno.ENOSPC, KernelError, "ran out of resources"), (errno.ENOENT, NotFound, "no driver")],
)
def test_enospc_and_enoent_are_distinct_explained_errors(
    code: int, kind: type[QtagentError], hint: str
) -> None:
    writer = RecordingWriter(fail_with=code)
    with pytest.raises(kind) as info:
        apply_vf_count(VfCountPlan(PF_ADDR, 0, 4, (4,)), writer, lambda: make_pf(4))
    assert hint in info.value.hint
    assert info.value.errno == code
    assert writer.counts == []


def test_a_write_that_blocks_times_out() -> None:
    writer = RecordingWriter(block=True)
    with pytest.raises(Timeout, match="has not returned"):
        apply_vf_count(
            VfCountPlan(PF_ADDR, 2, 0, (0,)), writer, lambda: make_pf(0),
            policy=WaitPolicy(write_timeout_s=0.2),
        )  # fmt: skip

"""FIELD-CASES C1 and C2 as pure planning: what gets written, and what is refused."""

import pytest

from qtagent.errors import Conflict, InvalidInput, Unsupported
from qtagent.model.host import PfBus
from qtagent.model.types import VfId
from qtagent.plan.vfcount import plan_vf_count
from tests.unit.factories import PF_ADDR, make_pf


def test_same_count_writes_nothing() -> None:
    assert plan_vf_count(make_pf(4), 4, {}).writes == ()


def test_growing_from_zero_is_one_write() -> None:
    assert plan_vf_count(make_pf(0), 4, {}).writes == (4,)


def test_changing_a_nonzero_count_goes_through_zero() -> None:
    plan = plan_vf_count(make_pf(4), 6, {})
    assert plan.writes == (0, 6)
    assert plan.destroys_vfs


def test_above_totalvfs_is_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidInput, match="at most 7 VFs"):
        plan_vf_count(make_pf(0), 8, {})


def test_negative_count_is_refused() -> None:
    with pytest.raises(InvalidInput):
        plan_vf_count(make_pf(0), -1, {})


@pytest.mark.parametrize("desired", [6, 0])
def test_change_with_an_allocated_vf_is_refused_naming_vf_and_vm(desired: int) -> None:
    allocations = {VfId(PF_ADDR, 2): "a", VfId("0000:81:00.0", 1): "other-pf"}
    with pytest.raises(Conflict, match=r"VF2 \(VM 'a'\)") as info:
        plan_vf_count(make_pf(4), desired, allocations)
    assert "other-pf" not in str(info.value)


def test_allocations_on_another_pf_do_not_block() -> None:
    assert plan_vf_count(make_pf(4), 0, {VfId("0000:81:00.0", 1): "b"}).writes == (0,)


def test_pf_without_driver_gets_no_write() -> None:
    with pytest.raises(Unsupported, match="no driver"):
        plan_vf_count(make_pf(0, driver=None), 2, {})


def test_pf_without_netdev_gets_no_write() -> None:
    with pytest.raises(Unsupported, match="no network interface"):
        plan_vf_count(make_pf(0, netdev=None), 2, {})


def test_netdevsim_above_max_vfs_is_refused_naming_the_limit() -> None:
    pf = make_pf(0, total_vfs=8, bus=PfBus.NETDEVSIM)
    with pytest.raises(InvalidInput, match="at most 8 VFs; 9 were asked for") as info:
        plan_vf_count(pf, 9, {})
    assert "ask for 0 to 8" in info.value.hint and "max_vfs" in info.value.hint


def test_netdevsim_up_to_max_vfs_is_planned() -> None:
    assert plan_vf_count(make_pf(0, total_vfs=8, bus=PfBus.NETDEVSIM), 8, {}).writes == (8,)

"""VF knobs learned from the driver's answers (issue 3): a knob the driver answered
EOPNOTSUPP is not sent again, the request says why at once, and `pf list` shows what
each PF's driver has and lacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtagent.cli.views import capability_line
from qtagent.model.host import LinkState
from qtagent.netlink.api import Knob
from qtagent.ops.program import set_vf_knobs
from qtagent.plan.knob_report import KnobOutcome
from qtagent.plan.knobs import KnobRequest
from qtagent.store.capabilities import CapabilityTable
from tests.fakes.host_rig import FakeHostRig
from tests.fakes.sysfs_tree import igb_host
from tests.unit.test_cli import run_on


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FakeHostRig]:
    rig = FakeHostRig.build(tmp_path, igb_host(n_vfs=2))
    yield rig
    rig.ctx.close()


def test_a_knob_the_driver_lacks_is_learned_then_refused_without_a_send(rig: FakeHostRig) -> None:
    first = set_vf_knobs(rig.ctx, rig.pf_name, 0, KnobRequest(link_state=LinkState.ENABLE))
    assert first.result(Knob.LINK_STATE).outcome is KnobOutcome.UNSUPPORTED
    sent = len(rig.netlink.sent)
    assert [c.knob for c in CapabilityTable(rig.ctx.store).of("igb") if not c.supported] == [
        Knob.LINK_STATE
    ]

    code, out, err = run_on(rig, "--json", "vf", "set", rig.pf_name, "1", "--link-state", "enable")

    assert code == 5, err
    assert len(rig.netlink.sent) == sent  # nothing went over netlink this time
    (link,) = [k for k in json.loads(out)["knobs"] if k["knob"] == "link_state"]
    assert link["outcome"] == "unsupported" and "igb answered EOPNOTSUPP" in link["reason"]


def test_pf_list_shows_what_the_driver_has_and_lacks(rig: FakeHostRig) -> None:
    request = KnobRequest(link_state=LinkState.ENABLE, trust=True, required=frozenset())
    set_vf_knobs(rig.ctx, rig.pf_name, 0, request)

    code, out, _ = run_on(rig, "--json", "pf", "list")

    assert code == 0
    (pf,) = json.loads(out)
    assert pf["vf_knobs"] == {"supported": ["trust"], "unsupported": {"link_state": "EOPNOTSUPP"}}
    assert "igb: has trust; lacks link_state (EOPNOTSUPP)" in capability_line(
        "igb", CapabilityTable(rig.ctx.store).of("igb")
    )

"""HostContext: edges handed in, and a context that can be shown before first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtagent.errors import InvalidInput
from qtagent.ops.context import HostContext, HostPaths
from qtagent.sysfs.writer import SysfsWriter
from tests.fakes.clock import FakeClock


def test_a_fresh_context_can_be_shown() -> None:
    """repr() before the first snapshot raised AttributeError (_settings_reader)."""
    assert "HostContext(paths=HostPaths(" in repr(HostContext())


def test_edges_given_are_used_and_the_clock_reaches_the_binder(tmp_path: Path) -> None:
    writer = SysfsWriter(tmp_path / "sys")
    clock = FakeClock()
    ctx = HostContext.with_edges(
        HostPaths(sysfs_root=tmp_path / "sys", dev_root=tmp_path / "dev"),
        writer=writer, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert ctx.writer is writer
    binder = ctx.binder
    assert binder.writer is writer and binder.dev_root == tmp_path / "dev"
    assert binder.clock is clock


def test_a_writer_for_another_tree_than_the_reads_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="the sysfs writer writes /sys, but reads come from"):
        HostContext.with_edges(HostPaths(sysfs_root=tmp_path), writer=SysfsWriter(Path("/sys")))

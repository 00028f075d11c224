"""Helpers shared by the CLI's command modules."""

from __future__ import annotations

from typing import ClassVar

import click

from qtagent.errors import InvalidInput
from qtagent.model.types import MacAddress, VfId
from qtagent.ops.context import HostContext


def host() -> HostContext:
    """The HostContext the top-level group opened for this invocation."""
    ctx: HostContext = click.get_current_context().meta["host"]
    return ctx


def holders(ctx: HostContext) -> dict[VfId, str]:
    """Which VM holds which VF; empty (and no database created) on a fresh host."""
    if not ctx.paths.db_path.exists():
        return {}
    return {a.vf: a.vm.name for a in ctx.store.allocations()}


class MacType(click.ParamType[MacAddress]):
    name = "MAC"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> MacAddress:
        if isinstance(value, MacAddress):
            return value
        try:
            return MacAddress.parse(str(value))
        except InvalidInput as err:
            self.fail(f"{err.message} ({err.hint})", param, ctx)


class OnOff(click.ParamType[bool]):
    """on/off (also true/false, yes/no, 1/0)."""

    name = "on|off"
    _values: ClassVar[dict[str, bool]] = {
        "on": True, "off": False, "true": True, "false": False, "yes": True, "no": False,
        "1": True, "0": False,
    }  # fmt: skip

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> bool:
        if isinstance(value, bool):
            return value
        try:
            return self._values[str(value).lower()]
        except KeyError:
            self.fail(f"{value!r} is not on or off", param, ctx)


MAC = MacType()
ON_OFF = OnOff()
VLAN = click.IntRange(0, 4094)
QOS = click.IntRange(0, 7)
RATE = click.IntRange(0, 10_000_000)

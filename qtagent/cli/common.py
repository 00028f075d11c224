"""Helpers shared by the CLI's command modules."""

from __future__ import annotations

import re
from typing import ClassVar, Final

import click

from qtagent.config import MAX_VFS
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


class WholeNumber(click.ParamType[int]):
    """A whole number in ASCII digits from 0 to ``maximum`` (None: no upper limit).

    Stricter than click's INT, which is Python's int() (it takes "+3", "1_0" and
    " 3 "); a refusal says what ``what`` must be.
    """

    name = "integer"
    _digits: Final = re.compile(r"[0-9]{1,10}")

    def __init__(self, what: str, maximum: int | None = None) -> None:
        self.what = what
        self.maximum = maximum

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        text = str(value)
        if self._digits.fullmatch(text) and (self.maximum is None or int(text) <= self.maximum):
            return int(text)
        upper = "up" if self.maximum is None else f"to {self.maximum}"
        self.fail(f"{self.what} must be a whole number from 0 {upper}, not {text!r}", param, ctx)


class NegativeNumbersAsValues(click.Command):
    """A command whose arguments may be given negative numbers ("-1").

    click takes "-1" for an unknown option and says "No such option: -1"; here such
    a token reaches the argument's type instead, which says what it must be. Any
    other unknown option stays an error ("No such option: --trsut").
    """

    _negative_number: Final = re.compile(r"-[0-9]+")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))  # click's parser consumes its list
        except click.NoSuchOption as err:
            if not self._negative_number.fullmatch(err.option_name):
                raise
        ctx.ignore_unknown_options = True  # the parse failed before it set anything
        return super().parse_args(ctx, args)


MAC = MacType()
ON_OFF = OnOff()
VLAN = click.IntRange(0, 4094)
QOS = click.IntRange(0, 7)
RATE = click.IntRange(0, 10_000_000)
VF_COUNT = WholeNumber("the VF count", maximum=MAX_VFS)
VF_INDEX = WholeNumber("the VF index")

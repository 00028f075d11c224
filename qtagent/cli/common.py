"""Helpers shared by the CLI's command modules."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Final

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
    """Which VM holds which VF; empty (and no database created) on a fresh host.

    Only reads: a database qtagent's user may not write is read read-only
    (:attr:`HostContext.store_for_reading`)."""
    store = ctx.store_for_reading
    if store is None:
        return {}
    return {a.vf: a.vm.name for a in store.allocations()}


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


class EnvTwinOption(click.Option):
    """An option whose environment twin counts once it is set, even to nothing.

    click reads an empty variable as unset and falls back to the default, so
    ``QTAGENT_DB=`` would silently mean the real database; here the empty value
    reaches the option's type, which refuses it. ``--help`` and error messages
    name the variable.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, **kwargs)

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        names = [self.envvar] if isinstance(self.envvar, str) else list(self.envvar or ())
        if not names and ctx.auto_envvar_prefix and self.name:
            names = [f"{ctx.auto_envvar_prefix}_{self.name.upper()}"]
        for name in names:
            if name in os.environ:
                return os.environ[name]
        return None


class NonEmptyPath(click.Path):
    """click's Path, refusing an empty value: ``Path("")`` is the current directory,
    never what was meant."""

    def __init__(self, what: str, **kwargs: Any) -> None:
        super().__init__(path_type=Path, **kwargs)
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if str(value) == "":
            self.fail(f"{self.what} is empty; give a path, or unset the variable", param, ctx)
        return super().convert(value, param, ctx)


class NonEmptyText(click.ParamType[str]):
    """Any text but the empty string (an empty libvirt URI means "guess one")."""

    name = "text"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text:
            self.fail(f"{self.what} is empty; give one, or unset the variable", param, ctx)
        return text


class PfName(click.ParamType[str]):
    """A PF's name: a PCI address, a netdevsim device or an interface name.

    None of these is empty or holds white space (the kernel refuses it in interface
    names), so such a value names no PF and is refused before anything is read.
    """

    name = "PF"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text:
            self.fail("the PF name is empty; give a PCI address or interface name", param, ctx)
        if any(c.isspace() for c in text):
            self.fail(f"{text!r} is not a PF name: it holds white space", param, ctx)
        return text


class Seconds(click.ParamType[float]):
    """A number of seconds from ``low`` to ``high``; NaN and infinity are refused
    (click's FloatRange lets NaN through: every comparison with it is false)."""

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float) and self.low <= value <= self.high:
            return value
        try:
            seconds = float(str(value))
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and self.low <= seconds <= self.high:
            return seconds
        self.fail(
            f"{value!r} is not a number of seconds from {self.low:g} to {self.high:g}", param, ctx
        )


MAC = MacType()
ON_OFF = OnOff()
VLAN = click.IntRange(0, 4094)
QOS = click.IntRange(0, 7)
RATE = click.IntRange(0, 10_000_000)
VF_COUNT = WholeNumber("the VF count", maximum=MAX_VFS)
VF_INDEX = WholeNumber("the VF index")
PF_NAME = PfName()

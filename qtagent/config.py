"""The declarative host config (`qtagent apply FILE`): per PF, its VF count and VF defaults.

    version = 1

    [pf."0000:41:00.0"]          # a PCI address, a netdevsim device or a netdev name
    num_vfs = 4
    vf_defaults = { spoofchk = true, trust = false, vlan = 0 }

    [pf.enp129s0]
    num_vfs = 2

The file is validated whole at load, into frozen dataclasses, before anything is
applied: an unknown key, a wrong type or a value out of range is an error that
names where it is and what is allowed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from qtagent.errors import ConfigError, InvalidInput
from qtagent.model.desired import VfDefaults
from qtagent.model.host import LinkState
from qtagent.model.types import check_vlan

SUPPORTED_VERSION: Final = 1
MAX_VFS: Final = 4096  # the PCIe SR-IOV capability's 16-bit TotalVFs, rounded down sanely
MAX_RATE_MBPS: Final = 10_000_000


@dataclass(frozen=True, slots=True)
class PfConfig:
    """What one PF should look like. ``name`` is as the operator wrote it."""

    name: str
    num_vfs: int
    vf_defaults: VfDefaults = field(default_factory=VfDefaults)


@dataclass(frozen=True, slots=True)
class HostConfig:
    pfs: tuple[PfConfig, ...] = ()


def load_host_config(path: Path) -> HostConfig:
    """Read and validate a host config file."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}", hint="check the path") from err
    return parse_host_config(raw, source=str(path))


def parse_host_config(raw: bytes, source: str = "<config>") -> HostConfig:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source} is not UTF-8 text", hint="save it as UTF-8") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{source} is not valid TOML: {err}", hint="fix the syntax there"
        ) from err
    _only_keys(data, {"version", "pf"}, source)
    version = data.get("version", SUPPORTED_VERSION)
    if version != SUPPORTED_VERSION:
        raise ConfigError(
            f"{source}: version {version!r} is not supported",
            hint=f"use version = {SUPPORTED_VERSION}",
        )
    pfs = data.get("pf", {})
    if not isinstance(pfs, dict):
        raise ConfigError(
            f"{source}: 'pf' must be a table of PFs", hint='write [pf."0000:41:00.0"]'
        )
    return HostConfig(tuple(_pf(name, body, f"{source}: pf.{name}") for name, body in pfs.items()))


def _pf(name: str, body: object, where: str) -> PfConfig:
    if not isinstance(body, dict):
        raise ConfigError(f"{where} must be a table", hint="give num_vfs and optional vf_defaults")
    _only_keys(body, {"num_vfs", "vf_defaults"}, where)
    if "num_vfs" not in body:
        raise ConfigError(
            f"{where}: num_vfs is missing", hint="say how many VFs the PF should have"
        )
    num_vfs = _int(body["num_vfs"], f"{where}.num_vfs", 0, MAX_VFS)
    defaults_raw = body.get("vf_defaults", {})
    if not isinstance(defaults_raw, dict):
        raise ConfigError(
            f"{where}.vf_defaults must be a table", hint="vf_defaults = { spoofchk = true }"
        )
    return PfConfig(name, num_vfs, _defaults(defaults_raw, f"{where}.vf_defaults"))


def _defaults(body: Mapping[str, Any], where: str) -> VfDefaults:
    _only_keys(body, set(VfDefaults.__slots__), where)
    vlan = _opt_int(body, "vlan", where, 0, 4094)
    qos = _opt_int(body, "qos", where, 0, 7)
    if vlan is not None or qos is not None:
        try:
            check_vlan(vlan or 0, qos or 0)
        except InvalidInput as err:
            raise ConfigError(f"{where}: {err.message}", hint=err.hint) from err
    link = body.get("link_state")
    if link is not None and link not in {s.value for s in LinkState}:
        raise ConfigError(
            f"{where}.link_state: {link!r} is not a link state", hint="auto, enable or disable"
        )
    return VfDefaults(
        vlan=vlan,
        qos=qos,
        spoofchk=_opt_bool(body, "spoofchk", where),
        trust=_opt_bool(body, "trust", where),
        max_tx_rate=_opt_int(body, "max_tx_rate", where, 0, MAX_RATE_MBPS),
        min_tx_rate=_opt_int(body, "min_tx_rate", where, 0, MAX_RATE_MBPS),
        link_state=LinkState(link) if link is not None else None,
    )


def _only_keys(body: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}",
            hint=f"allowed here: {', '.join(sorted(allowed))}",
        )


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{where} must be a whole number, not {value!r}", hint=f"use {low} to {high}"
        )
    if not low <= value <= high:
        raise ConfigError(f"{where} = {value} is out of range", hint=f"use {low} to {high}")
    return value


def _opt_int(body: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int | None:
    return None if key not in body else _int(body[key], f"{where}.{key}", low, high)


def _opt_bool(body: Mapping[str, Any], key: str, where: str) -> bool | None:
    if key not in body:
        return None
    if not isinstance(body[key], bool):
        raise ConfigError(f"{where}.{key} must be true or false, not {body[key]!r}")
    return bool(body[key])

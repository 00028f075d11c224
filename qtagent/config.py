"""The declarative host config (`qtagent apply FILE`): per PF, its VF count and VF defaults.

    version = 1

    [pf."0000:41:00.0"]          # a PCI address, a netdevsim device or a netdev name
    num_vfs = 4
    vf_defaults = { spoofchk = true, trust = false, vlan = 0 }

    [pf.enp129s0]
    num_vfs = 2

The file is validated whole at load, into frozen dataclasses, before anything is
applied: an unknown key, a wrong type or a value out of range is an error that
names where it is (file, PF section, key), what it holds and what is allowed,
in the file's own terms (TOML keys, not command-line flags).

Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read: a device, a FIFO
or a directory is refused without reading from it, and the open does not wait for
a FIFO's writer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from qtagent.errors import ConfigError
from qtagent.model.desired import DriftPolicy, VfDefaults
from qtagent.model.host import LinkState
from qtagent.model.types import QOS_MAX, VLAN_MAX
from qtagent.tomlfile import (
    FileKind,
    boolean,
    describe,
    only_keys,
    parse_toml,
    read_regular_file,
    shown,
    whole_number,
)

SUPPORTED_VERSION: Final = 1
MAX_VFS: Final = 4096  # the PCIe SR-IOV capability's 16-bit TotalVFs, rounded down sanely
MAX_RATE_MBPS: Final = 10_000_000
MAX_CONFIG_BYTES: Final = 1 << 20  # 1 MiB: a host config is a few lines per PF
MAX_PF_NAME: Final = 64  # a PCI address, netdevsimN or a netdev name (15) are far shorter
HOST_CONFIG: Final = FileKind(
    "host config",
    MAX_CONFIG_BYTES,
    looks_like="a host config is a few lines per PF",
    nests="[pf.NAME] and vf_defaults = { ... }",
    numbers="VF counts, VLAN ids and rates",
)
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_LINK_STATES: Final = tuple(state.value for state in LinkState)
_ALLOWED_LINK_STATES: Final = '"auto", "enable" or "disable"'
_PF_NAME_HINT: Final = (
    'name a PF by its PCI address ("0000:41:00.0"), netdevsim device (netdevsim1) or '
    "interface name (enp65s0), as `qtagent pf list` shows them"
)


@dataclass(frozen=True, slots=True)
class PfConfig:
    """What one PF should look like. ``name`` is as the operator wrote it."""

    name: str
    num_vfs: int
    vf_defaults: VfDefaults = field(default_factory=VfDefaults)
    drift: DriftPolicy = DriftPolicy.REPAIR


@dataclass(frozen=True, slots=True)
class HostConfig:
    pfs: tuple[PfConfig, ...] = ()


# ---------------------------------------------------------------- reading the file


def load_host_config(path: Path) -> HostConfig:
    """Read and validate a host config file."""
    return parse_host_config(read_config_file(path), source=str(path))


def read_config_file(path: Path) -> bytes:
    """The bytes of ``path``, a regular file of at most :data:`MAX_CONFIG_BYTES` (and
    one byte more, so that the parser can say it is too large)."""
    return read_regular_file(path, HOST_CONFIG)


# ---------------------------------------------------------------- parsing


def parse_host_config(raw: bytes, source: str = "<config>") -> HostConfig:
    """Validate a host config's bytes; ``source`` names the file in messages."""
    data = parse_toml(raw, source, HOST_CONFIG)
    only_keys(data, {"version", "pf"}, source)
    _check_version(data.get("version", SUPPORTED_VERSION), source)
    pfs = data.get("pf", {})
    if not isinstance(pfs, dict):
        raise ConfigError(
            f"{source}: pf must be a table of PFs, not {describe(pfs)}",
            hint='write one section per PF: [pf."0000:41:00.0"] and below it num_vfs = 4',
        )
    return HostConfig(tuple(_pf(name, body, source) for name, body in pfs.items()))


def _check_version(version: object, source: str) -> None:
    if version == SUPPORTED_VERSION and isinstance(version, int) and not isinstance(version, bool):
        return
    raise ConfigError(
        f"{source}: version {shown(version)} is not supported",
        hint=f"write version = {SUPPORTED_VERSION} (a whole number, no quotes), or leave it out",
    )


def _pf(name: str, body: object, source: str) -> PfConfig:
    where = f"{source}, {pf_section(name)}"
    _check_pf_name(name, where)
    if not isinstance(body, dict):
        raise ConfigError(
            f"{where} must be a table, not {describe(body)}",
            hint=f"write it as a section: {pf_section(name)} and below it num_vfs = N",
        )
    only_keys(body, {"num_vfs", "vf_defaults", "drift"}, where)
    if "num_vfs" not in body:
        raise ConfigError(
            f"{where}: num_vfs is missing",
            hint="add num_vfs = N: how many VFs the PF should have (0 for none)",
        )
    num_vfs = whole_number(body["num_vfs"], "num_vfs", where, (0, MAX_VFS))
    defaults = body.get("vf_defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(
            f"{where}: vf_defaults must be a table, not {describe(defaults)}",
            hint="write vf_defaults = { spoofchk = true, vlan = 10 } in the PF's section",
        )
    return PfConfig(name, num_vfs, _defaults(defaults, where), _drift(body, where))


def _drift(body: Mapping[str, Any], where: str) -> DriftPolicy:
    value = body.get("drift", DriftPolicy.REPAIR.value)
    if isinstance(value, str) and value in {p.value for p in DriftPolicy}:
        return DriftPolicy(value)
    raise ConfigError(
        f"{where}: drift = {shown(value)} is not a drift policy",
        hint='write drift = "repair" (put drift back where safe, the default) or '
        'drift = "report" (only say so)',
    )


def _check_pf_name(name: str, where: str) -> None:
    if 0 < len(name) <= MAX_PF_NAME and all(c.isprintable() and not c.isspace() for c in name):
        return
    raise ConfigError(f"{where}: {shown(name)} is not a PF name", hint=_PF_NAME_HINT)


def _defaults(body: Mapping[str, Any], where: str) -> VfDefaults:
    only_keys(body, set(VfDefaults.__slots__), where, section="vf_defaults")
    vlan = _opt_int(body, "vlan", where, (0, VLAN_MAX), "0 is untagged")
    qos = _opt_int(body, "qos", where, (0, QOS_MAX), "the 802.1p priority; needs a vlan")
    if qos and not vlan:
        raise ConfigError(
            f"{where}: QoS needs a VLAN: vf_defaults.qos = {qos} but vf_defaults.vlan is "
            + ("0 (untagged)" if vlan == 0 else "not set"),
            hint="set vf_defaults.vlan to a VLAN id (1 to 4094) with vf_defaults.qos, "
            "or set vf_defaults.qos = 0",
        )
    max_rate = _opt_int(body, "max_tx_rate", where, (0, MAX_RATE_MBPS), "Mbit/s, 0 for no limit")
    min_rate = _opt_int(body, "min_tx_rate", where, (0, MAX_RATE_MBPS), "Mbit/s, 0 for none")
    _check_rates(max_rate, min_rate, where)
    return VfDefaults(
        vlan=vlan,
        qos=qos,
        spoofchk=_opt_bool(body, "spoofchk", where),
        trust=_opt_bool(body, "trust", where),
        max_tx_rate=max_rate,
        min_tx_rate=min_rate,
        link_state=_opt_link_state(body, where),
    )


def _check_rates(max_rate: int | None, min_rate: int | None, where: str) -> None:
    """A guaranteed rate above the limit is refused by every driver (max 0: no limit)."""
    if max_rate and min_rate and min_rate > max_rate:
        raise ConfigError(
            f"{where}: vf_defaults.min_tx_rate = {min_rate} is above "
            f"vf_defaults.max_tx_rate = {max_rate} (Mbit/s)",
            hint=f"the guaranteed rate cannot exceed the limit: lower min_tx_rate to at most "
            f"{max_rate}, raise max_tx_rate to at least {min_rate}, or set max_tx_rate = 0 "
            "(no limit)",
        )


def _opt_link_state(body: Mapping[str, Any], where: str) -> LinkState | None:
    if "link_state" not in body:
        return None
    value = body["link_state"]
    hint = f"write link_state = {_ALLOWED_LINK_STATES}"
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: vf_defaults.link_state must be one of {_ALLOWED_LINK_STATES}, "
            f"not {describe(value)}",
            hint=hint,
        )
    if value not in _LINK_STATES:
        raise ConfigError(
            f"{where}: vf_defaults.link_state = {shown(value)} is not a link state", hint=hint
        )
    return LinkState(value)


def _opt_int(
    body: Mapping[str, Any], key: str, where: str, bounds: tuple[int, int], about: str
) -> int | None:
    if key not in body:
        return None
    return whole_number(body[key], f"vf_defaults.{key}", where, bounds, about)


def _opt_bool(body: Mapping[str, Any], key: str, where: str) -> bool | None:
    if key not in body:
        return None
    return boolean(body[key], f"vf_defaults.{key}", where)


def pf_section(name: str) -> str:
    """The section header of PF ``name`` as a config file writes it: ``[pf.enp65s0]``,
    ``[pf."0000:41:00.0"]`` (quoted where TOML needs quotes)."""
    return f"[pf.{name if _BARE_KEY.fullmatch(name) else shown(name)}]"

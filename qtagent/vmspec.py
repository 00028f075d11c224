"""A VM spec (`qtagent vm create SPEC`): the VM libvirt runs and the VFs it asks for.

    name = "web1"
    vcpus = 2
    memory_mib = 512

    [boot]                       # a kernel booted directly ...
    kernel = "/var/lib/qtagent/images/vmlinuz"
    initrd = "/var/lib/qtagent/images/initrd.img"
    cmdline = "console=ttyS0"
    # disk = "/var/lib/libvirt/images/web1.qcow2"   # ... or a disk image

    [numa]                       # optional: where the VM runs, and its VFs come from
    node = 0
    policy = "required"          # "required", "preferred" or "ignore"

    [[nic]]                      # one per VF the VM gets
    mac = "52:54:00:12:34:56"
    pf = "0000:81:00.0"          # optional: any PF with a free VF
    vlan = 100
    qos = 0
    spoofchk = true
    trust = false
    max_tx_rate = 1000           # Mbit/s, 0 for no limit
    min_tx_rate = 0

Validated whole at load into a frozen :class:`VmSpec` before anything is done, with
the same rules and messages as the host config (:mod:`qtagent.tomlfile`): every
error names the file, the section and the key, what it holds and what is allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from qtagent.errors import ConfigError, InvalidInput
from qtagent.model.types import QOS_MAX, VLAN_MAX, MacAddress, check_vm_name
from qtagent.plan.knobs import KnobRequest
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

MAX_SPEC_BYTES: Final = 64 << 10  # a spec is a few dozen lines
MAX_NICS: Final = 16  # VF NICs one VM may ask for (each takes a PCI slot)
MAX_VCPUS: Final = 1024
MEMORY_MIB: Final = (16, 1 << 22)  # 16 MiB to 4 TiB
MAX_NUMA_NODE: Final = 1023
MAX_RATE_MBPS: Final = 10_000_000
MAX_PATH: Final = 4096
MAX_CMDLINE: Final = 4096
VM_SPEC: Final = FileKind(
    "VM spec",
    MAX_SPEC_BYTES,
    looks_like="a VM spec is a few dozen lines",
    nests="[boot], [numa] and [[nic]] sections",
    numbers="vCPUs, memory, VLAN ids and rates",
)
_NIC_KEYS: Final = {"mac", "pf", "vlan", "qos", "spoofchk", "trust", "max_tx_rate", "min_tx_rate"}


class NumaPolicy(enum.StrEnum):
    """Where a pinned VM's VFs come from: only PFs on its node (``required``), those
    first (``preferred``), or any (``ignore``)."""

    REQUIRED = "required"
    PREFERRED = "preferred"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class KernelBoot:
    """Boot a kernel directly (paths on this host, where QEMU runs)."""

    kernel: PurePosixPath
    initrd: PurePosixPath | None = None
    cmdline: str | None = None


@dataclass(frozen=True, slots=True)
class DiskBoot:
    """Boot from a disk image (a path on this host); ``format`` as qemu-img names it."""

    image: PurePosixPath
    format: Literal["qcow2", "raw"] = "qcow2"


@dataclass(frozen=True, slots=True)
class NicRequest:
    """One VF the VM asks for, and the knobs set on it before the VM gets it (their
    ``mac`` is always given; a knob left None is left as the PF's defaults have it).

    ``pf`` None: any PF with a free VF (on the VM's NUMA node, as its policy says)."""

    knobs: KnobRequest
    pf: str | None = None

    @property
    def mac(self) -> MacAddress:
        assert self.knobs.mac is not None  # the parser requires it
        return self.knobs.mac


@dataclass(frozen=True, slots=True)
class VmSpec:
    name: str
    vcpus: int
    memory_mib: int
    boot: KernelBoot | DiskBoot
    nics: tuple[NicRequest, ...] = ()
    numa_node: int | None = None
    numa_policy: NumaPolicy = NumaPolicy.IGNORE


def load_vm_spec(path: Path) -> VmSpec:
    """Read and validate a VM spec file."""
    return parse_vm_spec(read_regular_file(path, VM_SPEC), source=str(path))


def parse_vm_spec(raw: bytes, source: str = "<vm spec>") -> VmSpec:
    """Validate a VM spec's bytes; ``source`` names the file in messages."""
    data = parse_toml(raw, source, VM_SPEC)
    only_keys(data, {"name", "vcpus", "memory_mib", "boot", "numa", "nic"}, source)
    name = _name(data, source)
    vcpus = whole_number(data.get("vcpus", 1), "vcpus", source, (1, MAX_VCPUS))
    memory = whole_number(data.get("memory_mib", 512), "memory_mib", source, MEMORY_MIB, "MiB")
    node, policy = _numa(_table(data, "numa", source, required=False), source)
    nic_bodies = data.get("nic", [])
    if not isinstance(nic_bodies, list) or not all(isinstance(n, dict) for n in nic_bodies):
        raise ConfigError(
            f"{source}: nic must be [[nic]] sections, not {describe(nic_bodies)}",
            hint='write one [[nic]] section per VF, with mac = "52:54:00:..." in each',
        )
    if len(nic_bodies) > MAX_NICS:
        raise ConfigError(
            f"{source}: {len(nic_bodies)} [[nic]] sections; a VM may have at most {MAX_NICS}",
            hint="give the VM fewer VFs",
        )
    nics = tuple(_nic(body, f"{source}, [[nic]] {n}") for n, body in enumerate(nic_bodies, 1))
    _check_unique_macs(nics, source)
    boot = _boot(_table(data, "boot", source, required=True), f"{source}, [boot]")
    return VmSpec(name, vcpus, memory, boot, nics, node, policy)


def _name(data: Mapping[str, Any], source: str) -> str:
    if "name" not in data:
        raise ConfigError(f"{source}: name is missing", hint='add name = "web1": the VM\'s name')
    value = data["name"]
    if not isinstance(value, str):
        raise ConfigError(
            f"{source}: name must be a string, not {describe(value)}",
            hint='write name = "web1" (in quotes)',
        )
    try:
        check_vm_name(value)
    except InvalidInput as err:
        raise ConfigError(
            f"{source}: name = {shown(value)}: {err.message}", hint=err.hint
        ) from None
    return value


def _table(data: Mapping[str, Any], key: str, source: str, *, required: bool) -> dict[str, Any]:
    if key not in data:
        if required:
            raise ConfigError(
                f"{source}: [{key}] is missing",
                hint='add a [boot] section with kernel = "/path/to/vmlinuz" or '
                'disk = "/path/to/image.qcow2"',
            )
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise ConfigError(
            f"{source}: {key} must be a [{key}] section, not {describe(value)}",
            hint=f"write it as a section: [{key}] and its keys below it",
        )
    return value


def _boot(body: Mapping[str, Any], where: str) -> KernelBoot | DiskBoot:
    only_keys(body, {"kernel", "initrd", "cmdline", "disk", "format"}, where)
    if ("kernel" in body) == ("disk" in body):
        raise ConfigError(
            f"{where}: give either kernel or disk" + (", not both" if "kernel" in body else ""),
            hint='kernel = "/path/to/vmlinuz" boots a kernel directly; '
            'disk = "/path/to/image.qcow2" boots a disk image',
        )
    if "disk" in body:
        only_keys(body, {"disk", "format"}, where)
        fmt = body.get("format", "qcow2")
        if fmt not in ("qcow2", "raw"):
            raise ConfigError(
                f"{where}: format = {shown(fmt)} is not a disk format",
                hint='write format = "qcow2" or format = "raw"',
            )
        return DiskBoot(_path(body["disk"], "disk", where), fmt)
    only_keys(body, {"kernel", "initrd", "cmdline"}, where)
    initrd = _path(body["initrd"], "initrd", where) if "initrd" in body else None
    cmdline = body.get("cmdline")
    if cmdline is not None:
        cmdline = _text(cmdline, "cmdline", where, MAX_CMDLINE)
    return KernelBoot(_path(body["kernel"], "kernel", where), initrd, cmdline)


def _path(value: object, key: str, where: str) -> PurePosixPath:
    text = _text(value, key, where, MAX_PATH)
    if not text.startswith("/"):
        raise ConfigError(
            f"{where}: {key} = {shown(text)} is not an absolute path",
            hint=f"give the full path of the {key} on this host, starting with /",
        )
    return PurePosixPath(text)


def _text(value: object, key: str, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: {key} must be a string, not {describe(value)}",
            hint=f'write {key} = "..." (in quotes)',
        )
    if not value or len(value) > limit or not value.isprintable():
        raise ConfigError(
            f"{where}: {key} = {shown(value)} must be 1 to {limit} printable characters",
            hint="no control characters, tabs or newlines",
        )
    return value


def _numa(body: Mapping[str, Any], source: str) -> tuple[int | None, NumaPolicy]:
    where = f"{source}, [numa]"
    only_keys(body, {"node", "policy"}, where)
    node = whole_number(body["node"], "node", where, (0, MAX_NUMA_NODE)) if "node" in body else None
    value = body.get("policy", NumaPolicy.PREFERRED.value if node is not None else "ignore")
    if not isinstance(value, str) or value not in {p.value for p in NumaPolicy}:
        raise ConfigError(
            f"{where}: policy = {shown(value)} is not a NUMA policy",
            hint='write policy = "required", "preferred" or "ignore"',
        )
    policy = NumaPolicy(value)
    if node is None and policy is not NumaPolicy.IGNORE:
        raise ConfigError(
            f"{where}: policy = {shown(value)} needs a node",
            hint='add node = N (the host NUMA node the VM is pinned to), or policy = "ignore"',
        )
    return node, policy


def _nic(body: Mapping[str, Any], where: str) -> NicRequest:
    only_keys(body, _NIC_KEYS, where)
    if "mac" not in body:
        raise ConfigError(
            f"{where}: mac is missing",
            hint='add mac = "52:54:00:12:34:56": the MAC the VM sees on this VF',
        )
    mac = _mac(body["mac"], where)
    pf = _text(body["pf"], "pf", where, 64) if "pf" in body else None
    vlan = whole_number(body.get("vlan", 0), "vlan", where, (0, VLAN_MAX), "0 is untagged")
    qos = whole_number(body.get("qos", 0), "qos", where, (0, QOS_MAX), "the 802.1p priority")
    if qos and not vlan:
        raise ConfigError(
            f"{where}: QoS needs a VLAN: qos = {qos} but vlan is 0 (untagged)",
            hint="set vlan to a VLAN id (1 to 4094) with qos, or set qos = 0",
        )
    max_rate, min_rate = (
        whole_number(body[k], k, where, (0, MAX_RATE_MBPS), "Mbit/s") if k in body else None
        for k in ("max_tx_rate", "min_tx_rate")
    )
    if max_rate and min_rate and min_rate > max_rate:
        raise ConfigError(
            f"{where}: min_tx_rate = {min_rate} is above max_tx_rate = {max_rate} (Mbit/s)",
            hint="the guaranteed rate cannot exceed the limit",
        )
    knobs = KnobRequest(
        mac=mac, vlan=vlan, qos=qos,
        spoofchk=boolean(body["spoofchk"], "spoofchk", where) if "spoofchk" in body else None,
        trust=boolean(body["trust"], "trust", where) if "trust" in body else None,
        max_tx_rate=max_rate, min_tx_rate=min_rate,
    )  # fmt: skip
    return NicRequest(knobs, pf)


def _mac(value: object, where: str) -> MacAddress:
    hint = 'write mac = "52:54:00:12:34:56": six hex octets, unicast, not all zero'
    if not isinstance(value, str):
        raise ConfigError(f"{where}: mac must be a string, not {describe(value)}", hint=hint)
    try:
        mac = MacAddress.parse(value)
    except InvalidInput:
        raise ConfigError(
            f"{where}: mac = {shown(value)} is not a MAC address", hint=hint
        ) from None
    if mac.is_zero or mac.is_multicast:
        kind = "all zero" if mac.is_zero else "a multicast address"
        raise ConfigError(f"{where}: mac = {shown(value)} is {kind}", hint=hint)
    return mac


def _check_unique_macs(nics: tuple[NicRequest, ...], source: str) -> None:
    seen: dict[MacAddress, int] = {}
    for n, nic in enumerate(nics, 1):
        if nic.mac in seen:
            raise ConfigError(
                f'{source}: [[nic]] {seen[nic.mac]} and [[nic]] {n} both have mac = "{nic.mac}"',
                hint="give each NIC of a VM its own MAC",
            )
        seen[nic.mac] = n

"""The values the allocation database holds (pure: no I/O here).

Every record names a VF by its identity, PF plus VF index (:class:`VfId`),
never by a netdev name (FIELD-CASES C10). Constructors check their input, so
a hostile value is refused before it reaches SQL, and a row read back from
the file is checked the same way.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from qtagent.errors import InvalidInput
from qtagent.model.desired import DriftPolicy, VfDefaults
from qtagent.model.host import VfSettings
from qtagent.model.types import (
    VF_INDEX_MAX,
    MacAddress,
    VfId,
    check_vf_index,
    check_vlan,
    check_vm_name,
)

# A PF's device name on its bus: a PCI address (0000:41:00.0) or netdevsimN.
_PF_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
_LEASE_RE: Final = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex
DRIVER_NAME_MAX: Final = 64
RATE_MAX: Final = 1 << 31  # Mbit/s; the kernel's rates are u32


class AllocationState(enum.StrEnum):
    """Where a VF's hand-over to a VM stands.

    ``reserved``: the VF is promised to the VM; effects (capture, bind, attach)
    may be partly done. ``attached``: the VM holds it. ``releasing``: detach and
    restore are under way. A row in ``reserved`` or ``releasing`` after a crash
    is work for recovery, never a free VF.
    """

    RESERVED = "reserved"
    ATTACHED = "attached"
    RELEASING = "releasing"


# The only moves set_state() accepts; removal is from RESERVED or RELEASING.
TRANSITIONS: Final = frozenset(
    {
        (AllocationState.RESERVED, AllocationState.ATTACHED),
        (AllocationState.RESERVED, AllocationState.RELEASING),
        (AllocationState.ATTACHED, AllocationState.RELEASING),
    }
)


def check_pf_name(pf: str) -> None:
    """Refuse a PF name that is not a bus device name (PCI address or netdevsimN)."""
    if not isinstance(pf, str) or _PF_NAME_RE.match(pf) is None:
        raise InvalidInput(
            f"{pf!r} is not a PF device name",
            hint="name the PF by its PCI address (0000:41:00.0) or netdevsim device, "
            "not by an interface name",
        )


def check_vf_id(vf: VfId) -> None:
    check_pf_name(vf.pf)
    check_vf_index(vf.index)


@dataclass(frozen=True, slots=True)
class VmRef:
    """The VM a VF is given to: libvirt's domain name and, when known, its UUID."""

    name: str
    uuid: uuid.UUID | None = None

    def __post_init__(self) -> None:
        check_vm_name(self.name)
        if self.uuid is not None and not isinstance(self.uuid, uuid.UUID):
            raise InvalidInput(f"{self.uuid!r} is not a UUID")

    def __str__(self) -> str:
        return f"{self.name!r}" + (f" ({self.uuid})" if self.uuid else "")


@dataclass(frozen=True, slots=True)
class Allocation:
    """One VF handed to one VM, with the MAC and VLAN qtagent gave it.

    ``vlan`` 0 means untagged; ``qos`` is the 802.1p priority (0-7).
    Times are timezone-aware UTC. ``lease`` is a fresh token for this hand-out
    (None on rows written before leases existed): a release names it, so that a
    late or repeated release never touches a later hand-out of the same VF.
    """

    vf: VfId
    vm: VmRef
    mac: MacAddress | None
    vlan: int
    qos: int
    state: AllocationState
    created_at: datetime
    updated_at: datetime
    lease: str | None = None

    def __post_init__(self) -> None:
        check_vf_id(self.vf)
        check_vlan(self.vlan, self.qos)
        if self.lease is not None and _LEASE_RE.match(self.lease) is None:
            raise InvalidInput(f"{self.lease!r} is not a lease token")


@dataclass(frozen=True, slots=True)
class OriginalVf:
    """A VF's settings and driver as they were before qtagent changed anything.

    Captured once per assignment and restored on release (FIELD-CASES C4, C9).
    ``driver`` None: the VF had no driver bound.
    """

    vf: VfId
    settings: VfSettings
    driver: str | None
    captured_at: datetime

    def __post_init__(self) -> None:
        check_vf_id(self.vf)
        check_settings(self.settings)
        if self.driver is not None and (
            not self.driver
            or len(self.driver) > DRIVER_NAME_MAX
            or not all(c.isalnum() or c in "_-." for c in self.driver)
        ):
            raise InvalidInput(f"{self.driver!r} is not a driver name")


def check_defaults(defaults: VfDefaults) -> None:
    """Refuse VF defaults that could not be programmed (range-checked again here:
    the store must not hold what the config parser would have refused)."""
    if defaults.vlan is not None or defaults.qos is not None:
        check_vlan(defaults.vlan or 0, defaults.qos or 0)
    _check_rates(defaults.max_tx_rate, defaults.min_tx_rate)


@dataclass(frozen=True, slots=True)
class PfDesired:
    """The VF count and VF defaults the operator asked for on one PF.

    ``applied_at`` is None until the agent confirmed this exact count on the
    host; a change of the count clears it (FIELD-CASES C1, C8).
    """

    pf: str
    num_vfs: int
    defaults: VfDefaults
    updated_at: datetime
    applied_at: datetime | None
    drift: DriftPolicy = DriftPolicy.REPAIR

    def __post_init__(self) -> None:
        check_pf_name(self.pf)
        check_num_vfs(self.num_vfs)
        check_defaults(self.defaults)


def check_num_vfs(num_vfs: int) -> None:
    if isinstance(num_vfs, bool) or not isinstance(num_vfs, int):
        raise InvalidInput(f"VF count {num_vfs!r} is not an integer")
    if not 0 <= num_vfs <= VF_INDEX_MAX + 1:
        raise InvalidInput(f"VF count {num_vfs} is out of range")


def check_settings(settings: VfSettings) -> None:
    check_vlan(settings.vlan, settings.qos)
    _check_rates(settings.max_tx_rate, settings.min_tx_rate)


def _check_rates(*rates: int | None) -> None:
    for rate in rates:
        if rate is None:
            continue
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate < RATE_MAX:
            raise InvalidInput(f"rate {rate!r} Mbit/s is out of range")

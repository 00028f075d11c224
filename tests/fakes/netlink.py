"""An in-memory VfNetlink: a VF table per PF ifindex, answering like a real PF driver.

Each PF gets a :class:`DriverProfile` that says which knobs its driver lacks
(EOPNOTSUPP), which values it rejects (EINVAL) and what it reports; tests can also
program transient failures (EBUSY n times, then success). Profiles for igb and
netdevsim follow the facts measured in the lab (docs: /work/shared/RIG.md) and the
drivers' code (igb_ndo_set_vf_bw, nsim_set_vf_*).

Errors are the same qtagent errors the real backends raise, errno kept.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from qtagent.errors import InvalidInput
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import ZERO_MAC, MacAddress, check_ifindex, check_vf_index
from qtagent.netlink.api import Knob, KnobValue, Vlan
from qtagent.netlink.errors import netlink_error
from qtagent.netlink.knob_values import check_knob_value, knob_value, shell_args

_FIELD_BY_KNOB = {
    Knob.MAC: "mac",
    Knob.SPOOFCHK: "spoofchk",
    Knob.TRUST: "trust",
    Knob.MAX_TX_RATE: "max_tx_rate",
    Knob.MIN_TX_RATE: "min_tx_rate",
    Knob.LINK_STATE: "link_state",
}


@dataclass
class FakePf:
    """One PF as the fake kernel holds it."""

    ifindex: int
    name: str
    profile: DriverProfile
    vfs: dict[int, VfSettings]
    link_up: bool = True
    speed_mbps: int = 1000


# Returns the errno the driver answers for (vf, knob, value) given the rates the
# request carries (min, max), or 0 to accept.
Validator = Callable[[FakePf, Knob, KnobValue, tuple[int, int]], int]


def _accept(_pf: FakePf, _knob: Knob, _value: KnobValue, _rates: tuple[int, int]) -> int:
    return 0


@dataclass(frozen=True)
class DriverProfile:
    """How one PF driver answers VF knobs.

    ``unsupported``: knobs it has no ndo for, with the errno it answers.
    ``unreported``: knobs it leaves at -1 when read (VfSettings shows None).
    ``ignored``: knobs it accepts but does not apply (a driver that lies; read-back
    tests). ``validate``: value checks, see :data:`Validator`.
    """

    name: str
    defaults: VfSettings
    unsupported: Mapping[Knob, int] = field(default_factory=dict)
    unreported: frozenset[Knob] = frozenset()
    ignored: frozenset[Knob] = frozenset()
    validate: Validator = _accept


def _igb_validate(pf: FakePf, knob: Knob, value: KnobValue, rates: tuple[int, int]) -> int:
    """igb: a multicast MAC is refused; IFLA_VF_RATE is refused for any min rate, and for
    a max rate while the PF link is down or above the link speed (igb_ndo_set_vf_bw)."""
    if isinstance(value, MacAddress) and value.is_multicast:
        return errno.EINVAL
    if knob in (Knob.MAX_TX_RATE, Knob.MIN_TX_RATE):
        min_rate, max_rate = rates
        if min_rate or not pf.link_up or max_rate > pf.speed_mbps:
            return errno.EINVAL
    return 0


IGB = DriverProfile(
    name="igb",
    # The kernel zero-fills ifla_vf_info, so igb reports link-state auto although it
    # cannot set it; spoof checking is on for a new VF.
    defaults=VfSettings(
        mac=ZERO_MAC,
        spoofchk=True,
        trust=False,
        max_tx_rate=0,
        min_tx_rate=0,
        link_state=LinkState.AUTO,
    ),
    unsupported={Knob.LINK_STATE: errno.EOPNOTSUPP},
    validate=_igb_validate,
)

NETDEVSIM = DriverProfile(
    name="netdevsim",
    # nsim zero-allocates its VF configs and reports them as they are.
    defaults=VfSettings(
        mac=ZERO_MAC,
        spoofchk=False,
        trust=False,
        max_tx_rate=0,
        min_tx_rate=0,
        link_state=LinkState.AUTO,
    ),
)


@dataclass(frozen=True)
class SentKnob:
    """One set_knob call as the fake kernel saw it, with the errno it answered (0 = ok)."""

    pf_ifindex: int
    vf: int
    knob: Knob
    value: KnobValue
    errno: int


class FakeVfNetlink:
    """A complete in-memory implementation of :class:`qtagent.netlink.api.VfNetlink`."""

    def __init__(self) -> None:
        self.pfs: dict[int, FakePf] = {}
        self.sent: list[SentKnob] = []
        self.reads = 0
        self.closed = False
        self._failures: dict[tuple[int, int, Knob], list[int]] = {}
        self._read_failures: dict[int, list[int]] = {}

    # -- programming the fake -------------------------------------------------------

    def add_pf(
        self, ifindex: int, profile: DriverProfile, num_vfs: int, *, name: str = ""
    ) -> FakePf:
        pf = FakePf(
            ifindex=ifindex,
            name=name or f"{profile.name}{ifindex}",
            profile=profile,
            vfs=dict.fromkeys(range(num_vfs), profile.defaults),
        )
        self.pfs[ifindex] = pf
        return pf

    def fail_next(
        self, pf_ifindex: int, vf: int, knob: Knob, code: int, times: int = 1, *, after: int = 0
    ) -> None:
        """Answer ``times`` sets of this knob with ``code`` (EBUSY, EINVAL...), once
        ``after`` more sets of it have been answered normally."""
        self._failures.setdefault((pf_ifindex, vf, knob), []).extend([0] * after + [code] * times)

    def fail_next_read(self, pf_ifindex: int, code: int, times: int = 1, *, after: int = 0) -> None:
        """Answer ``times`` reads of this PF with ``code``, after ``after`` normal reads."""
        self._read_failures.setdefault(pf_ifindex, []).extend([0] * after + [code] * times)

    def set_vf(self, pf_ifindex: int, vf: int, **changes: object) -> None:
        """Change a VF's state behind qtagent's back (another tool, a VF reset)."""
        pf = self.pfs[pf_ifindex]
        pf.vfs[vf] = dataclasses.replace(pf.vfs[vf], **changes)  # type: ignore[arg-type]

    def sent_knobs(self, pf_ifindex: int | None = None) -> list[tuple[int, Knob, KnobValue]]:
        """(vf, knob, value) of every set attempt, in order."""
        return [
            (s.vf, s.knob, s.value)
            for s in self.sent
            if pf_ifindex is None or s.pf_ifindex == pf_ifindex
        ]

    # -- VfNetlink ------------------------------------------------------------------

    def read_vfs(self, pf_ifindex: int) -> Mapping[int, VfSettings]:
        """Every VF's settings (``ip link show $pf``)."""
        check_ifindex(pf_ifindex)
        pf = self._pf(pf_ifindex, "ip link show")
        self.reads += 1
        pending = self._read_failures.get(pf_ifindex)
        code = pending.pop(0) if pending else 0
        if code:
            raise netlink_error(code, f"ip link show {pf.name}")
        return {index: self._reported(pf, settings) for index, settings in pf.vfs.items()}

    def set_knob(self, pf_ifindex: int, vf: int, knob: Knob, value: KnobValue) -> None:
        """Set one knob (``ip link set $pf vf $vf <knob> <value>``)."""
        check_ifindex(pf_ifindex)
        check_vf_index(vf)
        check_knob_value(knob, value)
        pf = self._pf(pf_ifindex, "ip link set")
        code = self._answer(pf, vf, knob, value)
        self.sent.append(SentKnob(pf_ifindex, vf, knob, value, code))
        if code:
            other = self._rates(pf, vf, knob, value)
            other_rate = other[0] if knob is Knob.MAX_TX_RATE else other[1]
            args = shell_args(knob, value, other_rate=other_rate)
            raise netlink_error(code, f"ip link set {pf.name} vf {vf} {args}")
        if knob not in pf.profile.ignored:
            pf.vfs[vf] = _with(pf.vfs[vf], knob, value)

    def close(self) -> None:
        self.closed = True

    # -- the fake kernel --------------------------------------------------------------

    def _pf(self, pf_ifindex: int, verb: str) -> FakePf:
        pf = self.pfs.get(pf_ifindex)
        if pf is None:
            raise netlink_error(errno.ENODEV, f"{verb} if{pf_ifindex}")
        return pf

    def _answer(self, pf: FakePf, vf: int, knob: Knob, value: KnobValue) -> int:
        pending = self._failures.get((pf.ifindex, vf, knob))
        if pending and pending[0]:
            return pending.pop(0)
        if pending:
            pending.pop(0)  # an "answer normally" placeholder
        if vf not in pf.vfs:
            return errno.EINVAL  # the drivers' "vf >= num_vfs" check
        if knob in pf.profile.unsupported:
            return pf.profile.unsupported[knob]
        return pf.profile.validate(pf, knob, value, self._rates(pf, vf, knob, value))

    @staticmethod
    def _rates(pf: FakePf, vf: int, knob: Knob, value: KnobValue) -> tuple[int, int]:
        """(min, max) the IFLA_VF_RATE of this request carries: the other rate as read."""
        current = pf.vfs.get(vf, pf.profile.defaults)
        min_rate = current.min_tx_rate or 0
        max_rate = current.max_tx_rate or 0
        if knob is Knob.MAX_TX_RATE and isinstance(value, int):
            return min_rate, value
        if knob is Knob.MIN_TX_RATE and isinstance(value, int):
            return value, max_rate
        return min_rate, max_rate

    @staticmethod
    def _reported(pf: FakePf, settings: VfSettings) -> VfSettings:
        hidden = {_FIELD_BY_KNOB[k]: None for k in pf.profile.unreported if k in _FIELD_BY_KNOB}
        return dataclasses.replace(settings, **hidden) if hidden else settings  # type: ignore[arg-type]


def _with(settings: VfSettings, knob: Knob, value: KnobValue) -> VfSettings:
    if isinstance(value, Vlan):
        return dataclasses.replace(settings, vlan=value.vlan, qos=value.qos)
    if knob not in _FIELD_BY_KNOB:
        raise InvalidInput(f"the fake cannot store {knob}")
    replaced = dataclasses.replace(settings, **{_FIELD_BY_KNOB[knob]: value})  # type: ignore[arg-type]
    assert knob_value(replaced, knob) == value
    return replaced

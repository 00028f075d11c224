"""Kernel VF info fields (struct ifla_vf_info as rtnetlink reports it) -> VfSettings.

Pure: both backends decode the wire their own way and meet here, so a driver's
"not reported" (-1, i.e. 0xffffffff in the u32 fields, or an absent attribute)
becomes ``None`` the same way everywhere.
"""

from __future__ import annotations

from typing import Final

from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress

NOT_REPORTED: Final = 0xFFFFFFFF  # the kernel pre-fills -1 and sends it as u32

# IFLA_VF_LINK_STATE values (enum ifla_vf_link_state_values).
LINK_STATE_BY_CODE: Final = {0: LinkState.AUTO, 1: LinkState.ENABLE, 2: LinkState.DISABLE}
LINK_STATE_CODE: Final = {state: code for code, state in LINK_STATE_BY_CODE.items()}


def _flag(raw: int | None) -> bool | None:
    if raw is None or raw in (NOT_REPORTED, -1):
        return None
    return bool(raw)


def _rate(raw: int | None) -> int | None:
    if raw is None or raw in (NOT_REPORTED, -1):
        return None
    return raw


def vf_settings(
    *,
    mac: bytes | None,
    vlan: int | None,
    qos: int | None,
    spoofchk: int | None,
    trust: int | None,
    min_tx_rate: int | None,
    max_tx_rate: int | None,
    link_state: int | None,
) -> VfSettings:
    """Build VfSettings from raw attribute fields; ``None`` means the attribute was absent.

    ``mac`` is the first six bytes of IFLA_VF_MAC's 32-byte field.
    """
    return VfSettings(
        mac=MacAddress(mac[:6]) if mac is not None else None,
        vlan=vlan or 0,
        qos=qos or 0,
        spoofchk=_flag(spoofchk),
        trust=_flag(trust),
        max_tx_rate=_rate(max_tx_rate),
        min_tx_rate=_rate(min_tx_rate),
        link_state=None if link_state is None else LINK_STATE_BY_CODE.get(link_state),
    )

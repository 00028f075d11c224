"""VfNetlink through pyroute2 (0.9.7): the only qtagent module that imports pyroute2.

pyroute2 is imported on first use, not at import time: the import costs about
0.3 s on the host and 13-30 s inside the TCG lab guest, and most commands never
touch netlink. One IPRoute socket per backend object; :meth:`close` closes it.

Wire quirks of 0.9.7 this module keeps away from: the VLAN-list form
(``vlan=[{...}]``, IFLA_VF_VLAN_LIST) packs a struct 2 bytes short and always fails
with EINVAL, so VLANs go as the plain ``vlan: {vlan, qos}`` form (IFLA_VF_VLAN).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from qtagent.errors import KernelError
from qtagent.model.host import LinkState, VfSettings
from qtagent.model.types import MacAddress, check_ifindex, check_vf_index
from qtagent.netlink import rtnl_wire as wire
from qtagent.netlink.api import Knob, KnobValue, Vlan
from qtagent.netlink.errors import netlink_error
from qtagent.netlink.knob_values import check_knob_value, knob_value
from qtagent.netlink.shell import link_name, set_command
from qtagent.netlink.vfinfo import LINK_STATE_CODE, vf_settings

log = logging.getLogger(__name__)

_EXT_MASK = wire.RTEXT_FILTER_VF | wire.RTEXT_FILTER_SKIP_STATS


class Pyroute2VfNetlink:
    """VF settings through one pyroute2 ``IPRoute`` socket, opened on first use.

    Not thread-safe (pyroute2's sync IPRoute drives its own event loop): one object
    per thread.
    """

    def __init__(self) -> None:
        self._ipr: Any = None
        self._netlink_error: type[Exception] = Exception
        self._setlink: Any = None

    def __enter__(self) -> Pyroute2VfNetlink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def read_vfs(self, pf_ifindex: int) -> Mapping[int, VfSettings]:
        """Every VF's settings. Equivalent to: ``ip link show $pf``."""
        check_ifindex(pf_ifindex)
        ipr = self._socket()
        try:
            (msg,) = ipr.link("get", index=pf_ifindex, ext_mask=_EXT_MASK)
        except self._netlink_error as e:
            raise netlink_error(_code(e), f"ip link show {link_name(pf_ifindex)}") from e
        return vfs_from_message(msg, link_name(pf_ifindex))

    def set_knob(self, pf_ifindex: int, vf: int, knob: Knob, value: KnobValue) -> None:
        """Set one knob of one VF with one RTM_SETLINK carrying one IFLA_VF_* attribute.

        Equivalent to: ``ip link set $pf vf $vf mac $mac`` (or ``vlan $v qos $q``,
        ``spoofchk on|off``, ``trust on|off``, ``state auto|enable|disable``,
        ``min_tx_rate $min max_tx_rate $max``). A rate keeps the other rate at its
        current read-back value, so setting one rate costs one extra read.
        """
        check_ifindex(pf_ifindex)
        check_vf_index(vf)
        check_knob_value(knob, value)
        other = self._other_rate(pf_ifindex, vf, knob)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", set_command(pf_ifindex, vf, knob, value, other))
        ipr = self._socket()
        try:
            ipr.link(
                "set",
                index=pf_ifindex,
                vf=vf_spec(vf, knob, value, other),
                command_map=self._setlink,
            )
        except self._netlink_error as e:
            raise netlink_error(_code(e), set_command(pf_ifindex, vf, knob, value, other)) from e

    def _other_rate(self, pf_ifindex: int, vf: int, knob: Knob) -> int:
        if knob not in (Knob.MAX_TX_RATE, Knob.MIN_TX_RATE):
            return 0
        other = Knob.MIN_TX_RATE if knob is Knob.MAX_TX_RATE else Knob.MAX_TX_RATE
        settings = self.read_vfs(pf_ifindex).get(vf)
        value = knob_value(settings, other) if settings is not None else None
        return value if isinstance(value, int) else 0

    def _socket(self) -> Any:
        if self._ipr is None:
            # Imported here on purpose: see the module docstring (13-60 s in the guest).
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError

            self._netlink_error = NetlinkError
            # pyroute2's "set" sends RTM_NEWLINK; send the RTM_SETLINK that `ip link set` means.
            self._setlink = {"set": (wire.RTM_SETLINK, "req")}
            self._ipr = IPRoute()
        return self._ipr


def vfs_from_message(msg: Any, pf_name: str) -> dict[int, VfSettings]:
    """Every VF's settings in a pyroute2-decoded RTM_NEWLINK message, by VF index."""
    vfs: dict[int, VfSettings] = {}
    vf_list = msg.get_attr("IFLA_VFINFO_LIST")
    for info in vf_list.get_attrs("IFLA_VF_INFO") if vf_list is not None else ():
        index, settings = _decode_vf_info(info)
        vfs[index] = settings
    announced = msg.get_attr("IFLA_NUM_VF") or 0
    if len(vfs) != announced:
        raise KernelError(
            f"cannot read the VF table of {pf_name}: the kernel announced "
            f"{announced} VFs but sent {len(vfs)}",
            hint="with hundreds of VFs the kernel's VF list overflows its 64 KiB attribute",
        )
    return vfs


def _code(err: Exception) -> int:
    code = getattr(err, "code", None)
    return code if isinstance(code, int) and code > 0 else errno.EIO


def vf_spec(vf: int, knob: Knob, value: KnobValue, other_rate: int) -> dict[str, object]:
    """pyroute2's ``vf=`` argument carrying exactly one IFLA_VF_* attribute."""
    spec: dict[str, object] = {"vf": vf}
    if isinstance(value, MacAddress):
        spec["mac"] = str(value)
    elif isinstance(value, Vlan):
        spec["vlan"] = {"vlan": value.vlan, "qos": value.qos}  # plain form, never a list
    elif isinstance(value, LinkState):
        spec["link_state"] = LINK_STATE_CODE[value]
    elif knob in (Knob.SPOOFCHK, Knob.TRUST):
        spec[str(knob)] = int(bool(value))
    elif knob is Knob.MAX_TX_RATE:
        spec["rate"] = {"min_tx_rate": other_rate, "max_tx_rate": value}
    else:
        spec["rate"] = {"min_tx_rate": value, "max_tx_rate": other_rate}
    return spec


def _field(info: Any, attr: str, name: str) -> int | None:
    nla = info.get_attr(attr)
    return None if nla is None else int(nla[name])


def _decode_vf_info(info: Any) -> tuple[int, VfSettings]:
    mac_nla = info.get_attr("IFLA_VF_MAC")
    vlan_nla = info.get_attr("IFLA_VF_VLAN")
    index = next(
        int(nla["vf"])
        for nla in (mac_nla, vlan_nla, info.get_attr("IFLA_VF_RATE"))
        if nla is not None
    )
    return index, vf_settings(
        mac=None if mac_nla is None else MacAddress.parse(mac_nla["mac"]).octets,
        vlan=None if vlan_nla is None else int(vlan_nla["vlan"]),
        qos=None if vlan_nla is None else int(vlan_nla["qos"]),
        spoofchk=_field(info, "IFLA_VF_SPOOFCHK", "spoofchk"),
        trust=_field(info, "IFLA_VF_TRUST", "trust"),
        min_tx_rate=_field(info, "IFLA_VF_RATE", "min_tx_rate"),
        max_tx_rate=_field(info, "IFLA_VF_RATE", "max_tx_rate"),
        link_state=_field(info, "IFLA_VF_LINK_STATE", "link_state"),
    )

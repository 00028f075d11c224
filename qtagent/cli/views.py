"""Turn model values into table rows and JSON dicts (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qtagent.model.host import PfInfo, VfInfo
from qtagent.model.types import VfId
from qtagent.store.capabilities import Capability

PF_HEADERS = ("pf", "ids", "device", "driver", "netdev", "link", "numa", "iommu", "vfs")
VF_HEADERS = (
    "pf", "vf", "address", "driver", "netdev", "iommu", "mac", "vlan", "qos",
    "spoofchk", "trust", "max_rate", "min_rate", "link_state", "vm",
)  # fmt: skip


def pf_row(pf: PfInfo) -> tuple[object, ...]:
    identity = pf.identity
    link = pf.operstate
    if link and pf.speed_mbps:
        link = f"{link} {pf.speed_mbps}Mb/s"
    return (
        pf.name,
        identity.ids if identity else None,
        (identity.device_name or identity.vendor_name) if identity else pf.bus.value,
        pf.driver,
        pf.netdev,
        link,
        pf.numa_node,
        pf.iommu_group,
        f"{pf.num_vfs}/{pf.total_vfs}",
    )


def pf_dict(pf: PfInfo, capabilities: Sequence[Capability] = ()) -> dict[str, object]:
    """The PF as JSON; ``capabilities``: what its driver is known to have and lack."""
    identity = pf.identity
    vf_identity = pf.vf_identity
    return {
        "name": pf.name,
        "bus": pf.bus.value,
        "address": str(pf.address) if pf.address else None,
        "vendor_id": f"{identity.vendor_id:04x}" if identity else None,
        "device_id": f"{identity.device_id:04x}" if identity else None,
        "vendor_name": identity.vendor_name if identity else None,
        "device_name": identity.device_name if identity else None,
        "vf_device_id": f"{vf_identity.device_id:04x}" if vf_identity else None,
        "driver": pf.driver,
        "netdev": pf.netdev,
        "ifindex": pf.ifindex,
        "mac": str(pf.mac) if pf.mac else None,
        "operstate": pf.operstate,
        "speed_mbps": pf.speed_mbps,
        "numa_node": pf.numa_node,
        "iommu_group": pf.iommu_group,
        "total_vfs": pf.total_vfs,
        "num_vfs": pf.num_vfs,
        "vf_knobs": {
            "supported": [str(c.knob) for c in capabilities if c.supported],
            "unsupported": {str(c.knob): c.detail for c in capabilities if not c.supported},
        },
    }


def capability_line(driver: str, capabilities: Sequence[Capability]) -> str:
    """``igb: has mac, vlan, spoofchk; lacks link_state (EOPNOTSUPP)``."""
    has = [str(c.knob) for c in capabilities if c.supported]
    lacks = [f"{c.knob} ({c.detail})" for c in capabilities if not c.supported]
    parts = ([f"has {', '.join(has)}"] if has else []) + (
        [f"lacks {', '.join(lacks)}"] if lacks else []
    )
    return f"  {driver}: " + "; ".join(parts)


def vf_row(vf: VfInfo, holders: Mapping[VfId, str]) -> tuple[object, ...]:
    s = vf.settings
    return (
        vf.id.pf, vf.index, vf.address, vf.driver, vf.netdev,
        vf.iommu_group.number if vf.iommu_group else None,
        s.mac, s.vlan, s.qos, s.spoofchk, s.trust, s.max_tx_rate, s.min_tx_rate,
        s.link_state.value if s.link_state else None, holders.get(vf.id),
    )  # fmt: skip


def vf_dict(vf: VfInfo, holders: Mapping[VfId, str]) -> dict[str, object]:
    s = vf.settings
    group = vf.iommu_group
    return {
        "pf": vf.id.pf,
        "index": vf.index,
        "address": str(vf.address) if vf.address else None,
        "driver": vf.driver,
        "netdev": vf.netdev,
        "iommu_group": group.number if group else None,
        "iommu_group_members": [
            {"address": str(a), "driver": d} for a, d in (group.members if group else ())
        ],
        "mac": str(s.mac) if s.mac else None,
        "vlan": s.vlan,
        "qos": s.qos,
        "spoofchk": s.spoofchk,
        "trust": s.trust,
        "max_tx_rate": s.max_tx_rate,
        "min_tx_rate": s.min_tx_rate,
        "link_state": s.link_state.value if s.link_state else None,
        "vm": holders.get(vf.id),
    }

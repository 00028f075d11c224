"""Return a quarantined VF to the free pool, once it is checked clean again.

A VF is quarantined when its release could not prove it clean (see
:mod:`qtagent.ops.release`). After the cause is dealt with (the process holding
its VFIO group stopped, say), `qtagent vf unquarantine PF INDEX` checks it again
under the host lock: no process holds its VFIO group, it gets a host driver if it
is on vfio-pci or has none, and it must then read back with no VM's VLAN. Only
then is it taken out of quarantine; otherwise it stays, with the new reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtagent.errors import Conflict, NotFound
from qtagent.model.types import VfId
from qtagent.ops.context import HostContext
from qtagent.ops.recover import changing
from qtagent.ops.release import VFIO, vfio_holders
from qtagent.store.quarantine import EventLog, QuarantineTable


@dataclass(frozen=True, slots=True)
class Unquarantined:
    vf: VfId
    reason: str
    driver: str | None


def unquarantine(ctx: HostContext, pf_name: str, index: int) -> Unquarantined:
    """Check VF ``index`` of ``pf_name`` again and, if clean, free it."""
    with changing(ctx):
        pf = ctx.pf(pf_name, settings=False)
        vf = pf.vf(index)
        table = QuarantineTable(ctx.store)
        held = table.get(vf.id)
        if held is None:
            raise NotFound(f"{vf.id} is not quarantined", hint="see `qtagent status`")
        if vf.address is not None:
            holders = vfio_holders(ctx, vf.address)
            if holders:
                reason = f"its VFIO group is still held by {holders}"
                table.add(vf.id, reason)
                raise Conflict(
                    f"{vf.id} stays quarantined: {reason}",
                    hint="stop that process (a VM's QEMU), then try again",
                )
            if vf.driver == VFIO:
                ctx.binder.to_host(vf, None)
            elif vf.driver is None:
                ctx.binder.probe_host_driver(vf)
        now = ctx.pf(pf.name).vf(index)
        # What a VM may have been given that the next one must not inherit; attach sets
        # only MAC and VLAN, so a VF left trusted would reach the next VM trusted.
        dev = pf.netdev or pf.name
        left = [
            (f"VLAN {now.settings.vlan}", "vlan 0") if now.settings.vlan else None,
            ("trust on", "trust off") if now.settings.trust else None,
        ]
        for what, clear in filter(None, left):
            reason = f"it still carries {what}"
            table.add(vf.id, reason)
            raise Conflict(
                f"{vf.id} stays quarantined: {reason}",
                hint=f"clear it (ip link set {dev} vf {index} {clear}), then try again",
            )
        table.clear(vf.id)
        EventLog(ctx.store).add("quarantine", str(vf.id), f"cleared (was: {held.reason})")
        return Unquarantined(vf.id, held.reason, now.driver)

"""`qtagent vm ...`: give VFs to running libvirt VMs and take them back."""

from __future__ import annotations

import click

from qtagent.cli.common import (
    MAC,
    PF_NAME,
    QOS,
    VF_INDEX,
    VLAN,
    EnvTwinOption,
    NegativeNumbersAsValues,
    Seconds,
    host,
)
from qtagent.cli.output import emit, table
from qtagent.model.types import MacAddress
from qtagent.ops.assign import attach, detach


@click.group()
def vm() -> None:
    """Hot-plug VFs into VMs and unplug them (libvirt)."""


@vm.command("attach")
@click.argument("vm_name", metavar="VM")
@click.argument("pf_name", metavar="PF", type=PF_NAME)
@click.option("--index", type=VF_INDEX, help="The VF to give (default: the first free one).")
@click.option("--mac", type=MAC, help="The MAC the VM sees on the VF.")
@click.option("--vlan", type=VLAN, default=0, help="VLAN id the VF tags with (0 = none).")
@click.option("--qos", type=QOS, default=0, help="802.1p priority for the VLAN.")
def vm_attach(
    vm_name: str, pf_name: str, index: int | None, mac: MacAddress | None, vlan: int, qos: int
) -> None:
    """Hot-plug a VF of PF into running VM with a MAC and VLAN."""
    result = attach(host(), vm_name, pf_name, index=index, mac=mac, vlan=vlan, qos=qos)
    text = (
        f"{result.vf.id} ({result.vf.address}) attached to VM {vm_name!r}: "
        f"mac {result.mac or 'unchanged'}, vlan {result.vlan or 'none'}\n{result.knobs.table()}"
    )
    emit(result.to_dict(), text)


@vm.command("detach", cls=NegativeNumbersAsValues)
@click.argument("vm_name", metavar="VM")
@click.argument("pf_name", metavar="PF", type=PF_NAME)
@click.argument("index", type=VF_INDEX)
@click.option(
    "--timeout", type=Seconds(1, 3600), default=60.0, show_default=True, cls=EnvTwinOption,
    envvar="QTAGENT_VM_DETACH_TIMEOUT",
    help="Seconds (1 to 3600) to wait for the guest to let go of the VF.",
)  # fmt: skip
def vm_detach(vm_name: str, pf_name: str, index: int, timeout: float) -> None:
    """Hot-unplug VF INDEX of PF from VM; restore its original settings and driver."""
    from qtagent.ops.assign import UnplugPolicy

    result = detach(host(), vm_name, pf_name, index, policy=UnplugPolicy(timeout_s=timeout))
    s = result.restored
    rows = [(str(result.vf), result.driver, s.mac, s.vlan, s.qos, s.spoofchk, s.trust)]
    text = f"released {result.vf} from VM {vm_name!r}; restored:\n" + table(
        ("vf", "driver", "mac", "vlan", "qos", "spoofchk", "trust"), rows
    )
    if result.random_mac:
        text += "\n(the original MAC was all-zero or refused: a random local MAC was set)"
    emit(result.to_dict(), text)

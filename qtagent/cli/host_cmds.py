"""`qtagent pf ...`, `qtagent vf ...` and `qtagent apply`: the host's PFs and VFs."""

from __future__ import annotations

from pathlib import Path

import click

from qtagent.cli.common import (
    MAC,
    ON_OFF,
    PF_NAME,
    QOS,
    RATE,
    VF_COUNT,
    VF_INDEX,
    VLAN,
    NegativeNumbersAsValues,
    holders,
    host,
)
from qtagent.cli.output import emit, table
from qtagent.cli.views import (
    PF_HEADERS,
    VF_HEADERS,
    capability_line,
    pf_dict,
    pf_row,
    vf_dict,
    vf_row,
)
from qtagent.config import load_host_config
from qtagent.errors import InvalidInput, KernelError, Unsupported
from qtagent.model.host import LinkState
from qtagent.model.types import MacAddress, VfId
from qtagent.ops.apply import apply_config
from qtagent.ops.bind import Target, bind_vf
from qtagent.ops.program import set_vf_knobs
from qtagent.ops.provision import set_vf_count
from qtagent.ops.unquarantine import unquarantine
from qtagent.plan.knob_report import KnobOutcome, KnobReport
from qtagent.store.capabilities import CapabilityTable


@click.group()
def pf() -> None:
    """Physical functions: list them, change their VF count."""


@pf.command("list")
def pf_list() -> None:
    """Every SR-IOV capable PF on this host."""
    ctx = host()
    snapshot = ctx.snapshot(settings=False)
    store = ctx.store_for_reading
    learned = {
        driver: CapabilityTable(store).of(driver) if store is not None else ()
        for driver in {p.driver for p in snapshot.pfs if p.driver}
    }
    rows = [pf_row(p) for p in snapshot.pfs]
    text = table(PF_HEADERS, rows) if rows else "no SR-IOV capable PF found"
    lines = [capability_line(driver, caps) for driver, caps in sorted(learned.items()) if caps]
    if lines:
        text += "\n\nVF knobs learned from the drivers' answers:\n" + "\n".join(lines)
    emit([pf_dict(p, learned.get(p.driver or "", ())) for p in snapshot.pfs], text)


@pf.command("set-vfs", cls=NegativeNumbersAsValues)
@click.argument("pf_name", metavar="PF", type=PF_NAME)
@click.argument("count", type=VF_COUNT)
@click.option("--drain", is_flag=True, help="Detach and release every VF of the PF first.")
def pf_set_vfs(pf_name: str, count: int, drain: bool) -> None:
    """Give PF exactly COUNT VFs (no write if it has them already)."""
    result = set_vf_count(host(), pf_name, count, drain=drain)
    c = result.count
    if not c.writes:
        text = f"{c.pf}: already has {count} VFs; nothing written"
    else:
        writes = " then ".join(str(w) for w in c.writes)
        text = f"{c.pf}: wrote {writes} to sriov_numvfs; {len(c.ready)} VFs ready"
        text += f" after {c.waited_s:.1f} s"
    if c.missing:
        text += "\n" + "\n".join(
            f"  VF{i} not ready: {why} (no configuration sent)" for i, why in c.missing
        )
    emit(result.to_dict(), text)
    if c.partial:
        raise SystemExit(KernelError.exit_code)


@click.group()
def vf() -> None:
    """Virtual functions: list them, set their knobs, bind their driver."""


@vf.command("list")
@click.argument("pf_name", metavar="[PF]", required=False, type=PF_NAME)
def vf_list(pf_name: str | None) -> None:
    """Every VF (of PF, if given) with its settings read back from the kernel."""
    ctx = host()
    snapshot = ctx.snapshot()
    pfs = [snapshot.pf(pf_name)] if pf_name is not None else list(snapshot.pfs)
    held = holders(ctx)
    vfs = [v for p in pfs for v in p.vfs]
    text = table(VF_HEADERS, [vf_row(v, held) for v in vfs]) if vfs else "no VFs"
    emit([vf_dict(v, held) for v in vfs], text)


@vf.command("set", cls=NegativeNumbersAsValues)
@click.argument("pf_name", metavar="PF", type=PF_NAME)
@click.argument("index", type=VF_INDEX)
@click.option("--mac", type=MAC, help="Admin MAC address.")
@click.option("--vlan", type=VLAN, help="VLAN id (0 = none).")
@click.option("--qos", type=QOS, default=0, help="802.1p priority for the VLAN.")
@click.option("--spoofchk", type=ON_OFF, help="MAC spoof checking on|off.")
@click.option("--trust", type=ON_OFF, help="Trusted mode on|off.")
@click.option("--max-rate", type=RATE, help="Max TX rate in Mbit/s (0 = unlimited).")
@click.option("--min-rate", type=RATE, help="Guaranteed TX rate in Mbit/s (0 = none).")
@click.option("--link-state", type=click.Choice([s.value for s in LinkState]), help="Link state.")
def vf_set(
    pf_name: str,
    index: int,
    mac: MacAddress | None,
    vlan: int | None,
    qos: int,
    spoofchk: bool | None,
    trust: bool | None,
    max_rate: int | None,
    min_rate: int | None,
    link_state: str | None,
) -> None:
    """Set knobs of VF INDEX of PF, each on its own, confirmed by read-back.

    Answers per knob: applied, unchanged, unsupported or rejected. Exit status:
    0 when every knob is applied or unchanged (or unsupported and asked at the
    value the VF has without it: only a warning, nothing sent); 6 when the driver
    rejected a knob; 5 when the driver does not support a knob (and none was
    rejected); 2 for bad input, 3 for an unknown PF or VF, 4 for a VF a VM holds
    (its settings are the VM's: detach it first). --spoofchk and --trust
    are required knobs: if one fails, the others are rolled back.
    """
    from qtagent.plan.knobs import KnobRequest

    request = KnobRequest(
        mac=mac, vlan=vlan, qos=qos, spoofchk=spoofchk, trust=trust,
        max_tx_rate=max_rate, min_tx_rate=min_rate,
        link_state=LinkState(link_state) if link_state else None,
    )  # fmt: skip
    if not request.wanted():
        raise InvalidInput(
            "no knob given", hint="give at least one of --mac, --vlan, --spoofchk, ..."
        )
    report = set_vf_knobs(host(), pf_name, index, request)
    text = f"{report.pf} vf {report.vf}:\n{report.table()}"
    if any(r.required for r in report.results):
        text += "\n(* a required knob: if it fails, the others are rolled back)"
    emit(report.to_dict(), text)
    code = knob_exit_code(report)
    if code:
        raise SystemExit(code)


def knob_exit_code(report: KnobReport) -> int:
    """The exit status of `vf set` for ``report`` (see its --help): the error
    codes of :mod:`qtagent.errors`, a refusal by the driver before a missing knob."""
    refused = [r.outcome for r in report.results if r.refused]
    if KnobOutcome.REJECTED in refused:
        return KernelError.exit_code
    if KnobOutcome.UNSUPPORTED in refused:
        return Unsupported.exit_code
    return 0


@vf.command("bind", cls=NegativeNumbersAsValues)
@click.argument("pf_name", metavar="PF", type=PF_NAME)
@click.argument("index", type=VF_INDEX)
@click.option("--driver", type=click.Choice(["vfio-pci", "host"]), required=True)
def vf_bind(pf_name: str, index: int, driver: str) -> None:
    """Move VF INDEX of PF to vfio-pci (after an IOMMU group check) or back to a host driver."""
    target: Target = "vfio-pci" if driver == "vfio-pci" else "host"
    result = bind_vf(host(), pf_name, index, target)
    vf_id = VfId(host().pf(pf_name, settings=False).name, index)
    before, after = result.before or "no driver", result.after or "no driver"
    text = f"{vf_id} ({result.address}): {before} -> {after}"
    if not result.changed:
        text += " (unchanged)"
    emit({"vf": str(vf_id), "address": str(result.address), "before": result.before,
          "after": result.after, "changed": result.changed}, text)  # fmt: skip


@vf.command("unquarantine", cls=NegativeNumbersAsValues)
@click.argument("pf_name", metavar="PF", type=PF_NAME)
@click.argument("index", type=VF_INDEX)
def vf_unquarantine(pf_name: str, index: int) -> None:
    """Check a quarantined VF again (no process holds its VFIO group, a host driver, no
    VM's VLAN) and return it to the free pool; it stays quarantined if not clean."""
    result = unquarantine(host(), pf_name, index)
    emit(
        {"vf": str(result.vf), "was": result.reason, "driver": result.driver},
        f"{result.vf} is free again (on {result.driver or 'no driver'}); it was quarantined "
        f"because {result.reason}",
    )


@click.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def apply_cmd(file: Path) -> None:
    """Apply a host config FILE (TOML): per PF its VF count and VF defaults. Idempotent."""
    config = load_host_config(file)
    results = apply_config(host(), config)
    rows = [
        (r.pf, r.name, len(r.count.ready), " then ".join(map(str, r.count.writes)) or "-",
         sum(len(rep.results) for rep in r.defaults), "yes" if r.changed else "no")
        for r in results
    ]  # fmt: skip
    text = table(("pf", "as named", "vfs", "writes", "knobs", "changed"), rows)
    missing = [(r.pf, i, why) for r in results for i, why in r.count.missing]
    for pf_name, index, why in missing:
        text += f"\n  {pf_name} VF{index} not ready: {why} (no configuration sent)"
    emit([r.to_dict() for r in results], text)
    if missing:
        raise SystemExit(KernelError.exit_code)

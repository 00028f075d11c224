"""`qtagent lab`: the emulated SR-IOV host, for operators without hardware and for our tests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from qtagent.cli.common import EnvTwinOption, NonEmptyPath
from qtagent.lab.runner import resolve_spec, run_in_lab


@click.group()
def lab() -> None:
    """Boot the emulated SR-IOV host (two igb PFs on two NUMA nodes, an IOMMU,
    vfio-pci, netdevsim and libvirtd) in a QEMU guest."""


_out_option = click.option(
    "--out",
    "out_dir",
    cls=EnvTwinOption,
    type=NonEmptyPath("the lab's output directory", file_okay=False),
    default=Path("lab-out"),
    show_default=True,
    help="Host directory the guest may write to (same path inside).",
)
_memory_option = click.option(
    "--memory",
    "memory_mib",
    type=click.IntRange(1024, 16384),
    default=3072,
    show_default=True,
    help="Guest memory in MiB, split across the two NUMA nodes.",
)
_acs_option = click.option(
    "--acs/--no-acs",
    default=True,
    show_default=True,
    help="--no-acs: root ports without ACS, so each VF shares its PF's IOMMU group "
    "(a VF that cannot go to a VM, as on many boards).",
)


@lab.command(context_settings={"ignore_unknown_options": True})
@_out_option
@_memory_option
@_acs_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(out_dir: Path, memory_mib: int, acs: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND as root inside the lab guest and exit with its exit code.

    Example: qtagent lab run -- qtagent pf list
    """
    spec = resolve_spec(out_dir, memory_mib=memory_mib, acs=acs)
    sys.exit(run_in_lab(spec, list(command)))


@lab.command()
@_out_option
@_memory_option
@_acs_option
def shell(out_dir: Path, memory_mib: int, acs: bool) -> None:
    """An interactive root shell inside the lab guest (exit to power it off)."""
    spec = resolve_spec(out_dir, memory_mib=memory_mib, acs=acs)
    sys.exit(run_in_lab(spec, None))

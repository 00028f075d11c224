"""The lab guest's QEMU and virtme-ng command line (pure: no boot)."""

from __future__ import annotations

import shlex
from pathlib import Path

from qtagent.lab.spec import LabSpec


def spec(**overrides: object) -> LabSpec:
    fields: dict[str, object] = {
        "kernel": Path("/boot/vmlinuz-6.12.1"),
        "repo": Path("/src/qtagent"),
        "out_dir": Path("/src/qtagent/lab-out"),
        "cache_dir": Path("/var/lib/qtagent-lab"),
        "netdevsim_ko": Path("/var/lib/qtagent-lab/6.12.1/netdevsim.ko"),
        "venv": Path("/src/qtagent/.venv"),
    }
    fields.update(overrides)
    return LabSpec(**fields)  # type: ignore[arg-type]


def devices(opts: list[str]) -> list[str]:
    return [opts[i + 1] for i, opt in enumerate(opts) if opt == "-device"]


def test_each_numa_node_gets_an_expander_bridge_a_root_port_and_an_igb_pf() -> None:
    found = devices(spec().qemu_opts())
    assert "intel-iommu,intremap=on" in found
    assert [d for d in found if d.startswith("pxb-pcie")] == [
        "pxb-pcie,id=pxb0,bus_nr=64,numa_node=0,bus=pcie.0",
        "pxb-pcie,id=pxb1,bus_nr=128,numa_node=1,bus=pcie.0",
    ]
    assert [d for d in found if d.startswith("igb")] == [
        "igb,netdev=lab0,bus=rp0",
        "igb,netdev=lab1,bus=rp1",
    ]


def test_root_ports_keep_acs_unless_asked_not_to() -> None:
    with_acs = [d for d in devices(spec().qemu_opts()) if d.startswith("pcie-root-port")]
    without = [d for d in devices(spec(acs=False).qemu_opts()) if d.startswith("pcie-root-port")]
    assert len(with_acs) == len(without) == 2
    assert not any("disable-acs" in d for d in with_acs)
    assert all(d.endswith(",disable-acs=on") for d in without)


def test_the_guest_is_told_how_it_was_booted() -> None:
    line = spec(acs=False).guest_command("qtagent pf list")
    words = shlex.split(line)
    assert words[0] == "env"
    assert "QTAGENT_LAB=1" in words and "QTAGENT_LAB_ACS=off" in words
    assert "QTAGENT_LAB_OUT=/src/qtagent/lab-out" in words
    assert words[-1] == "qtagent pf list"
    assert "QTAGENT_LAB_ACS=on" in shlex.split(spec().guest_command(None))


def test_memory_and_cpus_are_split_across_the_numa_nodes() -> None:
    args = spec(cpus=4, memory_mib=4096).vng_args("true")
    numa = [args[i + 1] for i, arg in enumerate(args) if arg == "--numa"]
    assert numa == ["2048M,cpus=0-1", "2048M,cpus=2-3"]
    # One CPU per node at least, even when asked for fewer.
    args = spec(cpus=1).vng_args("true")
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--numa"] == [
        "1536M,cpus=0",
        "1536M,cpus=1",
    ]
    assert args[args.index("--cpus") + 1] == "2"


def test_qemu_options_go_in_the_equals_form() -> None:
    """vng's argparse would take a separate value starting with '-' for an option."""
    args = spec().vng_args("true")
    qemu = [arg for arg in args if arg.startswith("--qemu-opts=")]
    assert len(qemu) == 1 and "-device igb,netdev=lab0,bus=rp0" in qemu[0]
    assert "--disable-kvm" in args

"""What the lab guest looks like, and the virtme-ng command that boots it (pure).

The guest is an SR-IOV host in miniature: two emulated Intel 82576 (igb) PFs,
each behind its own PCIe expander bridge on its own guest NUMA node, an
emulated Intel IOMMU with interrupt remapping (so every VF gets its own IOMMU
group and vfio-pci works), netdevsim for netlink knobs at scale, and libvirtd.
Measured facts behind each choice are in docs/lab.md and ../shared/RIG.md.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

GUEST_INIT = Path(__file__).with_name("guest-init.sh")


@dataclass(frozen=True, slots=True)
class LabSpec:
    """Everything needed to boot one lab guest.

    ``memory_mib`` is split evenly across the NUMA nodes; ``cpus`` are spread one
    node each (at least one CPU per node). ``acs`` False boots the PFs' root ports
    without Access Control Services, as on many boards: the kernel then puts each
    VF in its PF's IOMMU group, which makes it unfit for a VM (FIELD-CASES C7).
    """

    kernel: Path
    repo: Path
    out_dir: Path
    cache_dir: Path
    netdevsim_ko: Path | None
    venv: Path
    numa_nodes: int = 2
    cpus: int = 2
    memory_mib: int = 3072
    acs: bool = True
    extra_rwdirs: tuple[Path, ...] = field(default_factory=tuple)

    def qemu_opts(self) -> list[str]:
        """QEMU options: q35 with split irqchip (needed by intremap), the IOMMU and
        one PCIe expander bridge + root port + igb per NUMA node."""
        opts = [
            "-machine", "q35,kernel-irqchip=split",
            "-device", "intel-iommu,intremap=on",
        ]  # fmt: skip
        for node in range(self.numa_nodes):
            bus_nr = 64 * (node + 1)
            opts += [
                "-device", f"pxb-pcie,id=pxb{node},bus_nr={bus_nr},numa_node={node},bus=pcie.0",
                "-device", f"pcie-root-port,id=rp{node},bus=pxb{node},chassis={10 + node}"
                + ("" if self.acs else ",disable-acs=on"),
                "-device", f"igb,netdev=lab{node},bus=rp{node}",
                "-netdev", f"user,id=lab{node},restrict=on",
            ]  # fmt: skip
        return opts

    def vng_args(self, command: str | None) -> list[str]:
        """The full ``vng`` argv. ``command`` None gives an interactive shell."""
        per_node_mib = self.memory_mib // self.numa_nodes
        cpus = max(self.cpus, self.numa_nodes)
        args = [
            str(self.venv / "bin" / "vng"),
            "--run", str(self.kernel),
            "--disable-kvm",
            "--cpus", str(cpus),
            "--memory", f"{per_node_mib * self.numa_nodes}M",
        ]  # fmt: skip
        for node in range(self.numa_nodes):
            first = node * cpus // self.numa_nodes
            last = (node + 1) * cpus // self.numa_nodes - 1
            cpu_range = str(first) if first == last else f"{first}-{last}"
            args += ["--numa", f"{per_node_mib}M,cpus={cpu_range}"]
        # The = form: argparse would take a value starting with "-" for an option.
        args += ["--qemu-opts=" + " ".join(self.qemu_opts())]
        args += ["--append=intel_iommu=on iommu=pt"]
        args += [
            f"--rwdir={self.out_dir}",
            f"--rwdir=/var/cache/libvirt={self.cache_dir / 'libvirt'}",
        ]
        args += [f"--rwdir={path}" for path in self.extra_rwdirs]
        args += ["--cwd", str(self.repo)]
        args += ["--exec=" + self.guest_command(command)]
        return args

    def guest_command(self, command: str | None) -> str:
        """The shell line the guest runs: our init script, then the user's command."""
        env = {
            "QTAGENT_LAB": "1",
            "QTAGENT_LAB_OUT": str(self.out_dir),
            "QTAGENT_LAB_ACS": "on" if self.acs else "off",
            "QTAGENT_LAB_NETDEVSIM_KO": str(self.netdevsim_ko or ""),
            "QTAGENT_VENV": str(self.venv),
        }
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        inner = command if command is not None else "exec bash -i"
        return f"env {assignments} sh {shlex.quote(str(GUEST_INIT))} {shlex.quote(inner)}"

"""`make demo`: the main job, end to end, inside the lab guest.

Runs the `qtagent` CLI as a sysadmin would, checks each outcome against the
kernel, and ends with a report. Steps:
  1. apply a host config creating VFs on both igb PFs (and the netdevsim PF);
  2. start a small VM (the tiny guest: a tinyconfig kernel and a static init);
  3. attach a VF with a MAC and VLAN, and show who holds which VF;
  4. detach it and show the VF restored (settings and host driver).
Exit code 0 only if every check held.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qtagent.lab.guestvm import start_tiny_guest, wait_for_guest_pci, wait_for_libvirt
from qtagent.model.host import PfInfo
from qtagent.ops.context import HostContext, HostPaths

VM = "demo-vm"
MAC = "52:54:00:de:00:01"
VLAN = 100
VF_IDS = "0x8086:0x10ca"  # an 82576 VF, as the guest's sysfs spells it


class Demo:
    def __init__(self, db: Path) -> None:
        self.db = db
        self.checks: list[tuple[str, bool]] = []
        self.timings: list[tuple[str, float]] = []

    def qtagent(self, *args: str, expect: int = 0, show: bool = True) -> str:
        """Run the CLI, show it like a terminal (``show`` False: not its stdout, for
        JSON the demo only checks), return its stdout."""
        argv = [sys.executable, "-m", "qtagent.cli", "--db", str(self.db), *args]
        print(f"\n$ qtagent {shlex.join(args)}", flush=True)
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        self.timings.append((" ".join(args[:3]), time.monotonic() - start))
        print((done.stdout.rstrip() or "(no output)") if show else "(JSON: checked below)")
        if done.stderr.strip():
            print(done.stderr.rstrip())
        self.check(f"`qtagent {' '.join(args[:3])}` exits {expect}", done.returncode == expect)
        return done.stdout

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))
        if not ok:
            print(f"  !! check failed: {what}", flush=True)

    def report(self) -> int:
        failed = [what for what, ok in self.checks if not ok]
        print("\n==================== qtagent demo report ====================")
        for what, ok in self.checks:
            print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        print("  timings: " + ", ".join(f"{name} {secs:.1f}s" for name, secs in self.timings))
        print(f"  {len(self.checks) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0


def main() -> int:
    if os.geteuid() != 0 or not os.environ.get("QTAGENT_LAB"):
        print(
            "run the demo in the lab: make demo (or qtagent lab run -- python -m qtagent.lab.demo)"
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="qtagent-demo-"))
    demo = Demo(work / "qtagent.db")
    ctx = HostContext(HostPaths(db_path=demo.db))
    pfs = ctx.snapshot(settings=False).pfs
    igb = [pf for pf in pfs if pf.driver == "igb"]
    nsim = [pf for pf in pfs if pf.bus.value == "netdevsim"]
    demo.check("the lab shows two igb PFs", len(igb) == 2)
    if not igb:
        return demo.report()
    apply_host_config(demo, work / "host.toml", igb, nsim)
    console = start_vm(demo, ctx, work)
    index = attach_vf(demo, igb[0], console)
    detach_vf(demo, igb[0], index, console)
    ctx.virt.destroy(VM)
    ctx.close()
    out = os.environ.get("QTAGENT_LAB_OUT")
    if out:
        shutil.copyfile(console, Path(out) / "demo-vm-console.log")
    return demo.report()


def apply_host_config(demo: Demo, config: Path, igb: list[PfInfo], nsim: list[PfInfo]) -> None:
    print("== 1. Host config: 3 VFs on each igb PF (spoofchk on, trust off), 8 on netdevsim")
    lines = ["version = 1"]
    for pf in igb:
        lines += [
            f'[pf."{pf.name}"]',
            "num_vfs = 3",
            "vf_defaults = { spoofchk = true, trust = false }",
        ]
    for pf in nsim:
        lines += [f'[pf."{pf.name}"]', "num_vfs = 8", "vf_defaults = { spoofchk = true }"]
    config.write_text("\n".join(lines) + "\n")
    print(config.read_text())
    demo.qtagent("apply", str(config))
    demo.qtagent("pf", "list")
    again = json.loads(demo.qtagent("--json", "apply", str(config)))
    demo.check(
        "applying the same config again writes nothing", all(not r["changed"] for r in again)
    )


def start_vm(demo: Demo, ctx: HostContext, work: Path) -> Path:
    print("\n== 2. A small VM (the tiny guest, booted by libvirt)")
    wait_for_libvirt()
    start = time.monotonic()
    console = start_tiny_guest(ctx.virt, VM, work)
    demo.timings.append(("vm start+boot", time.monotonic() - start))
    print(f"VM {VM!r} is up (its serial console: {console})")
    return console


def attach_vf(demo: Demo, pf: PfInfo, console: Path) -> int:
    print(f"\n== 3. Attach a VF of {pf.name} ({pf.netdev}) with MAC {MAC} and VLAN {VLAN}")
    attached = json.loads(
        demo.qtagent("--json", "vm", "attach", VM, pf.name, "--mac", MAC, "--vlan", str(VLAN))
    )
    index = int(attached["index"])
    vf = show_vf(demo, pf, index)
    demo.check(f"VF{index} is held by {VM}", vf["vm"] == VM)
    demo.check(f"VF{index} is on vfio-pci", vf["driver"] == "vfio-pci")
    demo.check(f"VF{index} has MAC {MAC} and VLAN {VLAN}", vf["mac"] == MAC and vf["vlan"] == VLAN)
    demo.check(
        f"the VM's OS sees the VF ({VF_IDS}) on its PCI bus",
        wait_for_guest_pci(console, VF_IDS, present=True),
    )
    return index


def detach_vf(demo: Demo, pf: PfInfo, index: int, console: Path) -> None:
    print(f"\n== 4. Detach VF{index} and show it restored")
    demo.qtagent("vm", "detach", VM, pf.name, str(index))
    vf = show_vf(demo, pf, index)
    demo.check(f"VF{index} is free again", vf["vm"] is None)
    demo.check(
        "the VM's OS no longer sees the VF", wait_for_guest_pci(console, VF_IDS, present=False)
    )
    demo.check(f"VF{index} is back on igbvf", vf["driver"] == "igbvf")
    demo.check(f"VF{index} no longer carries the VM's MAC", vf["mac"] != MAC)
    demo.check(f"VF{index} VLAN reads back 0", vf["vlan"] == 0)
    demo.check(f"VF{index} spoofchk is back to the default (on)", vf["spoofchk"] is True)


def show_vf(demo: Demo, pf: PfInfo, index: int) -> dict[str, Any]:
    """Show the PF's VF table as a sysadmin sees it; return VF ``index`` as JSON."""
    vfs = json.loads(demo.qtagent("--json", "vf", "list", pf.name, show=False))
    demo.qtagent("vf", "list", pf.name)
    found: dict[str, Any] = next(v for v in vfs if v["index"] == index)
    return found


if __name__ == "__main__":
    sys.exit(main())

"""Configure MAC + VLAN + spoofchk + trust on N netdevsim VFs, four ways, and compare.

    qtagent lab run -- python bench/bench_vf_knobs.py            # in the lab guest

1. ``ip link set $pf vf $n <knob> ...``: one process per knob (what a shell script does);
2. ``ip -batch``: the same commands in one ip process (the limit: no read-back at all);
3. qtagent in this process, one socket: read once, send only what differs (one knob per
   RTM_SETLINK), read back once and confirm every knob - with each backend, and also
   VF by VF (two reads per VF) to show what the single read-back saves;
4. qtagent in a fresh Python process (interpreter start and imports included), as a
   CLI call would pay it.

Every round changes every knob of every VF (two value sets alternate) and is checked
afterwards with iproute2. Targets: qtagent >= 10x faster than (1), <= 1.5x of (2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qtagent.effects.knobs import apply_knobs, apply_knobs_many
from qtagent.model.types import MacAddress
from qtagent.netlink.api import VfNetlink
from qtagent.netlink.rtnl_backend import RtnlVfNetlink
from qtagent.plan.knobs import KnobRequest

NSIM = Path("/sys/bus/netdevsim/devices/netdevsim1")

# A method configures round r's values on the first n VFs of a PF: (pf, r, n).
Method = Callable[[str, int, int], None]


def requests_for(round_: int, vfs: int) -> dict[int, KnobRequest]:
    """Round r's values: every knob differs from round r-1's."""
    return {
        vf: KnobRequest(
            mac=MacAddress(bytes([2, 0, 0, round_ & 0xFF, vf >> 8, vf & 0xFF])),
            vlan=100 + round_ % 2,
            spoofchk=round_ % 2 == 0,
            trust=round_ % 2 == 0,
        )
        for vf in range(vfs)
    }


def ip_commands(pf: str, requests: dict[int, KnobRequest]) -> list[str]:
    lines = []
    for vf, r in requests.items():
        lines += [
            f"link set {pf} vf {vf} mac {r.mac}",
            f"link set {pf} vf {vf} vlan {r.vlan}",
            f"link set {pf} vf {vf} spoofchk {'on' if r.spoofchk else 'off'}",
            f"link set {pf} vf {vf} trust {'on' if r.trust else 'off'}",
        ]
    return lines


def check(pf: str, requests: dict[int, KnobRequest]) -> None:
    """Compare every VF with iproute2's view; raise on any difference."""
    shown = subprocess.run(
        ["ip", "-j", "link", "show", "dev", pf], check=True, capture_output=True, text=True
    )
    (link,) = json.loads(shown.stdout)
    seen = {vf["vf"]: vf for vf in link["vfinfo_list"]}
    for vf, r in requests.items():
        got = seen[vf]
        want = (str(r.mac), r.vlan, r.spoofchk, r.trust)
        have = (got["address"], got["vlan_list"][0].get("vlan", 0), got["spoofchk"], got["trust"])
        if want != have:
            raise SystemExit(f"vf {vf}: want {want}, have {have}")


def run_ip_per_knob(pf: str, round_: int, vfs: int) -> None:
    for line in ip_commands(pf, requests_for(round_, vfs)):
        subprocess.run(["ip", *line.split()], check=True)


def run_ip_batch(pf: str, round_: int, vfs: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as batch:
        batch.write("\n".join(ip_commands(pf, requests_for(round_, vfs))) + "\n")
        batch.flush()
        subprocess.run(["ip", "-batch", batch.name], check=True)


def run_qtagent(make: Callable[[], VfNetlink], *, per_vf: bool) -> Method:
    def run(pf: str, round_: int, vfs: int) -> None:
        requests = requests_for(round_, vfs)
        ifindex = int(Path(f"/sys/class/net/{pf}/ifindex").read_text())
        nl = make()
        try:
            if per_vf:
                for vf, request in requests.items():
                    apply_knobs(nl, ifindex, vf, request, pf_name=pf)
            else:
                reports = apply_knobs_many(nl, ifindex, requests, pf_name=pf)
                assert all(r.complete for r in reports)
        finally:
            nl.close()

    return run


def run_fresh_process(pf: str, round_: int, vfs: int) -> None:
    subprocess.run([sys.executable, __file__, "--child", pf, str(round_), str(vfs)], check=True)


def netdevsim_pf(vfs: int) -> str:
    numvfs = NSIM / "sriov_numvfs"
    if int(numvfs.read_text()) != vfs:
        numvfs.write_text("0")
        numvfs.write_text(str(vfs))
    (name,) = [p.name for p in (NSIM / "net").iterdir()]
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vfs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per method (median)")
    parser.add_argument("--child", nargs=3, metavar=("PF", "ROUND", "VFS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_qtagent(RtnlVfNetlink, per_vf=False)(
            args.child[0], int(args.child[1]), int(args.child[2])
        )
        return

    pf = netdevsim_pf(args.vfs)
    t0 = time.perf_counter()
    from qtagent.netlink.pyroute2_backend import Pyroute2VfNetlink  # timed: lazy on purpose

    Pyroute2VfNetlink().read_vfs(int(Path(f"/sys/class/net/{pf}/ifindex").read_text()))
    pyroute2_import_s = time.perf_counter() - t0

    methods: dict[str, Method] = {
        "ip, one process per knob": run_ip_per_knob,
        "ip -batch (the limit)": run_ip_batch,
        "qtagent rtnl, one request": run_qtagent(RtnlVfNetlink, per_vf=False),
        "qtagent rtnl, VF by VF": run_qtagent(RtnlVfNetlink, per_vf=True),
        "qtagent pyroute2, one request": run_qtagent(Pyroute2VfNetlink, per_vf=False),
        "qtagent rtnl, fresh process": run_fresh_process,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    round_ = 0
    for _ in range(args.rounds):
        for name, method in methods.items():
            round_ += 1
            start = time.perf_counter()
            method(pf, round_, args.vfs)
            times[name].append(time.perf_counter() - start)
            check(pf, requests_for(round_, args.vfs))

    knobs = 4 * args.vfs
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{args.vfs} netdevsim VFs x 4 knobs = {knobs} knob changes, median of {args.rounds}")
    print(f"(pyroute2 import + first socket, once per process: {pyroute2_import_s:.2f} s)\n")
    print(f"{'method':32} {'seconds':>8} {'per knob':>10}")
    for name, seconds in median.items():
        print(f"{name:32} {seconds:8.3f} {seconds / knobs * 1e3:8.2f} ms")
    ours = median["qtagent rtnl, one request"]
    ratios = [
        ("ip per knob / qtagent rtnl", median["ip, one process per knob"] / ours, ">= 10"),
        ("qtagent rtnl / ip -batch", ours / median["ip -batch (the limit)"], "<= 1.5"),
        (
            "qtagent pyroute2 / ip -batch",
            median["qtagent pyroute2, one request"] / median["ip -batch (the limit)"],
            "",
        ),
        ("VF by VF / one request", median["qtagent rtnl, VF by VF"] / ours, ""),
    ]
    print()
    for label, ratio, target in ratios:
        print(f"{label:30} = {ratio:6.2f}x" + (f"  (target {target})" if target else ""))


if __name__ == "__main__":
    main()

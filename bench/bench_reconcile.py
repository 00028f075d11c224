"""How much a reconcile pass that finds nothing costs, against a bare enumeration.

The daemon runs a pass after every batch of udev and netlink events and on its
periodic check, so a pass over an unchanged host must cost little more than
reading the host. Builds a fake sysfs tree of 8 igb PFs x 64 VFs, with the fake
kernel's VF tables behind netlink and a real SQLite database recording each PF's
desired count and VF defaults, runs one pass so that nothing drifts, then times,
as the median of interleaved runs:

- qtagent: ``reconcile(ctx)`` under the host lock: the journal, a snapshot with
  every VF's settings, the desired state and allocations from the database, the
  drift plan (nothing to repair, nothing written);
- bare: the plain os walk of bench_enumerate.py over the same tree (the limit for
  reading the host at all).

Target: at most 2x. Run: ``.venv/bin/python bench/bench_reconcile.py [--runs N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
N_PFS = 8
N_VFS = 64
TARGET_RATIO = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_enumerate import bare_walk

    from qtagent.config import parse_host_config
    from qtagent.ops.reconcile import reconcile
    from tests.fakes.host_rig import FakeHostRig
    from tests.fakes.sysfs_tree import igb_host

    with tempfile.TemporaryDirectory(prefix="qtagent-bench-") as tmp:
        host = igb_host(N_PFS, N_VFS, total_vfs=N_VFS, first_bus=0x10, bus_step=0x10)
        rig = FakeHostRig.build(Path(tmp), host)
        text = "".join(
            f'[pf."{pf.address}"]\nnum_vfs = {N_VFS}\nvf_defaults = {{ spoofchk = true }}\n'
            for pf in host.pfs
        )
        config = parse_host_config(text.encode())
        first = reconcile(rig.ctx, config)  # records the desired state, repairs what differs
        writes = rig.bus.writes, len(rig.netlink.sent)
        settled = reconcile(rig.ctx, config)
        assert settled.drift == (), settled.drift
        root = str(rig.tree.root)

        ours: list[float] = []
        bare: list[float] = []
        for _ in range(args.runs):  # interleaved, so load from neighbours hits both
            start = time.perf_counter()
            result = reconcile(rig.ctx)
            ours.append(time.perf_counter() - start)
            assert result.drift == ()
            start = time.perf_counter()
            bare_walk(root)
            bare.append(time.perf_counter() - start)
        assert (rig.bus.writes, len(rig.netlink.sent)) == writes, "a no-change pass wrote"
        rig.ctx.close()

    q, b = statistics.median(ours), statistics.median(bare)
    ms = 1000.0
    print(f"tree: {N_PFS} PFs x {N_VFS} VFs, median of {args.runs} runs")
    print(f"  first pass (repairs {first.repaired})   done")
    print(f"  bare os walk (limit)       {b * ms:8.2f} ms")
    print(
        f"  qtagent no-change reconcile {q * ms:7.2f} ms   ratio {q / b:.2f}x bare"
        f"  (target <= {TARGET_RATIO}x: {'met' if q / b <= TARGET_RATIO else 'MISSED'})"
    )
    print("  writes during the timed passes: 0 sysfs, 0 netlink")
    return 0


if __name__ == "__main__":
    sys.exit(main())

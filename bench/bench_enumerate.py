"""How fast qtagent reads the host from sysfs, against the limit and against pyudev.

Builds a fake sysfs tree of 8 igb PFs x 64 VFs (tests/fakes/sysfs_tree.py) and
times, as the median of several interleaved runs:

- qtagent: ``SysfsReader(root).snapshot()``, with a warm PCI ID cache;
- bare: a plain os.listdir / os.readlink / os.read walk reading the same
  attributes into dicts, with no parsing and no model (the limit);
- pyudev: libudev enumerating the same devices and attributes. libudev reads
  only /sys, so that part runs as root in a private mount namespace with the
  fake tree bind-mounted over /sys (``unshare -m``, in a subprocess).

Run: ``.venv/bin/python bench/bench_enumerate.py [--runs N] [--no-pyudev]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
N_PFS = 8
N_VFS = 64
TARGET_RATIO = 1.5


# ---------------------------------------------------------------- the limit


def _cat(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path).rpartition("/")[2]
    except OSError:
        return None


def _ls(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def bare_walk(root: str) -> list[dict[str, Any]]:
    """The same system calls qtagent makes, with no parsing and no model."""
    groups: dict[str, Any] = {}

    def group(device: str) -> Any:
        number = _readlink(device + "/iommu_group")
        if number is None:
            return None
        if number not in groups:
            devices = f"{root}/kernel/iommu_groups/{number}/devices"
            groups[number] = [
                (m, _readlink(f"{devices}/{m}/driver"), _cat(f"{devices}/{m}/class"))
                for m in _ls(devices)
            ]
        return groups[number]

    pfs = []
    base = root + "/bus/pci/devices"
    for name in sorted(_ls(base)):
        pf = f"{base}/{name}"
        total = _cat(pf + "/sriov_totalvfs")
        if total is None:
            continue
        nets = _ls(pf + "/net")
        netdev = None
        if nets:
            n = f"{pf}/net/{nets[0]}/"
            netdev = [nets[0]] + [_cat(n + a) for a in ("ifindex", "address", "operstate", "speed")]
        entries = _ls(pf)
        vfs = []
        for index in sorted(int(e[6:]) for e in entries if e.startswith("virtfn")):
            link = f"{pf}/virtfn{index}"
            vfs.append(
                (
                    index,
                    _readlink(link),
                    _readlink(link + "/driver"),
                    _ls(link + "/net"),
                    group(link),
                )
            )
        pfs.append(
            {
                "name": name,
                "total": total,
                "vendor": _cat(pf + "/vendor"),
                "device": _cat(pf + "/device"),
                "driver": _readlink(pf + "/driver"),
                "netdev": netdev,
                "numa": _cat(pf + "/numa_node"),
                "group": _readlink(pf + "/iommu_group"),
                "numvfs": _cat(pf + "/sriov_numvfs"),
                "vf_device": _cat(pf + "/sriov_vf_device"),
                "vfs": vfs,
                "alive": os.path.isdir(pf),
            }
        )
    return pfs


# ---------------------------------------------------------------- pyudev


def pyudev_walk() -> list[dict[str, Any]]:
    """The same devices and attributes through pyudev/libudev (reads /sys only).

    libudev cannot read ``iommu_group`` (a link, not an attribute) or list a
    group's members: those two steps use os.readlink/os.listdir as any pyudev
    user would have to.
    """
    import pyudev

    ctx = pyudev.Context()
    netdevs: dict[str, list[Any]] = {}
    for net in ctx.list_devices(subsystem="net"):
        parent = net.parent
        if parent is not None:
            netdevs.setdefault(parent.sys_path, []).append(net)
    groups: dict[str, Any] = {}

    def group(device: Any) -> Any:
        number = _readlink(device.sys_path + "/iommu_group")
        if number is None:
            return None
        if number not in groups:
            members = []
            for m in _ls(f"/sys/kernel/iommu_groups/{number}/devices"):
                member = pyudev.Devices.from_name(ctx, "pci", m)
                members.append((m, member.driver, member.attributes.get("class")))
            groups[number] = members
        return groups[number]

    pfs = []
    for dev in ctx.list_devices(subsystem="pci"):
        attrs = dev.attributes
        total = attrs.get("sriov_totalvfs")
        if total is None:
            continue
        nets = netdevs.get(dev.sys_path, [])
        netdev = None
        if nets:
            na = nets[0].attributes
            netdev = [nets[0].sys_name] + [
                na.get(a) for a in ("ifindex", "address", "operstate", "speed")
            ]
        vfs = []
        numvfs = attrs.get("sriov_numvfs")
        for index in range(int(numvfs or 0)):
            vf = pyudev.Devices.from_sys_path(ctx, f"{dev.sys_path}/virtfn{index}")
            vf_nets = [n.sys_name for n in netdevs.get(vf.sys_path, [])]
            vfs.append((index, vf.sys_name, vf.driver, vf_nets, group(vf)))
        pfs.append(
            {
                "name": dev.sys_name,
                "total": total,
                "vendor": attrs.get("vendor"),
                "device": attrs.get("device"),
                "driver": dev.driver,
                "netdev": netdev,
                "numa": attrs.get("numa_node"),
                "group": _readlink(dev.sys_path + "/iommu_group"),
                "numvfs": numvfs,
                "vf_device": attrs.get("sriov_vf_device"),
                "vfs": vfs,
            }
        )
    return pfs


def pyudev_child(runs: int) -> None:
    """Inside the namespace: time pyudev_walk, print JSON."""
    result = pyudev_walk()
    n_vfs = sum(len(p["vfs"]) for p in result)
    times = _time(pyudev_walk, runs)
    print(json.dumps({"pfs": len(result), "vfs": n_vfs, "times": times}))


# libudev (systemd >= 250) also checks with fstatfs that a device lives on sysfs
# (SYSFS_MAGIC) and refuses any other file system, so a bind-mounted fake tree is
# "no device" to it. This preload shim, compiled for the namespaced child only,
# reports SYSFS_MAGIC for anything under /sys; libudev's reads stay real.
_SYSFS_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>
int fstatfs64(int fd, struct statfs64 *buf) {
    static int (*real)(int, struct statfs64 *);
    char link[64], path[4096];
    if (!real) real = (int (*)(int, struct statfs64 *))dlsym(RTLD_NEXT, "fstatfs64");
    int r = real(fd, buf);
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (r == 0 && n >= 4) {
        path[n] = 0;
        if (strncmp(path, "/sys", 4) == 0 && (path[4] == 0 || path[4] == '/'))
            buf->f_type = 0x62656572; /* SYSFS_MAGIC */
    }
    return r;
}
"""


def _build_shim(tmp: Path) -> Path | None:
    source, shim = tmp / "sysfs_shim.c", tmp / "sysfs_shim.so"
    source.write_text(_SYSFS_SHIM)
    proc = subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"],
        capture_output=True,
        check=False,
    )
    return shim if proc.returncode == 0 else None


def run_pyudev(root: Path, runs: int) -> dict[str, Any] | str:
    """Time pyudev in a private mount namespace with ``root`` over /sys."""
    if os.geteuid() != 0:
        return "skipped: needs root for unshare -m"
    shim = _build_shim(root.parent)
    if shim is None:
        return "skipped: no C compiler for the sysfs-magic shim"
    script = (
        f"mount --bind {root} /sys && LD_PRELOAD={shim} exec {sys.executable}"
        f" {Path(__file__).resolve()} --pyudev-child --runs {runs}"
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


# ---------------------------------------------------------------- driver


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--no-pyudev", action="store_true")
    parser.add_argument("--pyudev-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pyudev_child:
        pyudev_child(args.runs)
        return 0

    sys.path.insert(0, str(REPO))
    from qtagent.sysfs.pci_ids import PciIdDatabase
    from qtagent.sysfs.reader import SysfsReader
    from tests.fakes.sysfs_tree import FakeSysfs, igb_host

    with tempfile.TemporaryDirectory(prefix="qtagent-bench-") as tmp:
        root = Path(tmp) / "sys"
        FakeSysfs(root).build(
            igb_host(N_PFS, N_VFS, total_vfs=N_VFS, first_bus=0x10, bus_step=0x10)
        )
        reader = SysfsReader(root, pci_ids=PciIdDatabase())
        snapshot = reader.snapshot()  # warms the PCI ID cache
        n_vfs = sum(len(pf.vfs) for pf in snapshot.pfs)
        assert (len(snapshot.pfs), n_vfs) == (N_PFS, N_PFS * N_VFS), snapshot
        bare_walk(str(root))

        ours: list[float] = []
        bare: list[float] = []
        for _ in range(args.runs):  # interleaved, so load from neighbours hits both
            ours += _time(reader.snapshot, 1)
            bare += _time(lambda: bare_walk(str(root)), 1)
        cold = statistics.median(  # a fresh reader each time: pci.ids read and searched
            _time(lambda: SysfsReader(root, pci_ids=PciIdDatabase()).snapshot(), 1)[0]
            for _ in range(5)
        )

        ms = 1000.0
        q, b = statistics.median(ours), statistics.median(bare)
        print(f"tree: {N_PFS} PFs x {N_VFS} VFs ({n_vfs} VFs), median of {args.runs} runs")
        print(f"  bare os walk (limit)   {b * ms:8.2f} ms")
        print(
            f"  qtagent snapshot       {q * ms:8.2f} ms   ratio {q / b:.2f}x bare"
            f"  (target <= {TARGET_RATIO}x: {'met' if q / b <= TARGET_RATIO else 'MISSED'})"
        )
        print(f"  qtagent, cold pci.ids  {cold * ms:8.2f} ms   (fresh reader, median of 5)")
        if not args.no_pyudev:
            result = run_pyudev(root, args.runs)
            if isinstance(result, str):
                print(f"  pyudev                 {result}")
            else:
                p = statistics.median(result["times"])
                print(
                    f"  pyudev (libudev)       {p * ms:8.2f} ms   ratio {p / b:.2f}x bare,"
                    f" qtagent is {p / q:.1f}x faster   ({result['pfs']} PFs, {result['vfs']} VFs)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

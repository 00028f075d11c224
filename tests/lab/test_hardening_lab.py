"""`qtagent serve` under systemd/qtagent.service's hardening, on the real kernel (issue 3).

The lab guest has no systemd as PID 1, so the unit cannot be started as a unit
there. The settings that are a process's own state are applied here as systemd
applies them, with util-linux, and read back from /proc; the daemon then has to
do its job under them: put back an `ip link` change (CAP_NET_ADMIN over netlink)
and an external unbind (sysfs writes with a read-only root).

Exercised: CapabilityBoundingSet (setpriv --bounding-set, and no ambient or
inheritable capabilities), NoNewPrivileges (setpriv --no-new-privs), UMask=0077,
ProtectSystem=strict (every mount read-only in a private mount namespace but /proc,
/sys, /dev and the state directory), ProtectHome (a read-only tmpfs over /root and
/home; an interpreter installed there is bound back read-only, as
BindReadOnlyPaths= would).

Not exercised here, because each needs systemd itself (seccomp filters, BPF and
cgroups it installs as PID 1): SystemCallFilter=, SystemCallArchitectures=,
RestrictAddressFamilies=, MemoryDenyWriteExecute=, LockPersonality=,
RestrictRealtime=, RestrictSUIDSGID=, RestrictNamespaces= (seccomp); IPAddressDeny=
and DevicePolicy= (cgroup BPF); ProtectKernelModules=, ProtectKernelLogs=,
ProtectClock=, ProtectHostname=, ProtectControlGroups= (mount and seccomp
combinations); WatchdogSec= and Type=notify are covered by tests/unit/test_daemon_serve.py
against a real notify socket. tests/unit/test_daemon_unit.py checks the unit with
`systemd-analyze verify` where that tool is installed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qtagent.ops.context import HostContext, HostPaths
from qtagent.ops.provision import set_vf_count
from tests.lab.labkit import IGB, IN_LAB_GUEST, SYS, driver_of, write

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd/qtagent.service"
STAGE = "/run/qtagent-hardening-stage"  # where a home's interpreter waits while tmpfs goes over

pytestmark = [*IN_LAB_GUEST, pytest.mark.timeout(600)]


def unit_setting(name: str) -> str:
    for line in UNIT.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{UNIT} has no {name}=")


def bounding_set() -> str:
    """The unit's CapabilityBoundingSet= as setpriv's --bounding-set argument."""
    caps = unit_setting("CapabilityBoundingSet").split()
    return "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps)


def cap_mask(names: list[str]) -> int:
    numbers = {"CAP_DAC_READ_SEARCH": 2, "CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19}
    return sum(1 << numbers[n] for n in names)


def protect_system_script(keep: list[str], command: list[str]) -> str:
    """A shell script for `unshare -m`: ProtectSystem=strict and ProtectHome=yes, then exec."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    writable = ("/proc", "/sys", "/dev", *keep)
    homes = [h for h in ("/root", "/home") if Path(h).is_dir()]
    # An interpreter installed under a home (pyenv in /root, as on this rig) is made
    # visible again the way an operator's drop-in would: ProtectHome=tmpfs plus
    # BindReadOnlyPaths= of its prefix (systemd/README.md).
    shown = [sys.base_prefix] if any(_under(sys.base_prefix, h) for h in homes) else []
    lines = ["set -e", "mount --make-rprivate /"]
    lines += [f"mkdir -p {STAGE} && mount -n --bind {p} {STAGE}" for p in shown]
    lines += [f"mount --bind {k} {k}" for k in keep]
    for mount in sorted(set(mounts)):
        if not any(mount == w or mount.startswith(w + "/") for w in writable):
            lines.append(f"mount -o remount,bind,ro {mount} 2>/dev/null || true")
    lines += [f"mount -n -t tmpfs tmpfs {h}" for h in homes]
    lines += [f"mkdir -p {p} && mount -n --move {STAGE} {p}" for p in shown]
    lines += [f"mount -n -o remount,bind,ro {p}" for p in shown]
    lines += [f"mount -n -o remount,ro {h}" for h in homes]
    lines += ["umask 077", "exec " + " ".join(command)]
    return "\n".join(lines)


def _under(path: str, home: str) -> bool:
    return path == home or path.startswith(home + "/")


def test_the_daemon_does_its_job_under_the_units_hardening(tmp_path: Path) -> None:
    pf = sorted(p.name for p in IGB.glob("0000:*"))[0]
    netdev = next((SYS / "bus/pci/devices" / pf / "net").iterdir()).name
    state = tmp_path / "state"
    state.mkdir()
    db = state / "qtagent.db"
    with HostContext(HostPaths(db_path=db)) as ctx:
        set_vf_count(ctx, pf, 0)
    config = tmp_path / "host.toml"
    config.write_text(f'[pf."{pf}"]\nnum_vfs = 2\nvf_defaults = {{ trust = false }}\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(state / "notify"))
    daemon_argv = [
        "setpriv", "--no-new-privs", f"--bounding-set={bounding_set()}", "--inh-caps=-all",
        "--ambient-caps=-all", sys.executable, "-m", "qtagent.cli", "--db", str(db), "serve",
        "--config", str(config),
    ]  # fmt: skip
    script = protect_system_script([str(state), str(tmp_path)], daemon_argv)
    env = {**os.environ, "NOTIFY_SOCKET": str(state / "notify"), "PYTHONPATH": str(REPO)}
    daemon = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=env)
    try:
        assert _notified(notify, daemon).startswith("STATUS=starting")
        ready = _notified(notify, daemon)
        assert ready.startswith("READY=1") and "2 VFs" in ready, ready
        status = Path(f"/proc/{daemon.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        wanted = cap_mask(unit_setting("CapabilityBoundingSet").split())
        assert int(fields["CapBnd"], 16) == wanted
        assert int(fields["CapEff"], 16) == wanted and int(fields["CapInh"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        assert oct(os.stat(db).st_mode & 0o777) == "0o600"

        subprocess.run(["ip", "link", "set", netdev, "vf", "0", "trust", "on"], check=True)
        assert _until(lambda: _trust(netdev, 0) is False), "trust not put back under hardening"
        address = os.readlink(SYS / "bus/pci/devices" / pf / "virtfn1").rpartition("/")[2]
        write(SYS / "bus/pci/devices" / address / "driver/unbind", address)
        assert _until(lambda: driver_of(address) == "igbvf"), "unbind not repaired"
    finally:
        os.kill(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=120)
        with HostContext(HostPaths(db_path=db)) as ctx:
            set_vf_count(ctx, pf, 0)
    assert daemon.returncode == 0


def _notified(notify: socket.socket, daemon: subprocess.Popen[bytes]) -> str:
    """The daemon's next sd_notify message; fails at once if it exited instead."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if select.select([notify], [], [], 1.0)[0]:
            return notify.recv(65536).decode()
        assert daemon.poll() is None, f"the hardened daemon exited with {daemon.returncode}"
    raise AssertionError("no sd_notify message from the hardened daemon in 300 s")


def _trust(netdev: str, index: int) -> object:
    shown = subprocess.run(["ip", "-j", "link", "show", netdev], capture_output=True,
                           text=True, check=True)  # fmt: skip
    vfs = {int(v["vf"]): v for v in json.loads(shown.stdout)[0]["vfinfo_list"]}
    return vfs[index]["trust"]


def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False

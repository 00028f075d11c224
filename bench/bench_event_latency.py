"""From a udev event to qtagent's updated view, in the lab (issue 3).

Starts `qtagent serve` on the lab's second igb PF (3 VFs, a config with defaults),
then 50 times unbinds VF2 from igbvf behind the daemon's back (``echo $vf >
.../driver/unbind``) and measures, for each event:

- uevent (the limit): when this process's own NETLINK_KOBJECT_UEVENT socket gets the
  kernel's "unbind" uevent: the earliest any agent can know;
- view updated: when the daemon's heartbeat in its database moves past the event
  (its pass over the PF has ended: `qtagent status` shows the new view);
- repaired: when the VF is back on igbvf (the daemon's repair, read from sysfs).

Prints median and maximum of each, and qtagent's ratio to the limit.
Run in the lab: ``qtagent lab run -- .venv/bin/python bench/bench_event_latency.py``
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYS = Path("/sys")
NETLINK_KOBJECT_UEVENT = 15


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from qtagent.ops.context import HostContext, HostPaths
    from qtagent.ops.provision import set_vf_count
    from qtagent.store.status import DaemonTable
    from qtagent.store.store import Store

    pf = sorted(p.name for p in (SYS / "bus/pci/drivers/igb").glob("0000:*"))[-1]
    with tempfile.TemporaryDirectory(prefix="qtagent-latency-") as tmp:
        work = Path(tmp)
        db = work / "qtagent.db"
        with HostContext(HostPaths(db_path=db)) as ctx:
            set_vf_count(ctx, pf, 0)
        config = work / "host.toml"
        config.write_text(f'[pf."{pf}"]\nnum_vfs = 3\nvf_defaults = {{ spoofchk = true }}\n')
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(work / "notify"))
        env = {**os.environ, "NOTIFY_SOCKET": str(work / "notify"), "PYTHONPATH": str(REPO)}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "qtagent.cli", "--db", str(db), "serve", "--config",
             str(config)], env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not notify.recv(65536).startswith(b"READY=1"):
                pass
            address = os.readlink(SYS / f"bus/pci/devices/{pf}/virtfn2").rpartition("/")[2]
            uevents = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
            uevents.bind((0, 1))
            raw: list[float] = []
            view: list[float] = []
            repaired: list[float] = []
            for _ in range(args.events):
                _wait_driver(address, "igbvf")
                with Store(db, readonly=True) as store:
                    record = DaemonTable(store).get()
                before = record.heartbeat_at if record else None
                start = time.monotonic()
                _write(SYS / f"bus/pci/devices/{address}/driver/unbind", address)
                raw.append(_wait_uevent(uevents, "ACTION=unbind", address) - start)
                repaired.append(_wait_driver(address, "igbvf") - start)
                view.append(_wait_heartbeat(db, before) - start)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
            with HostContext(HostPaths(db_path=db)) as ctx:
                set_vf_count(ctx, pf, 0)
    ms = 1000.0
    print(f"{args.events} external unbinds of one VF, lab guest (TCG)")
    for name, values in (("uevent (limit)", raw), ("view updated", view), ("repaired", repaired)):
        print(f"  {name:<16} median {statistics.median(values) * ms:8.1f} ms"
              f"   max {max(values) * ms:8.1f} ms")  # fmt: skip
    ratio = statistics.median(view) / statistics.median(raw)
    print(f"  qtagent view updated / uevent: {ratio:.1f}x (median)")
    return 0


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _wait_uevent(sock: socket.socket, action: str, name: str) -> float:
    while True:
        data = sock.recv(65536)
        fields = data.split(b"\0")
        if action.encode() in fields and any(name.encode() in f for f in fields):
            return time.monotonic()


def _wait_driver(address: str, driver: str, timeout: float = 60.0) -> float:
    link = SYS / f"bus/pci/devices/{address}/driver"
    deadline = time.monotonic() + timeout
    while not (link.exists() and os.readlink(link).rpartition("/")[2] == driver):
        if time.monotonic() > deadline:
            raise SystemExit(f"{address} did not get {driver} within {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def _wait_heartbeat(db: Path, before: object, timeout: float = 60.0) -> float:
    from qtagent.store.status import DaemonTable
    from qtagent.store.store import Store

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Store(db, readonly=True) as store:
            record = DaemonTable(store).get()
        if record is not None and record.heartbeat_at != before:
            return time.monotonic()
        time.sleep(0.005)
    raise SystemExit("the daemon's view did not change")


if __name__ == "__main__":
    sys.exit(main())

"""From a udev event to qtagent's updated view, in the lab (issue 3).

Starts `qtagent serve` on the lab's second igb PF (3 VFs), then unbinds VF2 from
igbvf behind the daemon's back (``echo $vf > .../driver/unbind``) and measures:

- uevent (the limit): when this process's own NETLINK_KOBJECT_UEVENT socket gets the
  kernel's "unbind" uevent: the earliest any agent can know;
- view updated: when the daemon's record shows the VF without its driver (its drift
  table, which `qtagent status` prints); the PF's policy is drift = "report" for these
  50 events, so the pass only looks, and the VF is put back by this script;
- repaired (20 more events under drift = "repair", each once the daemon is idle):
  when the VF is back on igbvf.

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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYS = Path("/sys")
NETLINK_KOBJECT_UEVENT = 15


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--repairs", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from qtagent.ops.context import HostContext, HostPaths
    from qtagent.ops.provision import set_vf_count

    pf = sorted(p.name for p in (SYS / "bus/pci/drivers/igb").glob("0000:*"))[-1]
    with tempfile.TemporaryDirectory(prefix="qtagent-latency-") as tmp:
        work = Path(tmp)
        db = work / "qtagent.db"
        with HostContext(HostPaths(db_path=db)) as ctx:
            set_vf_count(ctx, pf, 0)
            set_vf_count(ctx, pf, 3)  # drift = "report": the daemon makes no VFs itself
        config = work / "host.toml"
        config.write_text(_config(pf, "report"))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(work / "notify"))
        env = {**os.environ, "NOTIFY_SOCKET": str(work / "notify"), "PYTHONPATH": str(REPO),
               "PYTHONFAULTHANDLER": "1"}  # fmt: skip
        log = (work / "serve.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "qtagent.cli", "--db", str(db), "-v", "serve", "--config",
             str(config)], env=env, stderr=log,
        )  # fmt: skip
        try:
            _wait_notify(notify, "READY=1")
            address = os.readlink(SYS / f"bus/pci/devices/{pf}/virtfn2").rpartition("/")[2]
            vf = f"{pf}/vf2"  # as qtagent names it: PF and index
            uevents = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
            uevents.bind((0, 1))
            raw: list[float] = []
            view: list[float] = []
            for _ in range(args.events):
                _until(lambda: not _unbound_on_record(db, vf))
                start = time.monotonic()
                _write(SYS / f"bus/pci/devices/{address}/driver/unbind", address)
                raw.append(_wait_uevent(uevents, "ACTION=unbind", address) - start)
                view.append(_until(lambda: _unbound_on_record(db, vf)) - start)
                _write(SYS / "bus/pci/drivers_probe", address)  # the operator puts it back
            config.write_text(_config(pf, "repair"))
            daemon.send_signal(signal.SIGHUP)
            _wait_notify(notify, "READY=1")
            repaired: list[float] = []
            for _ in range(args.repairs):
                _until(lambda: _driver(address) == "igbvf" and not _unbound_on_record(db, vf))
                _idle(db)  # the pass after the last repair (igbvf's probe: ~2 s) is over
                start = time.monotonic()
                _write(SYS / f"bus/pci/devices/{address}/driver/unbind", address)
                repaired.append(_until(lambda: _driver(address) == "igbvf") - start)
        except BaseException:
            _stop(daemon)
            sys.stderr.write((work / "serve.log").read_text()[-20000:])
            raise
        finally:
            _stop(daemon)
            log.close()
            with HostContext(HostPaths(db_path=db)) as ctx:
                set_vf_count(ctx, pf, 0)
    ms = 1000.0
    print(f"External unbinds of one VF, lab guest (TCG): {args.events} reported, "
          f"{args.repairs} repaired")  # fmt: skip
    for name, values in (("uevent (limit)", raw), ("view updated", view), ("repaired", repaired)):
        print(f"  {name:<16} median {statistics.median(values) * ms:8.1f} ms"
              f"   max {max(values) * ms:8.1f} ms")  # fmt: skip
    ratio = statistics.median(view) / statistics.median(raw)
    print(f"  qtagent view updated / uevent: {ratio:.1f}x (median)")
    return 0


def _config(pf: str, drift: str) -> str:
    return f'[pf."{pf}"]\nnum_vfs = 3\ndrift = "{drift}"\nvf_defaults = {{ spoofchk = true }}\n'


def _unbound_on_record(db: Path, vf: str) -> bool:
    """The daemon's drift table says VF ``vf`` (``PF/vfN``) has lost its driver."""
    from qtagent.store.status import DriftTable
    from qtagent.store.store import Store

    with Store(db, readonly=True) as store:
        return any(d.aspect == "driver" and d.subject == vf for d in DriftTable(store).all())


def _idle(db: Path, quiet_s: float = 0.5) -> None:
    """Until the daemon's heartbeat has not moved for ``quiet_s``: no pass under way."""
    from qtagent.store.status import DaemonTable
    from qtagent.store.store import Store

    last, since = None, time.monotonic()
    while time.monotonic() - since < quiet_s:
        with Store(db, readonly=True) as store:
            record = DaemonTable(store).get()
        beat = record.heartbeat_at if record else None
        if beat != last:
            last, since = beat, time.monotonic()
        time.sleep(0.02)


def _wait_notify(notify: socket.socket, prefix: str) -> None:
    notify.settimeout(300)
    while not notify.recv(65536).decode().startswith(prefix):
        pass


def _until(check: Callable[[], bool], timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def _driver(address: str) -> str | None:
    link = SYS / f"bus/pci/devices/{address}/driver"
    try:
        return os.readlink(link).rpartition("/")[2]
    except FileNotFoundError:
        return None


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM; a daemon still there after 120 s gets SIGABRT, so its log shows where."""
    if daemon.poll() is not None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=120)
    except subprocess.TimeoutExpired:
        daemon.send_signal(signal.SIGABRT)
        daemon.wait(timeout=30)


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


if __name__ == "__main__":
    sys.exit(main())

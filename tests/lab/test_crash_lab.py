"""Fault injection on the real kernel (issue 3): a process changing the host is killed
with SIGKILL at every step boundary of VF creation, binding, assignment and release,
and the restarted agent's recovery must leave the host consistent.

For each failpoint (qtagent.journal.failpoints) a forked child runs the operation
with that point armed and kills itself there: a real SIGKILL of a real process that
holds the host lock and has the journal half written, with igb, igbvf, vfio-pci,
libvirt and a running tiny-guest VM under it. The parent then restarts the agent: a
real `qtagent serve` on the same database, until it says READY=1 (its start-up
finishes or rolls back the journal first). The consistency checker must then find
nothing: no VF on vfio-pci without an owner, none held twice, no free VF carrying the
VM's MAC or VLAN, the database agreeing with the kernel and libvirt. The table of
points tried and outcomes is printed and saved to $QTAGENT_LAB_OUT.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qtagent.journal.failpoints import Failpoints, points_of
from qtagent.lab.guestvm import start_tiny_guest, wait_for_libvirt
from qtagent.model.types import MacAddress
from qtagent.ops.assign import ATTACH_STEPS, attach
from qtagent.ops.audit import audit
from qtagent.ops.bind import BIND_STEPS, bind_vf
from qtagent.ops.context import HostContext, HostPaths
from qtagent.ops.provision import VF_COUNT_STEPS, set_vf_count
from qtagent.ops.release import RELEASE_STEPS, detach
from qtagent.store.journal import Journal
from tests.lab.labkit import IGB, IN_LAB_GUEST, driver_of, save_timings

REPO = Path(__file__).resolve().parents[2]
VM = "crash-vm"
VM_MAC = MacAddress.parse("52:54:00:cc:00:01")
VM_VLAN = 300
GIVEN = ((VM_MAC, VM_VLAN),)

pytestmark = [*IN_LAB_GUEST, pytest.mark.timeout(1800)]


@dataclass
class Lab:
    db: Path
    pf: str
    rows: list[tuple[str, str, str, str]]

    def context(self, failpoint: str | None = None) -> HostContext:
        return HostContext(HostPaths(db_path=self.db), failpoints=Failpoints(failpoint))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("crash")
    pf = sorted(p.name for p in IGB.glob("0000:*"))[-1]
    lab = Lab(work / "qtagent.db", pf, [])
    with lab.context() as ctx:
        set_vf_count(ctx, pf, 0)
        set_vf_count(ctx, pf, 2)
        wait_for_libvirt()
        start_tiny_guest(ctx.virt, VM, work)
    yield lab
    with lab.context() as ctx:
        ctx.virt.destroy(VM)
        set_vf_count(ctx, pf, 0)
    table = "\n".join(f"{p:<24} {k:<10} {r:<40} {f}" for p, k, r, f in lab.rows)
    header = f"{'point':<24} {'killed':<10} {'recovery':<40} findings\n"
    print("\n" + header + table)
    save_timings("crash", {"points": len(lab.rows), "table": header + table})


def killed_at(lab: Lab, point: str, operation: Callable[[HostContext], object]) -> str:
    """Run ``operation`` in a forked child with ``point`` armed; how the child ended."""
    pid = os.fork()
    if pid == 0:  # the child: its own context, database connection and lock
        code = 0
        try:
            with lab.context(point) as ctx:
                operation(ctx)
        except BaseException:  # the child must never return into pytest
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit {os.WEXITSTATUS(status)}"


def restart(lab: Lab, point: str, how: str) -> HostContext:
    """Restart the agent: a real `qtagent serve` on the same database, started as
    systemd starts it, until READY=1 (its start-up finishes or rolls back the journal),
    then stopped with SIGTERM; then the checker. Returns a context for more checks."""
    outcomes = serve_until_ready(lab.db)
    outcome = ", ".join(f"{kind} {result}" for kind, result in outcomes) or "nothing to do"
    ctx = lab.context()
    findings = audit(ctx, vm_settings=GIVEN)
    lab.rows.append((point, how, outcome, "; ".join(map(str, findings)) or "none"))
    assert how == "SIGKILL", f"{point}: the child was not killed there ({how})"
    assert all(result in ("completed", "undone") for _, result in outcomes), outcomes
    # Killed before its entry was closed, the change is found and finished or undone.
    assert len(outcomes) == (0 if point.endswith(".finish") else 1), (point, outcomes)
    assert Journal(ctx.store).open_entries() == ()
    assert findings == (), findings
    return ctx


def serve_until_ready(db: Path) -> list[tuple[str, str]]:
    """Start `qtagent serve` (no host config: the desired state on record), wait for
    READY=1, stop it; the journal entries it recovered at start, as (kind, outcome)."""
    with tempfile.TemporaryDirectory(prefix="qtagent-crash-") as tmp:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(f"{tmp}/notify")
        notify.settimeout(300)
        env = {**os.environ, "NOTIFY_SOCKET": f"{tmp}/notify", "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "qtagent.cli", "--db", str(db), "serve",
                   "--config", f"{tmp}/none.toml"]  # fmt: skip
        with open(f"{tmp}/serve.log", "w+b") as log:
            daemon = subprocess.Popen(command, env=env, stderr=log)
            try:
                while not notify.recv(65536).startswith(b"READY=1"):
                    pass
            finally:
                daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(timeout=120)
                notify.close()
            log.seek(0)
            text = log.read().decode(errors="replace")
    assert code == 0, text
    return [(m["kind"], m["outcome"]) for m in _RECOVERED.finditer(text)]


_RECOVERED = re.compile(r"at start: (?P<kind>\w+) of .* (?P<outcome>\w+)$", re.MULTILINE)


@pytest.mark.parametrize("point", points_of("vf_count", VF_COUNT_STEPS))
def test_killed_during_vf_creation(lab: Lab, point: str) -> None:
    how = killed_at(lab, point, lambda ctx: set_vf_count(ctx, lab.pf, 4))
    with restart(lab, point, how) as ctx:
        pf = ctx.pf(lab.pf, settings=False)
        assert pf.num_vfs == 4 and all(vf.driver == "igbvf" for vf in pf.vfs)
        set_vf_count(ctx, lab.pf, 2)


@pytest.mark.parametrize("point", points_of("bind", BIND_STEPS))
def test_killed_during_binding(lab: Lab, point: str) -> None:
    how = killed_at(lab, point, lambda ctx: bind_vf(ctx, lab.pf, 1, "vfio-pci"))
    with restart(lab, point, how) as ctx:
        vf = ctx.pf(lab.pf, settings=False).vf(1)
        assert vf.driver == ("vfio-pci" if point == "bind.finish" else "igbvf")
        bind_vf(ctx, lab.pf, 1, "host")


@pytest.mark.parametrize("point", points_of("attach", ATTACH_STEPS))
def test_killed_during_assignment(lab: Lab, point: str) -> None:
    how = killed_at(
        lab, point, lambda ctx: attach(ctx, VM, lab.pf, index=0, mac=VM_MAC, vlan=VM_VLAN)
    )
    with restart(lab, point, how) as ctx:
        vf = ctx.pf(lab.pf).vf(0)
        if point == "attach.finish":
            assert vf.address in ctx.virt.hostdev_addresses(VM)
            detach(ctx, VM, lab.pf, 0)
        else:
            assert vf.address not in ctx.virt.hostdev_addresses(VM)
            assert driver_of(vf.address or "") == "igbvf" and vf.settings.vlan == 0


@pytest.mark.parametrize("point", points_of("release", RELEASE_STEPS))
def test_killed_during_release(lab: Lab, point: str) -> None:
    with lab.context() as ctx:
        attach(ctx, VM, lab.pf, index=0, mac=VM_MAC, vlan=VM_VLAN)
    how = killed_at(lab, point, lambda ctx: detach(ctx, VM, lab.pf, 0))
    with restart(lab, point, how) as ctx:
        vf = ctx.pf(lab.pf).vf(0)
        assert ctx.store.allocation(vf.id) is None
        assert vf.address not in ctx.virt.hostdev_addresses(VM)
        assert vf.driver == "igbvf" and vf.settings.mac != VM_MAC and vf.settings.vlan == 0

"""`qtagent status`: the agent's view of this host, from its database and sysfs.

Only reads: the daemon's heartbeat and status line, the PFs and VFs, who holds
which VF, quarantined VFs, the drift the daemon sees, unfinished journal entries
(and when each is retried), and the last events. ``--audit`` also asks libvirt
which VM holds which VF and checks the database against the kernel and libvirt.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click

from qtagent.cli.common import host
from qtagent.cli.output import emit, table
from qtagent.journal.recovery import retry_at
from qtagent.ops.audit import audit
from qtagent.ops.context import HostContext
from qtagent.store.journal import Journal
from qtagent.store.quarantine import EventLog, QuarantineTable
from qtagent.store.status import DaemonRecord, DaemonTable, DriftTable
from qtagent.store.store import Store

EVENTS_SHOWN = 10


@click.command("status")
@click.option(
    "--audit", "with_audit", is_flag=True, envvar="QTAGENT_AUDIT",
    help="Also check the database against the kernel and libvirt (asks libvirt).",
)  # fmt: skip
def status_cmd(with_audit: bool) -> None:
    """The agent's view: daemon, PFs, allocations, quarantine, drift, journal, events."""
    ctx = host()
    snapshot = ctx.snapshot(settings=False)
    store = ctx.store_for_reading
    data: dict[str, object] = {
        "pfs": len(snapshot.pfs),
        "vfs": sum(len(pf.vfs) for pf in snapshot.pfs),
    }
    lines = [f"PFs: {data['pfs']}, VFs: {data['vfs']}"]
    if store is None:
        data |= {"daemon": None, "database": None}
        lines.append("no allocation database yet: nothing was ever changed through qtagent")
        emit(data, "\n".join(lines))
        return
    data |= _from_store(store, lines)
    if with_audit:
        data["audit"] = _audit(ctx, lines)
    emit(data, "\n".join(lines))


def _from_store(store: Store, lines: list[str]) -> dict[str, object]:
    now = datetime.now(UTC)
    daemon = DaemonTable(store).get()
    lines.insert(0, _daemon_line(daemon, now))
    allocations = store.allocations()
    quarantined = QuarantineTable(store).all()
    drift = DriftTable(store).all()
    journal = Journal(store).open_entries()
    events = EventLog(store).last(EVENTS_SHOWN)
    sections: list[tuple[str, list[str], list[list[object]]]] = [
        ("Allocations", ["vf", "vm", "state", "mac", "vlan"],
         [[a.vf, a.vm.name, a.state, a.mac, a.vlan] for a in allocations]),
        ("Quarantined VFs", ["vf", "since", "reason"],
         [[q.vf, q.since.isoformat(timespec="seconds"), q.reason] for q in quarantined]),
        ("Drift", ["subject", "aspect", "have", "want", "action"],
         [[d.subject, d.aspect, d.have, d.want, "repairing" if d.repair else d.why]
          for d in drift]),
        ("Unfinished changes (journal)", ["id", "change", "subject", "done", "tries", "retry",
                                          "last error"],
         [[e.id, e.kind, e.subject, ",".join(e.done) or "-", e.attempts,
           _when(retry_at(e), now), e.last_error] for e in journal]),
        ("Last events", ["at", "kind", "subject", "detail"],
         [[e.at.isoformat(timespec="seconds"), e.kind, e.subject, e.detail] for e in events]),
    ]  # fmt: skip
    for title, headers, rows in sections:
        lines.append(f"\n{title}: " + ("none" if not rows else ""))
        if rows:
            lines.append(table(headers, rows))
    return {
        "daemon": None if daemon is None else {
            "pid": daemon.pid, "running": _alive(daemon.pid),
            "started_at": daemon.started_at.isoformat(),
            "heartbeat_at": daemon.heartbeat_at.isoformat(), "status": daemon.status,
        },
        "allocations": [
            {"vf": str(a.vf), "vm": a.vm.name, "state": str(a.state),
             "mac": str(a.mac) if a.mac else None, "vlan": a.vlan} for a in allocations
        ],
        "quarantined": [
            {"vf": str(q.vf), "reason": q.reason, "since": q.since.isoformat()} for q in quarantined
        ],
        "drift": [d.to_dict() for d in drift],
        "journal": [
            {"id": e.id, "kind": str(e.kind), "subject": e.subject, "done": list(e.done),
             "attempts": e.attempts, "last_error": e.last_error,
             "retry_at": retry_at(e).isoformat()} for e in journal
        ],
        "events": [
            {"at": e.at.isoformat(), "kind": e.kind, "subject": e.subject, "detail": e.detail}
            for e in events
        ],
    }  # fmt: skip


def _audit(ctx: HostContext, lines: list[str]) -> list[str]:
    findings = [str(f) for f in audit(ctx)]
    lines.append("\nAudit: " + ("the database agrees with the kernel and libvirt"
                                if not findings else ""))  # fmt: skip
    lines += [f"  {f}" for f in findings]
    return findings


def _daemon_line(daemon: DaemonRecord | None, now: datetime) -> str:
    if daemon is None:
        return "Daemon: not running (start it: systemctl start qtagent)"
    if not _alive(daemon.pid):
        return (
            f"Daemon: not running (pid {daemon.pid} is gone; last heartbeat "
            f"{_ago(daemon.heartbeat_at, now)})"
        )
    since = daemon.started_at.isoformat(timespec="seconds")
    return (
        f"Daemon: running, pid {daemon.pid}, since {since}, "
        f"heartbeat {_ago(daemon.heartbeat_at, now)}: {daemon.status}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(then: datetime, now: datetime) -> str:
    return f"{max((now - then).total_seconds(), 0):.0f} s ago"


def _when(at: datetime, now: datetime) -> str:
    return "now" if at <= now else f"in {(at - now).total_seconds():.0f} s"

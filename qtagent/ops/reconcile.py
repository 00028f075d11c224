"""One look at the host: finish the journal, find drift, repair what is safe (issue 3).

The daemon runs this at start, after each batch of udev and netlink events, and
on its periodic check. Under the host lock: first the journal's due entries
(:mod:`qtagent.ops.recover`), then a snapshot compared with the desired state
(:mod:`qtagent.plan.drift`), then the repairs: VF counts through the journaled
change, knobs through the PF one at a time with read-back, a host driver for a
free VF left without one. What is only reported, or could not be repaired, is
kept in the database's drift table for `qtagent status`; each change of the drift
is an event. A pass that finds nothing to do writes nothing to sysfs or netlink.

The desired state is the host config (PF names resolved against the snapshot on
every pass, so a PF that appears later is picked up) recorded in the database,
or, without a config, what `qtagent apply` recorded there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from qtagent.config import HostConfig, PfConfig, pf_section
from qtagent.errors import ConfigError, NotFound, QtagentError
from qtagent.journal.recovery import retry_at
from qtagent.journal.runner import Runner
from qtagent.model.host import HostSnapshot
from qtagent.ops.context import HostContext
from qtagent.ops.program import program_vf
from qtagent.ops.provision import change_vf_count
from qtagent.ops.recover import changing
from qtagent.plan.drift import Desired, Drift, DriftPlan, plan_drift
from qtagent.plan.vfcount import plan_vf_count
from qtagent.store.journal import ChangeKind
from qtagent.store.quarantine import EventLog, set_aside
from qtagent.store.status import DriftTable

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one pass found and did. ``failed``: repairs that did not succeed, each
    with its error (they stay drift, and the next pass tries again)."""

    drift: tuple[Drift, ...]
    repaired: int
    failed: tuple[str, ...]
    unknown_pfs: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """One line for sd_notify's STATUS and the log."""
        reported = sum(1 for d in self.drift if not d.repair)
        parts = [f"drift {len(self.drift)} ({self.repaired} repaired, {reported} reported)"]
        if self.failed:
            parts.append(f"{len(self.failed)} repairs failed")
        if self.unknown_pfs:
            parts.append(f"PFs not found: {', '.join(self.unknown_pfs)}")
        return "; ".join(parts)


def record_config(ctx: HostContext, config: HostConfig, snapshot: HostSnapshot) -> tuple[str, ...]:
    """Record ``config``'s PFs that this host has as the desired state; returns the
    names of those it does not have (yet)."""
    missing = []
    found: dict[str, PfConfig] = {}
    for wanted in config.pfs:
        try:
            pf = snapshot.pf(wanted.name)
        except NotFound:
            missing.append(wanted.name)
            continue
        if pf.name in found:  # as `qtagent apply` refuses it: nothing is recorded
            raise ConfigError(
                f"PF {pf.name} is named twice in the config: as "
                f"{pf_section(found[pf.name].name)} and as {pf_section(wanted.name)}",
                hint="keep one section per PF: delete or merge one of them",
            )
        found[pf.name] = wanted
    for name, wanted in found.items():
        pf = snapshot.pf(name)
        recorded = ctx.store.desired(pf.name)
        same = recorded is not None and (
            (recorded.num_vfs, recorded.defaults, recorded.drift)
            == (wanted.num_vfs, wanted.vf_defaults, wanted.drift)
        )
        if not same:
            ctx.store.set_desired(pf.name, wanted.num_vfs, wanted.vf_defaults, wanted.drift)
    return tuple(missing)


def reconcile(
    ctx: HostContext, config: HostConfig | None = None, *, pfs: frozenset[str] | None = None
) -> ReconcileResult:
    """One pass (see the module docstring). ``pfs``: look only at these PFs (device
    names: the ones a batch of events touched), reading only their VF settings over
    netlink; None: every PF."""
    with changing(ctx) as runner:
        snapshot = ctx.snapshot(settings_of=pfs)
        unknown = record_config(ctx, config, snapshot) if config is not None else ()
        if pfs is not None:
            snapshot = HostSnapshot(tuple(pf for pf in snapshot.pfs if pf.name in pfs))
        desired: Mapping[str, Desired] = {
            d.pf: Desired(d.num_vfs, d.defaults, d.drift) for d in ctx.store.all_desired()
        }
        plan = plan_drift(snapshot, desired, ctx.store.allocations(), set_aside(ctx.store))
        table = DriftTable(ctx.store)
        known = table.all()
        _announce(ctx, plan.drift, known)
        failed = _repair(ctx, runner, snapshot, plan)
        still = tuple(d for d in plan.drift if not d.repair or _subject_failed(d, failed))
        _record(ctx, table, known, plan.drift, still, pfs=pfs)
    result = ReconcileResult(
        plan.drift, plan.repairs - len(failed), tuple(failed.values()), unknown
    )
    if plan.drift:
        _log.info("reconcile: %s", result.status)
    for why in failed.values():
        _log.warning("repair failed (tried again on the next event or check): %s", why)
    return result


def _repair(
    ctx: HostContext, runner: Runner, snapshot: HostSnapshot, plan: DriftPlan
) -> dict[str, str]:
    """Carry out the plan's repairs; returns subject -> error for those that failed."""
    failed: dict[str, str] = {}
    waiting = {
        entry.intent.get("pf"): entry
        for entry in runner.journal.open_entries()
        if entry.kind is ChangeKind.VF_COUNT
    }
    for pf_name, count in plan.counts:
        entry = waiting.get(pf_name)
        if entry is not None and entry.intent.get("desired") == count:
            # Recovery retries it with backoff: a new change on every pass would not.
            failed[f"PF {pf_name}"] = (
                f"PF {pf_name}: the change to {count} VFs waits in the journal until "
                f"{retry_at(entry).isoformat(timespec='seconds')} ({entry.last_error})"
            )
            continue
        try:
            pf = snapshot.pf(pf_name)
            change_vf_count(ctx, runner, plan_vf_count(pf, count, {}))
        except QtagentError as err:
            failed[f"PF {pf_name}"] = f"PF {pf_name}: {err.message}"
    for vf_id, request in plan.knobs:
        try:
            program_vf(ctx, snapshot.pf(vf_id.pf), vf_id.index, request)
        except QtagentError as err:
            failed[str(vf_id)] = f"{vf_id}: {err.message}"
    for vf_id in plan.host_drivers:
        try:
            ctx.binder.probe_host_driver(snapshot.vf(vf_id))
        except QtagentError as err:
            failed[str(vf_id)] = f"{vf_id}: {err.message}"
    return failed


def _subject_failed(drift: Drift, failed: Mapping[str, str]) -> bool:
    return drift.subject in failed


def _announce(ctx: HostContext, found: tuple[Drift, ...], known: tuple[Drift, ...]) -> None:
    """An event for each drift not on record yet, before anything is repaired."""
    before = {(d.subject, d.aspect) for d in known}
    events = EventLog(ctx.store)
    for drift in found:
        if (drift.subject, drift.aspect) not in before:
            events.add("drift", drift.subject, str(drift))


def _record(
    ctx: HostContext,
    table: DriftTable,
    known: tuple[Drift, ...],
    found: tuple[Drift, ...],
    still: tuple[Drift, ...],
    *,
    pfs: frozenset[str] | None,
) -> None:
    """Keep the drift that stays in the drift table (of the PFs looked at; the others'
    rows stay as they were); an event for each repaired one."""
    others = tuple(d for d in known if pfs is not None and _pf_of(d.subject) not in pfs)
    events = EventLog(ctx.store)
    for drift in found:
        if drift.repair and drift not in still:
            events.add("drift.repaired", drift.subject, str(drift))
    if len(known) != len(others) or still:
        table.replace(still + others)


def _pf_of(subject: str) -> str:
    """The PF a drift subject is about: ``PF 0000:41:00.0`` or ``0000:41:00.0/vf1``."""
    return subject.removeprefix("PF ").partition("/")[0]

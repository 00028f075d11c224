"""Read the host, the database, libvirt and the journal, and check they agree
(:mod:`qtagent.plan.consistency`): after a restart, in `qtagent status`, and in the
lab's fault-injection test.

Equivalent to::

    qtagent vf list --json; sqlite3 qtagent.db 'SELECT * FROM allocations';
    virsh list; virsh dumpxml VM    # for each running VM
"""

from __future__ import annotations

from collections.abc import Iterable

from qtagent.model.types import MacAddress, VfId
from qtagent.ops.context import HostContext
from qtagent.plan.consistency import Finding, check_consistency
from qtagent.store.journal import Journal
from qtagent.store.quarantine import set_aside
from qtagent.virt.api import DomainState


def audit(
    ctx: HostContext, *, vm_settings: Iterable[tuple[MacAddress | None, int]] = ()
) -> tuple[Finding, ...]:
    """Every broken invariant on this host now (see :func:`check_consistency`)."""
    store = ctx.store
    running = (DomainState.RUNNING, DomainState.PAUSED)
    hostdevs = {
        d.name: ctx.virt.hostdev_addresses(d.name)
        for d in ctx.virt.list_domains()
        if d.state in running
    }
    return check_consistency(
        ctx.snapshot(),
        store.allocations(),
        set_aside(store),
        hostdevs,
        journal_vfs(Journal(store)),
        vm_settings=vm_settings,
    )


def journal_vfs(journal: Journal) -> tuple[VfId, ...]:
    """The VFs the open journal entries are changing (those that name one VF)."""
    found = []
    for entry in journal.open_entries():
        pf, index = entry.intent.get("pf"), entry.intent.get("index")
        if isinstance(pf, str) and type(index) is int:
            found.append(VfId(pf, index))
    return tuple(found)

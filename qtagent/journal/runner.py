"""Run a multi-step change under the journal, so that a crash at any point is recoverable.

A change is a :class:`Plan`: named steps, each with an effect and an undo, plus
the database records of its outcome. :func:`run` makes the journal entry durable
(with the change's first database records, in one transaction) before the first
effect, records each step once done, and deletes the entry in the transaction
that records the outcome. A live failure either undoes the steps done, newest
first (``on_failure`` backward: an assignment), or leaves the entry for a later
retry (forward: a release must finish, not be undone).

Steps must be idempotent, and so must undos, which must also be safe when their
step never ran or ran only in part: after a crash, recovery cannot know how far
the step under way got, so it runs that step again (forward) or undoes it too
(backward).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from qtagent.errors import QtagentError
from qtagent.journal.failpoints import Failpoints
from qtagent.store.journal import ChangeKind, Direction, Journal, JournalEntry, JsonValue
from qtagent.store.store import Store

_log = logging.getLogger(__name__)


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Step:
    """One effect of a change. ``undo`` None: nothing to undo (a check, a wait).

    ``undoes`` says what the undo does, for messages ("rebind the host driver").
    An undo that fails is noted and the undos of earlier steps still run, unless
    the step is a ``barrier``: what came before it must not be undone while it is
    not (a VF a VM still holds must not leave vfio-pci).
    """

    name: str
    do: Callable[[], object]
    undo: Callable[[], object] | None = None
    undoes: str = ""
    barrier: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """A change's steps, rebuilt the same way from the same intent (by recovery too).

    ``complete`` and ``abandon`` write the database records of the outcome (the
    allocation attached, or removed); each is committed with the journal entry's
    deletion. ``on_failure``: what a live failure does; recovery finishes an entry
    in the direction it was last going.
    """

    kind: ChangeKind
    subject: str
    intent: Mapping[str, JsonValue]
    steps: tuple[Step, ...]
    on_failure: Direction
    complete: Callable[[], None] = field(default=_nothing)
    abandon: Callable[[], None] = field(default=_nothing)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)


@dataclass(slots=True)
class Runner:
    """Runs plans against one database, with failpoints between the steps."""

    store: Store
    failpoints: Failpoints = field(default_factory=Failpoints)
    journal: Journal = field(init=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.store)

    def run(self, plan: Plan, *, begin: Callable[[], None] = _nothing) -> None:
        """Run ``plan``. ``begin`` writes the change's first database records (a
        reservation), committed together with the journal entry."""
        with self.store.transaction():
            direction = plan.on_failure
            entry = self.journal.begin(plan.kind, plan.subject, plan.intent, direction)
            begin()
        self._hit(plan, "begin")
        self.forward(entry, plan)

    def forward(self, entry: JournalEntry, plan: Plan) -> None:
        """Run the steps of ``entry`` not yet done, then record the outcome."""
        for step in plan.steps:
            if step.name in entry.done:
                continue
            try:
                step.do()
            except QtagentError as err:
                self._failed(entry, plan, err)
                raise
            self._hit(plan, f"{step.name}.effect")
            entry = self.journal.step_done(entry, step.name)
            self._hit(plan, f"{step.name}.done")
        with self.store.transaction():
            plan.complete()
            self.journal.finish(entry)
        self._hit(plan, "finish")
        _log.info("%s of %s: done", plan.kind, plan.subject)

    def backward(self, entry: JournalEntry, plan: Plan) -> None:
        """Undo the steps of ``entry`` that are done, and the one that may have been
        under way, newest first; then record the change as abandoned."""
        started = [s for s in plan.steps if s.name in entry.done]
        pending = [s for s in plan.steps if s.name not in entry.done]
        if not set(entry.done) <= set(plan.step_names):
            # Steps this plan does not have (another version's, an edited row): how far
            # the change got cannot be told, and every undo is safe for a step not run.
            started = list(plan.steps)
        elif pending:
            started.append(pending[0])
        failures: list[QtagentError] = []
        for step in reversed(started):
            if step.undo is None:
                continue
            try:
                step.undo()
            except QtagentError as err:
                _log.warning("undo failed: could not %s: %s", step.undoes or step.name, err.message)
                err.add_note(f"undo: could not {step.undoes or step.name}: {err.message}")
                failures.append(err)
                if step.barrier:
                    break
        if failures:
            first = failures[0]
            for later in failures[1:]:
                first.add_note(later.notes[-1])
            raise first
        with self.store.transaction():
            plan.abandon()
            self.journal.finish(entry)
        _log.info("%s of %s: undone", plan.kind, plan.subject)

    def _failed(self, entry: JournalEntry, plan: Plan, err: QtagentError) -> None:
        if plan.on_failure is Direction.FORWARD:
            self.journal.attempt_failed(entry, err.message)
            err.add_note(
                f"the {plan.kind} of {plan.subject} stays in the journal; it is retried "
                "later (`qtagent status` shows it)"
            )
            return
        entry = self.journal.turn_back(entry, err.message)
        try:
            self.backward(entry, plan)
        except QtagentError as undo_err:
            self.journal.attempt_failed(entry, f"undo: {undo_err.message}")
            for note in undo_err.notes:
                err.add_note(note)
            err.add_note(
                f"the {plan.kind} of {plan.subject} stays in the journal; its undo is "
                "retried later (`qtagent status` shows it)"
            )

    def _hit(self, plan: Plan, point: str) -> None:
        self.failpoints.hit(f"{plan.kind}.{point}")

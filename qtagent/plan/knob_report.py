"""What a VF knob request did, knob by knob: values the CLI prints as a table or JSON.

Outcomes (FIELD-CASES C6):
  applied      sent, and the read-back shows it (or the driver does not report it:
               then ``confirmed`` is False and the reason says so)
  unchanged    already at the requested value: nothing sent
  unsupported  the driver lacks the knob (EOPNOTSUPP/EPROTONOSUPPORT); when asked for
               the knob's default on a driver that does not report it, nothing is sent
               and it is only a warning
  rejected     the driver refused the value (EINVAL...), stayed busy beyond the retry
               bound, or accepted it but reads back something else
  skipped      not sent because a required knob failed first
"""

from __future__ import annotations

import enum
import errno as errno_mod
import os
from dataclasses import dataclass

from qtagent.netlink.api import Knob, KnobValue
from qtagent.netlink.knob_values import value_text


class KnobOutcome(enum.StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    UNSUPPORTED = "unsupported"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class Rollback(enum.StrEnum):
    """What became of an applied knob when a required knob of the request failed."""

    NONE = "none"
    ROLLED_BACK = "rolled back"
    FAILED = "rollback failed"


@dataclass(frozen=True, slots=True)
class KnobResult:
    """One knob of one request. ``previous`` is the value before the request and
    ``readback`` the value read after it (after any rollback); None = not reported."""

    knob: Knob
    outcome: KnobOutcome
    requested: KnobValue
    previous: KnobValue | None = None
    readback: KnobValue | None = None
    required: bool = False
    errno: int | None = None
    reason: str = ""
    attempts: int = 0
    rollback: Rollback = Rollback.NONE

    @property
    def confirmed(self) -> bool:
        """The read-back shows the requested value now."""
        return self.readback == self.requested

    @property
    def refused(self) -> bool:
        """The kernel did not take it: rejected, or unsupported as the driver answered
        (now, or earlier: a knob it is known to lack is not sent again). Unsupported
        without an answer - asked at its default, nothing sent - is only a warning."""
        return self.outcome is KnobOutcome.REJECTED or (
            self.outcome is KnobOutcome.UNSUPPORTED and self.errno is not None
        )

    @property
    def errno_name(self) -> str | None:
        if self.errno is None:
            return None
        if self.errno == errno_mod.EOPNOTSUPP:
            return "EOPNOTSUPP"  # the kernel's name; errorcode says ENOTSUP (same value)
        return errno_mod.errorcode.get(self.errno, str(self.errno))

    def detail(self) -> str:
        """The reason with its errno, for a person."""
        parts = [self.reason] if self.reason else []
        if self.errno is not None:
            parts.append(f"[{self.errno_name}: {os.strerror(self.errno)}]")
        if self.rollback is not Rollback.NONE:
            parts.append(f"({self.rollback})")
        return " ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "knob": str(self.knob),
            "outcome": str(self.outcome),
            "requested": value_text(self.knob, self.requested),
            "previous": value_text(self.knob, self.previous),
            "readback": value_text(self.knob, self.readback),
            "confirmed": self.confirmed,
            "required": self.required,
            "errno": self.errno_name,
            "reason": self.reason,
            "attempts": self.attempts,
            "rollback": str(self.rollback),
        }


TABLE_HEADER = ("KNOB", "REQUESTED", "OUTCOME", "READ BACK", "DETAIL")


@dataclass(frozen=True, slots=True)
class KnobReport:
    """Every knob of one request to one VF, in the order they were considered."""

    pf: str
    vf: int
    results: tuple[KnobResult, ...]

    def result(self, knob: Knob) -> KnobResult:
        for result in self.results:
            if result.knob is knob:
                return result
        raise KeyError(knob)

    @property
    def complete(self) -> bool:
        """Every requested knob is at its requested value (applied or unchanged)."""
        return all(r.outcome in (KnobOutcome.APPLIED, KnobOutcome.UNCHANGED) for r in self.results)

    @property
    def failed_required(self) -> tuple[KnobResult, ...]:
        return tuple(r for r in self.results if r.required and r.refused)

    @property
    def rolled_back(self) -> bool:
        return any(r.rollback is not Rollback.NONE for r in self.results)

    @property
    def half_configured(self) -> bool:
        """Some knobs of the request took effect and others did not: by choice when
        only optional knobs failed, or because a rollback failed."""
        took = any(
            r.outcome is KnobOutcome.APPLIED and r.rollback is not Rollback.ROLLED_BACK
            for r in self.results
        )
        return took and not self.complete

    def warnings(self) -> list[str]:
        """One line per knob that is not at its requested value, for the log and the CLI."""
        return [
            f"{self.pf} vf {self.vf}: {r.knob} {value_text(r.knob, r.requested)} "
            f"{r.outcome}: {r.detail()}"
            for r in self.results
            if r.outcome not in (KnobOutcome.APPLIED, KnobOutcome.UNCHANGED) or not r.confirmed
        ]

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """Table rows under :data:`TABLE_HEADER`; a required knob is marked with ``*``."""
        return [
            (
                f"{r.knob}{'*' if r.required else ''}",
                value_text(r.knob, r.requested),
                str(r.outcome),
                value_text(r.knob, r.readback),
                r.detail(),
            )
            for r in self.results
        ]

    def table(self) -> str:
        """The rows as aligned plain text, with :data:`TABLE_HEADER`."""
        rows = [TABLE_HEADER, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER) - 1)]
        return "\n".join(
            "  ".join(
                [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
            ).rstrip()
            for row in rows
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "pf": self.pf,
            "vf": self.vf,
            "complete": self.complete,
            "half_configured": self.half_configured,
            "rolled_back": self.rolled_back,
            "knobs": [r.to_dict() for r in self.results],
        }

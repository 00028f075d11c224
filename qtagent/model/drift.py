"""One difference between the host and what qtagent set up (a pure value; found by
:mod:`qtagent.plan.drift`, kept by :mod:`qtagent.store.status`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference. ``repair``: qtagent puts it back; else ``why`` it only reports."""

    subject: str
    aspect: str
    want: str
    have: str
    repair: bool
    why: str = ""

    def __str__(self) -> str:
        action = "repairing" if self.repair else f"reported only: {self.why}"
        return f"{self.subject}: {self.aspect} is {self.have}, not {self.want} ({action})"

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "aspect": self.aspect,
            "want": self.want,
            "have": self.have,
            "repair": self.repair,
            "why": self.why,
        }

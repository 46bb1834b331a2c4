"""The one shape every conformance check reports: :class:`CheckResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "warning", "skipped"]
KINDS = ("mappings", "case", "rule", "plugin", "sandbox")
"""Check kinds, in the order the suite runs and reports them."""


@dataclass
class CheckResult:
    """The outcome of one check.

    ``kind`` is one of :data:`KINDS`; ``name`` names the case, rule or plugin;
    ``where`` is ``file:line`` when there is one; ``details`` are the failure (or
    warning) lines, each one readable alone; ``counts`` holds figures such as
    ``examples`` and ``fired`` for property checks.
    """

    kind: str
    name: str
    status: Status = "passed"
    details: list[str] = field(default_factory=list)
    where: str = ""
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """True when the check failed."""
        return self.status == "failed"

    @property
    def label(self) -> str:
        """``kind[name]``, the name used in JUnit XML and pytest item ids."""
        return f"{self.kind}[{self.name}]"

    def fail(self, detail: str) -> None:
        """Record a failure line."""
        self.status = "failed"
        self.details.append(detail)

    def warn(self, detail: str) -> None:
        """Record a warning line (the check still passes)."""
        if self.status == "passed":
            self.status = "warning"
        self.details.append(detail)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "kind": self.kind,
            "name": self.name,
            "label": self.label,
            "status": self.status,
            "where": self.where,
            "seconds": round(self.seconds, 4),
            "counts": dict(self.counts),
            "details": list(self.details),
        }

"""Located problems found while loading mapping files, and the error that carries them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a mapping file: where it is and what is wrong.

    ``line`` is 1-based (``0`` when the problem concerns the whole file or set).
    ``str(problem)`` is ``file:line: severity: message``, the format editors jump to.
    """

    file: str
    line: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


class MappingLoadError(ValueError):
    """Mapping files could not be loaded; ``problems`` lists every problem found
    (errors and warnings, in file and line order)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        head = "\n".join(str(p) for p in errors[:20])
        more = f"\n… and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} error(s) in mapping files:\n{head}{more}")


class Reporter:
    """Collects problems for one file; ``line_of`` maps a document path to its line."""

    def __init__(self, file: str, lines: dict[tuple[str | int, ...], int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def line_of(self, path: tuple[str | int, ...]) -> int:
        """The line of ``path``, or of its closest located ancestor."""
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: tuple[str | int, ...], message: str) -> None:
        """Record an error at ``path``."""
        self.problems.append(Problem(self.file, self.line_of(path), message, "error"))

    def warning(self, path: tuple[str | int, ...], message: str) -> None:
        """Record a warning at ``path``."""
        self.problems.append(Problem(self.file, self.line_of(path), message, "warning"))

    @property
    def has_errors(self) -> bool:
        """True once any error was recorded."""
        return any(p.severity == "error" for p in self.problems)

"""Expected vs actual JSON values, difference by difference, each named by a JSON pointer.

Exact by default: every key and item must be equal (``1`` equals ``1.0``, ``true`` is not
``1``). ``ignore`` pointers are not compared at all; ``absent`` pointers must not exist in
the actual value. In both, a ``*`` segment matches any one key or index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Final = _Missing()
"""Stands for "no value here" on either side of a :class:`Difference`."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where actual differs from expected."""

    pointer: str
    expected: Any
    actual: Any
    note: str = ""

    def __str__(self) -> str:
        if self.note:
            return f"{self.pointer or '/'}: {self.note}"
        return f"{self.pointer or '/'}: expected {show(self.expected)}, got {show(self.actual)}"


def show(value: Any, limit: int = 120) -> str:
    """A short one-line rendering of a JSON value (or ``(absent)``)."""
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(segment: str | int) -> str:
    """One JSON-pointer segment (``~`` and ``/`` escaped)."""
    return str(segment).replace("~", "~0").replace("/", "~1")


def split(pointer: str) -> list[str]:
    """The segments of a JSON pointer."""
    return [s.replace("~1", "/").replace("~0", "~") for s in pointer.split("/")[1:]]


def _matches(pattern: Sequence[str], path: Sequence[str]) -> bool:
    if len(pattern) != len(path):
        return False
    return all(p in ("*", s) for p, s in zip(pattern, path, strict=True))


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def compare(
    expected: Any,
    actual: Any,
    *,
    ignore: Sequence[str] = (),
    absent: Sequence[str] = (),
) -> list[Difference]:
    """Every difference between ``expected`` and ``actual``, in document order."""
    ignored = [split(p) for p in ignore]
    out = list(_walk(expected, actual, [], ignored))
    for pointer in absent:
        for path, value in _find(actual, split(pointer), []):
            out.append(
                Difference(
                    "/" + "/".join(escape(s) for s in path),
                    MISSING,
                    value,
                    f"must be absent, got {show(value)}",
                )
            )
    return out


def _walk(
    expected: Any, actual: Any, path: list[str], ignored: list[list[str]]
) -> Iterator[Difference]:
    if any(_matches(p, path) for p in ignored):
        return
    pointer = "/" + "/".join(escape(s) for s in path) if path else ""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            yield from _walk(expected[key], actual.get(key, MISSING), [*path, key], ignored)
        for key in actual:
            if key not in expected:
                yield from _walk(MISSING, actual[key], [*path, key], ignored)
        return
    if isinstance(expected, list) and isinstance(actual, list):
        for index in range(max(len(expected), len(actual))):
            yield from _walk(
                expected[index] if index < len(expected) else MISSING,
                actual[index] if index < len(actual) else MISSING,
                [*path, str(index)],
                ignored,
            )
        return
    if expected is MISSING or actual is MISSING:
        yield Difference(pointer, expected, actual)
        return
    if isinstance(expected, dict | list) or isinstance(actual, dict | list):
        yield Difference(pointer, expected, actual)
        return
    if not _same_scalar(expected, actual):
        yield Difference(pointer, expected, actual)


def _find(value: Any, pattern: list[str], path: list[str]) -> Iterator[tuple[list[str], Any]]:
    if not pattern:
        yield path, value
        return
    head, rest = pattern[0], pattern[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        for key in keys:
            yield from _find(value[key], rest, [*path, key])
    elif isinstance(value, list):
        if head == "*":
            indexes = range(len(value))
        elif head.isdigit() and int(head) < len(value):
            indexes = range(int(head), int(head) + 1)
        else:
            indexes = range(0)
        for index in indexes:
            yield from _find(value[index], rest, [*path, str(index)])

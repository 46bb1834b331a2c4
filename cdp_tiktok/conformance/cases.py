"""Golden cases: the file format, where the files are, and reading them with their lines.

A case file is a YAML list of cases (``docs/conformance.md`` describes every key; the
JSON Schema is ``cases.schema.json``, compiled once). Case files live in the ``golden/``
folder of a mapping directory (the packaged defaults keep theirs beside ``default/``).
:func:`load_cases` never raises for a bad file: every problem comes back as a
:class:`~cdp_tiktok.mapping.Problem` with its file and line, like mapping files.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from cdp_tiktok.mapping.defaults import default_mapping_dir
from cdp_tiktok.mapping.loader import load_yaml
from cdp_tiktok.mapping.problems import Problem, Reporter
from cdp_tiktok.packaged_schemas import packaged_schema, packaged_validator
from cdp_tiktok.settings import SettingsError, TikTokSettings, load_settings

CASES_FOLDER = "golden"
DEFAULT_PIXEL = "CPIXEL0000000000000A"
"""The ``event_source_id`` cases run with unless the suite or the case sets one."""

_SETTING_ALIASES = {"pixel_code": "event_source_id"}
_SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(TikTokSettings))


def case_schema() -> dict[str, Any]:
    """The JSON Schema of a golden-case file (``cases.schema.json``)."""
    return packaged_schema("cdp_tiktok.conformance", "cases.schema.json")


def _validator() -> jsonschema.protocols.Validator:
    return packaged_validator("cdp_tiktok.conformance", "cases.schema.json")


@dataclass(frozen=True)
class GoldenCase:
    """One validated case. ``rule`` is ``...`` (Ellipsis) when the case does not say."""

    name: str
    file: str
    line: int
    input: dict[str, Any]
    before: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    rule: Any = ...
    expected: list[dict[str, Any]] | None = None
    absent: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    refused: str | None = None
    warnings: tuple[str, ...] = ()
    dropped_keys: dict[str, int] | None = None
    envelope: dict[str, Any] | None = None

    @property
    def where(self) -> str:
        """``file:line`` of the case."""
        return f"{self.file}:{self.line}"

    @property
    def rules(self) -> list[str] | None:
        """The rules the case says must fire, in order (``None``: not stated)."""
        if self.rule is ...:
            return None
        if self.rule is None:
            return []
        return [self.rule] if isinstance(self.rule, str) else list(self.rule)

    def settings_over(self, base: TikTokSettings) -> TikTokSettings:
        """``base`` with this case's settings applied (already checked at load)."""
        if not self.settings:
            return base
        coerced = load_settings(env={}, overrides=self.settings)
        names = [_SETTING_ALIASES.get(k, k) for k in self.settings]
        return dataclasses.replace(base, **{n: getattr(coerced, n) for n in names})


def cases_dir(mapping_dir: Path) -> Path:
    """Where the golden cases of ``mapping_dir`` live: its ``golden/`` folder, or for the
    packaged defaults (``cdp_tiktok/mappings/default``) the ``golden/`` folder beside it."""
    own = mapping_dir / CASES_FOLDER
    if own.is_dir():
        return own
    try:
        packaged = mapping_dir.resolve() == default_mapping_dir().resolve()
    except OSError:
        packaged = False
    return mapping_dir.parent / CASES_FOLDER if packaged else own


def case_files(directory: Path) -> list[Path]:
    """The case files (``*.yaml``, ``*.yml``) of a cases directory, sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def load_cases(paths: Sequence[Path]) -> tuple[list[GoldenCase], list[Problem]]:
    """Read and validate every case file; return the valid cases and every problem.

    A case with a problem is left out (the others still run). Case names must be unique
    across the files.
    """
    cases: list[GoldenCase] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        file_cases, file_problems = _load_file(path)
        problems.extend(file_problems)
        for case in file_cases:
            if case.name in seen:
                problems.append(
                    Problem(
                        case.file,
                        case.line,
                        f"case name {case.name!r} is already used at {seen[case.name]}",
                    )
                )
                continue
            seen[case.name] = case.where
            cases.append(case)
    return cases, problems


def _load_file(path: Path) -> tuple[list[GoldenCase], list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), 0, f"cannot read: {exc}")]
    located = load_yaml(text)
    report = Reporter(str(path), located.lines)
    for line, message in located.errors:
        report.problems.append(Problem(str(path), line, message))
    data = located.data
    if data is None:
        return [], report.problems
    broken: set[int] = set()
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        at = tuple(error.absolute_path)
        if not at:
            report.error(at, f"a case file is a list of cases: {error.message}")
            return [], report.problems
        broken.add(int(at[0]))
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = sorted(error.schema.get("properties", {}))  # type: ignore[union-attr]
            for key in sorted(set(error.instance) - set(allowed)):
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f" (allowed: {', '.join(allowed)})"
                )
                report.error((*at, key), f"{_label(data, at)}: unknown key {key!r}{hint}")
            continue
        report.error(at, f"{_label(data, at)}: {error.message}")
    cases = []
    for index, raw in enumerate(data):
        if index in broken:
            continue
        case = _case(raw, index, report)
        if case is not None:
            cases.append(case)
    problems = sorted(dict.fromkeys(report.problems), key=lambda p: p.line)
    return cases, problems


def _label(data: Any, at: tuple[str | int, ...]) -> str:
    name = data[at[0]].get("name") if isinstance(data[at[0]], dict) else None
    head = f"case {name!r}" if isinstance(name, str) else f"case #{int(at[0]) + 1}"
    rest = "/".join(str(p) for p in at[1:])
    return f"{head}: {rest}" if rest else head


def _case(raw: Mapping[str, Any], index: int, report: Reporter) -> GoldenCase | None:
    at: tuple[str | int, ...] = (index,)
    name = raw["name"]
    ok = True
    if ("expected" in raw) == ("refused" in raw):
        report.error(at, f"case {name!r}: give exactly one of `expected` and `refused`")
        ok = False
    if "refused" in raw:
        for key in ("rule", "absent", "ignore", "warnings", "dropped_keys", "envelope"):
            if key in raw:
                report.error((*at, key), f"case {name!r}: `{key}` means nothing with `refused`")
                ok = False
    settings = raw.get("settings") or {}
    for key in settings:
        if _SETTING_ALIASES.get(key, key) not in _SETTING_NAMES:
            report.error((*at, "settings", key), f"case {name!r}: unknown setting {key!r}")
            ok = False
    if ok and settings:
        try:
            load_settings(env={}, overrides=settings)
        except SettingsError as exc:
            report.error((*at, "settings"), f"case {name!r}: settings: {exc}")
            ok = False
    if not ok:
        return None
    return GoldenCase(
        name=name,
        file=report.file,
        line=report.line_of(at),
        input=raw["input"],
        before=list(raw.get("before") or []),
        settings=dict(settings),
        rule=raw.get("rule", ...),
        expected=raw.get("expected"),
        absent=tuple(raw.get("absent") or ()),
        ignore=tuple(raw.get("ignore") or ()),
        refused=raw.get("refused"),
        warnings=tuple(raw.get("warnings") or ()),
        dropped_keys=raw.get("dropped_keys"),
        envelope=raw.get("envelope"),
    )

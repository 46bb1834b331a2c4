"""Show conformance results: a rich summary table, JUnit XML and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdp_tiktok.conformance.results import KINDS, CheckResult

_STYLE = {"passed": "green", "failed": "bold red", "warning": "yellow", "skipped": "dim"}
_TITLES = {
    "mappings": "mapping & case files",
    "case": "golden cases",
    "rule": "rule properties",
    "plugin": "plugin contract",
    "sandbox": "sandbox round trip",
}


def summary(results: Sequence[CheckResult]) -> dict[str, dict[str, int]]:
    """Counts by kind and status."""
    out: dict[str, dict[str, int]] = {}
    for result in results:
        row = out.setdefault(result.kind, {"passed": 0, "failed": 0, "warning": 0, "skipped": 0})
        row[result.status] += 1
    return out


def print_report(results: Sequence[CheckResult], console: Console, *, verbose: bool) -> None:
    """Each failure (and warning) with its details, then the summary table."""
    for result in results:
        if result.status == "passed" and not verbose:
            continue
        style = _STYLE[result.status]
        extra = ""
        if result.kind == "rule" and result.counts:
            extra = f" (fired in {result.counts['fired']} of {result.counts['examples']} examples)"
        console.print(
            f"[{style}]{result.status.upper()}[/] {escape(result.label)}{escape(extra)}",
            highlight=False,
            soft_wrap=True,
        )
        for line in result.details:
            console.print(f"    {line}", highlight=False, markup=False, soft_wrap=True)
    rules = [r for r in results if r.kind == "rule" and r.counts]
    if rules:
        firing = Table(title="rule property checks: generated examples that fired each rule")
        firing.add_column("rule")
        firing.add_column("fired", justify="right")
        firing.add_column("examples", justify="right")
        firing.add_column("status")
        for result in rules:
            firing.add_row(
                escape(result.name),
                str(result.counts.get("fired", 0)),
                str(result.counts.get("examples", 0)),
                f"[{_STYLE[result.status]}]{result.status}[/]",
            )
        console.print(firing)
    table = Table(title="cdp-tiktok conformance")
    table.add_column("check")
    for status in ("passed", "failed", "warning", "skipped"):
        table.add_column(status, justify="right", style=_STYLE[status])
    table.add_column("detail")
    counts = summary(results)
    for kind in KINDS:
        if kind not in counts:
            continue
        row = counts[kind]
        detail = ""
        if kind == "rule":
            rules = [r for r in results if r.kind == "rule" and r.counts]
            examples = sum(r.counts.get("examples", 0) for r in rules)
            fired = sum(r.counts.get("fired", 0) for r in rules)
            detail = f"{examples} examples, {fired} fired their rule"
        table.add_row(
            _TITLES[kind],
            *(str(row[s] or "") for s in ("passed", "failed", "warning", "skipped")),
            detail,
        )
    console.print(table)


def as_json(results: Sequence[CheckResult], **extra: Any) -> str:
    """Every result and the summary as one JSON document."""
    failed = any(r.failed for r in results)
    document = {
        "ok": not failed,
        "summary": summary(results),
        "results": [r.as_dict() for r in results],
        **extra,
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def write_junit(results: Sequence[CheckResult], path: Path, *, name: str) -> None:
    """JUnit XML: one test suite per kind, one test case per check, named ``kind[name]``."""
    root = ElementTree.Element("testsuites", name=name)
    for kind in KINDS:
        mine = [r for r in results if r.kind == kind]
        if not mine:
            continue
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=f"cdp-tiktok conformance: {_TITLES[kind]}",
            tests=str(len(mine)),
            failures=str(sum(r.failed for r in mine)),
            skipped=str(sum(r.status == "skipped" for r in mine)),
            time=f"{sum(r.seconds for r in mine):.3f}",
        )
        for result in mine:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"cdp_tiktok.conformance.{kind}",
                name=result.label,
                time=f"{result.seconds:.3f}",
            )
            if result.where:
                case.set("file", result.where.rsplit(":", 1)[0])
            text = "\n".join(result.details)
            if result.failed:
                failure = ElementTree.SubElement(
                    case, "failure", message=result.details[0] if result.details else "failed"
                )
                failure.text = text
            elif result.status == "skipped":
                ElementTree.SubElement(case, "skipped", message=text or "skipped")
            elif text:
                ElementTree.SubElement(case, "system-out").text = text
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)

"""Golden cases of the default mappings, and the packaged/editable copies staying equal."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdp_tiktok.host import Host
from cdp_tiktok.mapping import default_mapping_dir, validate_directory
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.payload import build_request, validate_event, validate_request

REPO = Path(__file__).resolve().parent.parent
PACKAGED = default_mapping_dir()
GOLDEN = PACKAGED.parent / "golden"
CASES: list[dict[str, Any]] = [
    case for path in sorted(GOLDEN.glob("*.yaml")) for case in yaml.safe_load(path.read_text())
]


def _settings(case: dict[str, Any]) -> TikTokSettings:
    return TikTokSettings(**{"event_source_id": "CPIXEL0000000000000A", **case.get("settings", {})})


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_case(case: dict[str, Any]) -> None:
    settings = _settings(case)
    with Host(settings, load_entry_points=False, identity="memory://") as host:
        for before in case.get("before", []):
            host.process(before)
        events = host.process(case["input"])
    assert [e.data for e in events] == case["expected"]
    assert [e.rule for e in events] == ([case["rule"]] if case["rule"] else [])
    for event in events:
        assert validate_event(event.data, settings.event_source) == []
        body = build_request(event.key, [event.data], settings.partner_name)
        assert validate_request(body) == []
        json.dumps(event.data, allow_nan=False)


def test_every_default_rule_has_a_golden_case() -> None:
    rules = {r["name"] for r in yaml.safe_load((PACKAGED / "segment.yaml").read_text())["rules"]}
    assert rules <= {c["rule"] for c in CASES}


def test_golden_cases_contain_no_raw_personal_data() -> None:
    text = json.dumps([c["expected"] for c in CASES])
    for raw in ("alice_abc@gmail.com", "2133734253", "Carol@Example.com", "user_123", "Smith"):
        assert raw.lower() not in text.lower()


@pytest.mark.parametrize("source", ["web", "app", "offline", "crm"])
def test_default_mappings_have_no_errors_for_any_source(source: str) -> None:
    problems = validate_directory([PACKAGED], settings=TikTokSettings(event_source=source))
    assert [p for p in problems if p.severity == "error"] == []
    if source in ("web", "app", "offline"):
        assert problems == []


def _same_tree(left: Path, right: Path) -> list[str]:
    compare = filecmp.dircmp(left, right, ignore=["README.md", "golden", "__pycache__"])
    names = compare.left_only + compare.right_only + compare.diff_files + compare.funny_files
    _, mismatch, errors = filecmp.cmpfiles(left, right, compare.common_files, shallow=False)
    return sorted(set(names + mismatch + errors))


@pytest.mark.skipif(not (REPO / "mappings").is_dir(), reason="not a source checkout")
def test_top_level_mappings_equal_the_packaged_ones() -> None:
    assert _same_tree(REPO / "mappings", PACKAGED) == []
    assert _same_tree(REPO / "mappings" / "golden", GOLDEN) == []
    assert (REPO / "mappings" / "README.md").is_file()

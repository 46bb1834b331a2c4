"""Golden cases of the default mappings, and the packaged/editable copies staying equal.

The cases run through the conformance suite's runner (the same code as
``cdp-tiktok conformance``), one test per case.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import yaml

from cdp_tiktok.conformance.cases import DEFAULT_PIXEL, GoldenCase, case_files, load_cases
from cdp_tiktok.conformance.runner import CaseRunner
from cdp_tiktok.mapping import default_mapping_dir, validate_directory
from cdp_tiktok.settings import TikTokSettings

REPO = Path(__file__).resolve().parent.parent
PACKAGED = default_mapping_dir()
GOLDEN = PACKAGED.parent / "golden"
CASES, CASE_PROBLEMS = load_cases(case_files(GOLDEN))
RUNNER = CaseRunner(TikTokSettings(event_source_id=DEFAULT_PIXEL), load_entry_points=False)


def test_golden_case_files_are_valid() -> None:
    assert [str(p) for p in CASE_PROBLEMS] == []
    assert {Path(c.file).name for c in CASES} >= {"segment.yaml", "tricky-inputs.yaml"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: GoldenCase) -> None:
    result = RUNNER.run(case)
    assert result.details == []
    assert result.status == "passed"


def test_every_default_rule_has_a_golden_case() -> None:
    rules = {r["name"] for r in yaml.safe_load((PACKAGED / "segment.yaml").read_text())["rules"]}
    assert rules <= {name for c in CASES for name in c.rules or ()}


def test_golden_cases_contain_no_raw_personal_data() -> None:
    text = json.dumps([c.expected for c in CASES])
    for raw in ("alice_abc@gmail.com", "2133734253", "Carol@Example.com", "user_123", "Smith"):
        assert raw.lower() not in text.lower()


@pytest.mark.parametrize("source", ["web", "app", "offline", "crm"])
def test_default_mappings_have_no_errors_for_any_source(source: str) -> None:
    app_id = "1234567890" if source == "app" else None
    settings = TikTokSettings(event_source=source, app_id=app_id)
    problems = validate_directory([PACKAGED], settings=settings)
    assert [p for p in problems if p.severity == "error"] == []
    if source in ("web", "app", "offline"):
        assert problems == []


def test_default_mappings_on_app_without_an_app_id_are_one_located_error() -> None:
    problems = validate_directory([PACKAGED], settings=TikTokSettings(event_source="app"))
    (error,) = [p for p in problems if p.severity == "error"]
    assert "app.app_id has no source (setting app_id is not set)" in error.message
    assert error.line > 0


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

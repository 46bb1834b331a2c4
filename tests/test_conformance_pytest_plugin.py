"""The pytest plugin (entry point ``pytest11``), run in a user's own pytest subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"

INERT = """
import sys

def test_plugin_loaded_nothing_heavy(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("cdp_tiktok")
    heavy = ["cdp_tiktok.conformance.suite", "cdp_tiktok.mapping.engine", "cdp_tiktok.host",
             "jinja2", "jsonschema"]
    assert [m for m in heavy if m in sys.modules] == []
"""


def pytest_run(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["CDP_TIKTOK_DISABLE_PLUGINS"] = ""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=where,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_without_a_mapping_directory_the_plugin_adds_and_imports_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(textwrap.dedent(INERT), encoding="utf-8")
    ran = pytest_run(tmp_path, "-v")
    assert ran.returncode == 0, ran.stdout
    assert "test_user.py::test_plugin_loaded_nothing_heavy PASSED" in ran.stdout
    assert "1 passed" in ran.stdout and "cdp-tiktok-conformance" not in ran.stdout


def test_one_item_per_case_rule_and_plugin_named_by_them(tmp_path: Path) -> None:
    from cdp_tiktok.conformance.cases import case_files, load_cases
    from cdp_tiktok.mapping import load_mapping_set
    from cdp_tiktok.settings import TikTokSettings

    cases, _ = load_cases(case_files(MAPPINGS / "golden"))
    rules = load_mapping_set([MAPPINGS], settings=TikTokSettings()).rules
    listed = pytest_run(tmp_path, "--collect-only", "-q", f"--cdp-tiktok-mappings={MAPPINGS}")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    items = [line for line in listed.stdout.splitlines() if line.startswith("cdp-tiktok")]
    names = [line.split("::", 1)[1] for line in items]
    assert names == [
        "mappings[mapping files]",
        "mappings[golden case files]",
        *(f"case[{case.name}]" for case in cases),
        *(f"rule[{rule.name}]" for rule in rules),
        "plugin[tiktok]",
        "plugin[delivery]",
    ]
    assert f"{len(items)} tests collected" in listed.stdout


def test_ini_option_runs_the_checks_and_a_failure_names_case_and_pointer(tmp_path: Path) -> None:
    mine = tmp_path / "tiktok-mappings"
    shutil.copytree(MAPPINGS, mine)
    cases = mine / "golden" / "tricky-inputs.yaml"
    text = cases.read_text(encoding="utf-8")
    cases.write_text(text.replace("ttclid: E.C.P.url-only\n", "ttclid: E.C.P.other\n", 1))
    (tmp_path / "pytest.ini").write_text("[pytest]\ncdp_tiktok_mappings = tiktok-mappings\n")
    ran = pytest_run(tmp_path, "-v", "-rf", "-k", "landing or (rule and order-completed)")
    assert ran.returncode == 1, ran.stdout
    assert "cdp-tiktok-conformance::rule[order-completed] PASSED" in ran.stdout
    assert "FAILED cdp-tiktok-conformance::case[ttclid only in the landing URL" in ran.stdout
    assert '/0/user/ttclid: expected "E.C.P.other", got "E.C.P.url-only"' in ran.stdout
    assert "1 failed, 1 passed" in ran.stdout

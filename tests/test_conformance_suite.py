"""``cdp-tiktok conformance``, ``init`` and the checks behind them (acceptance of issue 10)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.conformance.suite import Suite, SuiteOptions

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
ENV = {"CDP_TIKTOK_DISABLE_PLUGINS": "", "CDP_TIKTOK_TRACE_PLUGINS": ""}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["conformance", *args], env=ENV)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full default-mode run on the shipped mappings, with --sandbox, --json, --junit."""
    junit = tmp_path_factory.mktemp("junit") / "conformance.xml"
    code, out, err = run(str(MAPPINGS), "--sandbox", "--json", "--junit", str(junit))
    return {"code": code, "json": json.loads(out), "err": err, "junit": junit}


def test_shipped_mappings_pass(shipped: dict[str, Any]) -> None:
    assert shipped["code"] == 0, [r for r in shipped["json"]["results"] if r["status"] == "failed"]
    document = shipped["json"]
    assert document["ok"] is True
    kinds = {r["kind"] for r in document["results"]}
    assert kinds == {"mappings", "case", "rule", "plugin", "sandbox"}
    assert document["summary"]["case"]["passed"] >= 40


def test_every_shipped_rule_really_fires_in_its_property_check(shipped: dict[str, Any]) -> None:
    import yaml

    names = {r["name"] for r in yaml.safe_load((MAPPINGS / "segment.yaml").read_text())["rules"]}
    rules = {r["name"]: r for r in shipped["json"]["results"] if r["kind"] == "rule"}
    assert set(rules) == names
    for name, result in rules.items():
        assert result["status"] == "passed", (name, result["details"])
        assert 0 < result["counts"]["fired"] <= result["counts"]["examples"], name


def test_junit_has_one_testcase_per_check(shipped: dict[str, Any]) -> None:
    tree = ElementTree.parse(shipped["junit"])
    names = [case.get("name") for case in tree.iter("testcase")]
    assert len(names) == len(shipped["json"]["results"])
    assert "case[page-view]" in names and "rule[order-completed]" in names
    assert "plugin[tiktok]" in names and "sandbox[page-view]" in names
    assert not list(tree.iter("failure"))


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "mine"
    shutil.copytree(MAPPINGS, target)
    return target


def test_changed_expected_value_fails_with_a_json_pointer(tmp_path: Path) -> None:
    target = _copy(tmp_path)
    cases = target / "golden" / "tricky-inputs.yaml"
    text = cases.read_text(encoding="utf-8")
    assert text.count("      value: 42.5\n") == 1
    cases.write_text(text.replace("      value: 42.5\n", "      value: 43.5\n"), encoding="utf-8")
    code, out, err = run(str(target), "--examples", "3")
    assert code == 1
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "prices, revenue" in t)
    assert f"{cases}:{line}: /0/properties/value: expected 43.5, got 42.5" in out
    assert "FAILED case[prices, revenue and quantities given as strings become numbers]" in out
    assert "FAILED:" in err


LEAKY = """
version: 1
defaults:
  event_id: messageId
  event_time: [timestamp, originalTimestamp]
  page:
    url: context.page.url
rules:
  - name: leaks-email
    when: type == "track" and event == "Signed Up"
    event: CompleteRegistration
    properties:
      description: context.traits.email
  - name: leaks-user-id
    when: type == "track" and event == "Trial Started"
    event: StartTrial
    properties:
      order_id: userId
  - name: needs-a-plan
    when: type == "track" and event == "Signed Up" and properties.plan == "enterprise"
    event: Subscribe
"""


def test_a_rule_that_bypasses_hashing_fails_and_says_what_leaked_where(tmp_path: Path) -> None:
    (tmp_path / "leaky.yaml").write_text(textwrap.dedent(LEAKY), encoding="utf-8")
    code, out, _ = run(str(tmp_path), "--json")
    assert code == 1
    results = {r["label"]: r for r in json.loads(out)["results"]}
    email = results["rule[leaks-email]"]
    assert email["status"] == "failed"
    leak = next(d for d in email["details"] if "raw email" in d)
    assert "from input /context/traits/email" in leak
    assert "appears at /events/0/properties/description" in leak
    assert "@" not in leak.split("(")[1].split(")")[0]  # masked, never in full
    user = results["rule[leaks-user-id]"]
    assert any(
        "raw external id from input /userId" in d and "/events/0/properties/order_id" in d
        for d in user["details"]
    ), user["details"]
    example = next(d for d in user["details"] if d.startswith("failing example: "))
    assert '"userId": "<redacted sha256:' in example
    never = results["rule[needs-a-plan]"]
    assert never["status"] == "warning" and never["counts"]["fired"] == 0
    assert "never fired in" in never["details"][0]
    assert results["mappings[golden case files]"]["status"] == "warning"


def test_mapping_errors_stop_before_cases(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Purchace\n"
    )
    code, out, _ = run(str(tmp_path))
    assert code == 1
    assert f"{tmp_path / 'bad.yaml'}:5: error: event 'Purchace'" in out
    assert "mapping files have errors: fix them first" in out


def test_init_then_conformance_passes_in_a_subprocess(tmp_path: Path) -> None:
    target = tmp_path / "tiktok-mappings"
    env = {**os.environ, **ENV}
    command = [sys.executable, "-m", "cdp_tiktok"]
    made = subprocess.run(
        [*command, "init", str(target)], capture_output=True, text=True, env=env, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert (target / "segment.yaml").is_file() and (target / "golden" / "segment.yaml").is_file()
    assert "cdp-tiktok conformance" in (target / "ci" / "conformance.yml").read_text()
    assert "golden/" in (target / "README.md").read_text()
    checked = subprocess.run(
        [*command, "conformance", str(target), "--examples", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK:" in checked.stderr + checked.stdout
    again = subprocess.run(
        [*command, "init", str(target)], capture_output=True, text=True, env=env, timeout=60
    )
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr


class BrokenPlugin:
    """Breaks every rule of the hook contract, one per hook."""

    name = "broken"

    from cdp_tiktok import hookimpl

    @hookimpl
    def cdp_register_destinations(self, register: Any) -> None:
        from cdp_tiktok.destination import Destination

        register(Destination("Broken", plugin="broken"))

    @hookimpl
    def cdp_on_track(self, message: dict[str, Any], destination: Any) -> Any:
        from cdp_tiktok.events import BatchKey, OutgoingEvent

        if destination.plugin != "broken":
            return []  # wrong: must be None for another plugin's destination
        # the shipped golden inputs give properties.email; generated ones context.traits
        email = (message.get("properties") or {}).get("email") or (
            (message.get("context") or {}).get("traits", {}).get("email")
        )
        data = {"event": "Lead", "event_time": 1740830400, "user": {"email": [email or "x@y.z"]}}
        return [OutgoingEvent(BatchKey("Broken", "crm", "1"), data)]  # raw email, no lead_id

    @hookimpl
    def cdp_on_page(self, message: dict[str, Any], destination: Any) -> Any:
        if destination.plugin != "broken":
            return None
        return {"not": "a list"}

    @hookimpl
    def cdp_on_identify(self, message: dict[str, Any], destination: Any) -> Any:
        if destination.plugin != "broken":
            return None
        message["traits"]["email"]  # KeyError when traits are absent
        return []

    @hookimpl
    def cdp_on_group(self, message: dict[str, Any], destination: Any) -> Any:
        message["seen"] = True  # mutates the message
        return None if destination.plugin != "broken" else []

    @hookimpl
    def cdp_classify_response(
        self, status_code: Any, body: Any, error: Any, batch_size: Any
    ) -> Any:
        return "delivered"


def test_broken_plugin_shows_each_contract_failure() -> None:
    options = SuiteOptions(MAPPINGS, plugins=(BrokenPlugin(),), load_entry_points=False)
    with Suite(options) as suite:
        results = {r.name: r for r in suite.check_plugins()}
    assert results["tiktok"].status == "passed", results["tiktok"].details
    details = "\n".join(results["broken"].details)
    assert results["broken"].failed
    expected = [
        "cdp_on_track for 'TikTok', track ",
        "answered for a destination of plugin 'tiktok'; return None for other plugins'",
        "user.email[0] is not a lower-case SHA-256 hash",
        "raw email from input /properties/email (",
        ") appears at /data/user/email/0",
        "does not match TikTok's schema: lead: ",
        "cdp_on_page for 'Broken', page message",
        "returned dict; must return a list or None",
        "cdp_on_identify for 'Broken', identify message",
        "raised KeyError ('traits'); a call hook may only raise MappingLoadError",
        "cdp_on_group for 'TikTok', group message",
        "modified the message it received",
        'cdp_classify_response(200, b\'{"code":0',
        "returned str; must return Verdict or None",
    ]
    for text in expected:
        assert text in details, text

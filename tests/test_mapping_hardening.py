"""Mapping files and ids cannot run away (issue 9 points 4 and 6, issue 8 point 8)."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdp_tiktok.mapping import default_mapping_dir, load_mapping_set
from cdp_tiktok.mapping.coerce import MAX_EVENT_ID
from cdp_tiktok.mapping.loader import load_yaml_recovering
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.payload import validate_request


def order(message_id: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": message_id,
        "timestamp": "2025-01-01T00:00:00Z",
        "properties": {"revenue": 10, "currency": "USD"},
        "context": {"page": {"url": "https://shop.example/"}},
    }


# --- 9.4: a long messageId still deduplicates -----------------------------------------


def test_an_id_longer_than_the_event_id_limit_becomes_its_sha256_hex() -> None:
    mappings = load_mapping_set(
        [default_mapping_dir()], settings=TikTokSettings(event_source_id="CPIX")
    )

    def event_id(message_id: str) -> Any:
        result = mappings.map(order(message_id))
        assert len(result.events) == 1, result.warnings
        data = result.events[0].data
        body = {"event_source": "web", "event_source_id": "CPIX", "data": [data]}
        assert validate_request(body) == []
        return data.get("event_id")

    at_limit = "a" * MAX_EVENT_ID
    assert event_id(at_limit) == at_limit
    for length in (MAX_EVENT_ID + 1, 5000, 100_000):
        long_id = "m" * (length - 1) + "é"
        expected = hashlib.sha256(long_id.encode()).hexdigest()
        assert event_id(long_id) == expected  # stable: a retry gets the same id
    assert event_id("x" * 5000) != event_id("y" * 5000)


# --- 9.6: templates, loops and YAML aliases are bounded -------------------------------

HEAD = """version: 1
match: first
defaults:
  event_id: messageId
  event_time: timestamp
  page: {url: context.page.url}
"""


def _rule(name: str, **fields: str) -> str:
    body = "".join(f"      {key}: {value}\n" for key, value in fields.items())
    return (
        f'  - name: {name}\n    when: event == "Order Completed"\n    event: Purchase\n'
        f"    properties:\n{body}"
    )


def _doubling() -> str:
    sets = "".join("{% set s = s ~ s %}" for _ in range(30))
    return "\"{% set s = 'xxxxxxxxxx' %}" + sets + '{{ s }}"'


def _replace_chain() -> str:
    return "\"{{ 'a'" + "|replace('a', 'aaaaaaaaaa')" * 11 + ' }}"'


def _literal_loops() -> str:
    loops = "".join(f"{{% for x{i} in [1,2,3,4,5,6,7,8,9,10] %}}" for i in range(9))
    return '"' + loops + "x" + "{% endfor %}" * 9 + '"'


def _product_loops() -> str:
    inner = ""  # no output: the loop bound, not the output bound, must stop it
    for var in "cba":
        inner = f"{{% for {var} in properties.products %}}{inner}{{% endfor %}}"
    return '"' + inner + '"'


def _laughs() -> str:
    text = "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, 10):
        text += f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


HOSTILE = {
    # name: (file text, what validate must say, what map must say or None for load errors)
    "doubling": (HEAD + "rules:\n" + _rule("grow", description=_doubling()), "rule grow"),
    "replace": (HEAD + "rules:\n" + _rule("chain", description=_replace_chain()), "rule chain"),
    "loops": (HEAD + "rules:\n" + _rule("nine", description=_literal_loops()), "rule nine"),
    "products": (HEAD + "rules:\n" + _rule("cube", description=_product_loops()), None),
    "laughs": (_laughs() + HEAD + "rules:\n" + _rule("lol", custom="*a9"), "alias"),
    "recursive": ("x: &r [*r]\n" + HEAD + "rules:\n" + _rule("r", custom="*r"), "alias"),
    "parens": (HEAD + "rules:\n" + _rule("deep", value='"' + "(" * 5000 + "1" + ")" * 5000 + '"'),
               "rule deep: properties.value: expression nested"),
}  # fmt: skip


def _run_bounded(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI in a child process with 2 GB of address space and a time limit, so a
    regression fails this test instead of exhausting the machine."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "cdp_tiktok", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limits,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_mapping_is_bounded_in_validate_and_map(case: str, tmp_path: Path) -> None:
    text, located = HOSTILE[case]
    (tmp_path / "m.yaml").write_text(text)
    products = [{"product_id": str(n), "price": 1, "quantity": 1} for n in range(1000)]
    message = {**order("m-1"), "properties": {"revenue": 1, "products": products}}
    checked = _run_bounded("validate", str(tmp_path))
    mapped = _run_bounded(
        "map", "-", "--mappings", str(tmp_path), "--pixel-code", "CPIX", stdin=json.dumps(message)
    )
    for result in (checked, mapped):
        assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    if located is None:  # data-dependent: the load passes, the event goes out without it
        assert checked.returncode == 0, checked.stdout
        assert mapped.returncode == 0, mapped.stderr
        assert "rule cube: properties.description:" in mapped.stderr
        assert "template loops ran more than 10000 times; field dropped" in mapped.stderr
        event = json.loads(mapped.stdout)
        assert "description" not in event.get("properties", {})
        return
    assert checked.returncode == 1
    errors = [x for x in checked.stdout.splitlines() if ": error: " in x]
    assert errors and all(str(tmp_path / "m.yaml") + ":" in x for x in errors), checked.stdout
    assert located in checked.stdout
    assert mapped.returncode == 2
    assert located in mapped.stderr


def test_nested_output_loops_are_capped_when_the_file_is_loaded(tmp_path: Path) -> None:
    inner = "{for: v in p.variants, item: {content_id: v.sku}}"
    rule = _rule("nest", contents=f"{{for: p in properties.products, item: {inner}}}")
    (tmp_path / "m.yaml").write_text(HEAD + "rules:\n" + rule)
    checked = _run_bounded("validate", str(tmp_path))
    assert checked.returncode == 1
    assert "rule nest: properties.contents[]: nested loops may make 1,000,000 items" in (
        checked.stdout
    )


# --- 8.8: a YAML syntax error is reported once ----------------------------------------

BROKEN_B = "  - name: b\n    when: x\n    event: [\n"
RULE_C = "  - name: c\n    when: type == 'page'\n    event: ViewContent\n    user: *keys\n"
ANCHOR = "&keys {email: properties.email}"
SHARED_BEFORE = (
    f"version: 1\nrules:\n  - name: a\n    when: type == 'track'\n    event: Purchase\n"
    f"    user: {ANCHOR}\n{BROKEN_B}{RULE_C}"
)
IN_HEADER = f"version: 1\ncommon: {ANCHOR}\nrules:\n{BROKEN_B}{RULE_C}"
IN_BROKEN_RULE = f"version: 1\nrules:\n{BROKEN_B}    user: {ANCHOR}\n{RULE_C}"


@pytest.mark.parametrize(
    ("text", "line", "kept"),
    [(SHARED_BEFORE, 9, ["a", "c"]), (IN_HEADER, 6, ["c"]), (IN_BROKEN_RULE, 5, [])],
)
def test_a_syntax_error_is_reported_once_without_follow_on_alias_errors(
    text: str, line: int, kept: list[str]
) -> None:
    located = load_yaml_recovering(text)
    assert len(located.errors) == 1, located.errors
    assert located.errors[0][0] == line
    assert "undefined alias" not in located.errors[0][1]
    assert [rule["name"] for rule in located.data["rules"]] == kept
    if "c" in kept:
        rule = located.data["rules"][kept.index("c")]
        assert rule["user"] == {"email": "properties.email"}
        assert (
            located.lines[("rules", kept.index("c"), "user")]
            == text.count("\n", 0, text.index("user: *keys")) + 1
        )


def test_recovery_still_reports_structural_errors_of_the_good_rules() -> None:
    text = SHARED_BEFORE + "  - name: d\n    name: again\n"
    located = load_yaml_recovering(text)
    assert [line for line, _ in located.errors] == [9, 15]
    assert "duplicate key 'name'" in located.errors[1][1]

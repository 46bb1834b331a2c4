"""Loading mapping files: located errors (file:line), schema, sandbox checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdp_tiktok.mapping import MappingLoadError, Problem, load_mapping_set, validate_directory
from cdp_tiktok.mapping.loader import load_yaml, load_yaml_recovering
from cdp_tiktok.settings import TikTokSettings

SETTINGS = TikTokSettings(event_source_id="CPIXEL")


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, **kwargs: object) -> list[Problem]:
    write(tmp_path, text)
    return validate_directory([tmp_path], settings=SETTINGS, **kwargs)  # type: ignore[arg-type]


def errors(found: list[Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in found if p.severity == "error"]


FOUR_PROBLEMS = """
version: 1
defaults: {event_time: timestamp}
rules:
  - name: good
    when: type == "track" and event == "Order Completed"
    event: Purchase
  - name: unknown-event
    when: type == "track" and event == "Thing"
    event: Purchace
  - name: escape
    when: type == "track"
    event: ViewContent
    properties:
      description: "{{ ''.__class__.__mro__ }}"
  - name: typo
    whenn: type == "track"
    event: Search
  - name: broken-yaml
    when: type == "track" and event == "X"
    event: [Search
  - name: also-good
    when: type == "page"
    event: Pageview
"""


def test_four_kinds_of_problems_in_one_file_are_all_reported_with_lines(tmp_path: Path) -> None:
    found = problems(tmp_path, FOUR_PROBLEMS)
    by_line = {line: message for line, message in errors(found)}
    assert all(p.file == str(tmp_path / "rules.yaml") for p in found)
    assert "Purchace" in by_line[9] and "custom" in by_line[9]
    assert "refused" in by_line[14] and "Python internals" in by_line[14]
    assert "unknown key 'whenn'" in by_line[16] and "did you mean 'when'" in by_line[16]
    assert any(line in (20, 21) and "YAML syntax error" in m for line, m in errors(found))
    assert len(errors(found)) == 4, found


def test_load_mapping_set_raises_with_every_problem(tmp_path: Path) -> None:
    write(tmp_path, FOUR_PROBLEMS)
    with pytest.raises(MappingLoadError) as info:
        load_mapping_set([tmp_path], settings=SETTINGS)
    assert len([p for p in info.value.problems if p.severity == "error"]) == 4
    assert "rules.yaml:9" in str(info.value)


def test_yaml_lines_are_recorded_for_keys_and_items() -> None:
    located = load_yaml("a: 1\nb:\n  - x: 2\n  - y\n")
    assert located.errors == []
    assert located.lines[("b",)] == 2
    assert located.lines[("b", 0, "x")] == 3
    assert located.lines[("b", 1)] == 4


def test_duplicate_keys_and_merge_keys_are_errors() -> None:
    located = load_yaml("a: 1\nb: &x {p: 1}\nc:\n  <<: *x\na: 2\n")
    messages = [(line, m) for line, m in located.errors]
    assert (5, "duplicate key 'a' (first defined on line 1)") in messages
    assert any(line == 4 and "merge keys" in m for line, m in messages)


def test_recovery_keeps_the_rules_after_a_broken_one() -> None:
    text = "version: 1\nrules:\n  - name: a\n    when: x\n    event: [\n  - name: b\n"
    located = load_yaml_recovering(text)
    assert located.data == {"version": 1, "rules": [{"name": "b"}]}
    assert located.lines[("rules", 0, "name")] == 6
    assert located.errors and located.errors[0][0] in (5, 6)  # within the broken rule


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("version: 2\nrules: []\n", 1, "version"),
        ("version: 1\n", 1, "'rules' is a required property"),
        ("version: 1\nmatch: some\nrules: []\n", 2, "'some' is not one of"),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            "    user: {emial: properties.email}\n",
            6,
            "unknown key 'emial'; did you mean 'email'",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n",
            3,
            "'event' is a required property",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'trak'\n    event: Search\n",
            4,
            "unknown message type 'trak'",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: evnt == 'X'\n    event: Search\n",
            4,
            "unknown field 'evnt'; did you mean 'event'",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: context.pgae.url\n    event: Search\n",
            4,
            "unknown context field 'pgae'",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            "    properties:\n      query: properties.q | lowr\n",
            7,
            "unknown filter 'lowr'; did you mean 'lower'",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            '    properties:\n      query: "{{ properties.q.upper() }}"\n',
            7,
            "calls are not part of the mapping language",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            "    properties:\n      query: properties['__class__']\n",
            7,
            "Python internals",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            '    properties:\n      query: "{{ properties.q.mro }}"\n',
            7,
            "Python internals",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            "    properties:\n      query: writeKey\n",
            7,
            "credential",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            "    properties:\n      q: \"{% include 'x' %}\"\n",
            7,
            "not allowed",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track' and\n    event: Search\n",
            4,
            "invalid expression",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Checkout\n",
            5,
            "reserved by TikTok on web",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Checkout\n"
            "    custom: true\n",
            5,
            "reserved by TikTok on web",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: purchase\n",
            5,
            "did you mean 'Purchase'",
        ),
        (
            "version: 1\nrules:\n  - name: r\n    when: type == 'track'\n    event: Search\n"
            "    properties:\n      contents:\n        for: p of properties.products\n"
            "        item: {content_id: p.sku}\n",
            8,
            "a loop reads `for: <name> in <list>`",
        ),
        (
            "version: 1\ndefaults: {event_time: timestamp}\nrules:\n"
            "  - name: r\n    when: type == 'track'\n    event: Search\n"
            "  - name: r\n    when: type == 'page'\n    event: Search\n",
            7,
            "already used",
        ),
    ],
)
def test_located_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    found = errors(problems(tmp_path, text))
    assert any(at == line and fragment in message for at, message in found), found


def test_legacy_event_names_warn_naming_the_new_one(tmp_path: Path) -> None:
    text = (
        "version: 1\ndefaults: {event_time: timestamp}\nrules:\n"
        "  - name: r\n    when: type == 'track'\n    event: CompletePayment\n"
    )
    found = problems(tmp_path, text)
    assert errors(found) == []
    assert any(p.line == 6 and "Purchase" in p.message and p.severity == "warning" for p in found)


def test_custom_events_need_custom_true(tmp_path: Path) -> None:
    base = (
        "version: 1\ndefaults: {event_time: timestamp}\nrules:\n"
        "  - name: r\n    when: type == 'track'\n    event: Quote Requested\n"
    )
    assert errors(problems(tmp_path, base))
    assert errors(problems(tmp_path, base + "    custom: true\n")) == []


def test_plugin_filter_shadowing_a_builtin_is_refused(tmp_path: Path) -> None:
    text = "version: 1\nrules: []\n"
    found = problems(tmp_path, text, filters={"lower": str.lower, "shout": str.upper})
    assert [p.message for p in found if p.severity == "error"] == [
        "plugin filter 'lower' shadows a built-in filter; refused"
    ]


def test_an_unreachable_rule_is_a_warning(tmp_path: Path) -> None:
    text = (
        "version: 1\nrules:\n  - name: a\n    when: type == 'track'\n    event: Search\n"
        "  - name: b\n    when: type == 'track' and event == 'X'\n    event: Search\n"
    )
    found = problems(tmp_path, text)
    assert any(p.line == 6 and "can never fire" in p.message for p in found)


def test_missing_directory_and_empty_directory(tmp_path: Path) -> None:
    found = validate_directory([tmp_path / "nope", tmp_path], settings=SETTINGS)
    assert [p.severity for p in found] == ["error", "warning"]


def test_only_empty_directories_are_an_error_that_names_each(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not a rule file", encoding="utf-8")
    dirs = [tmp_path / "a", tmp_path / "b"]
    found = validate_directory(dirs, settings=SETTINGS)
    assert [(p.file, p.severity) for p in found] == [(str(d), "error") for d in dirs]
    assert all("no message would become an event" in p.message for p in found)
    with pytest.raises(MappingLoadError):
        load_mapping_set(dirs, settings=SETTINGS)


def test_an_empty_directory_beside_rules_is_only_a_warning(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "version: 1\ndefaults: {event_time: timestamp}\nrules:\n"
        "  - name: s\n    when: type == 'track'\n    event: Search\n",
        encoding="utf-8",
    )
    dirs = [tmp_path / "empty", tmp_path / "rules"]
    found = validate_directory(dirs, settings=SETTINGS)
    assert [(p.file, p.severity) for p in found] == [(str(tmp_path / "empty"), "warning")]
    assert load_mapping_set(dirs, settings=SETTINGS).problems == found

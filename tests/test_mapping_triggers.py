"""Triggers: precedence, nesting, typed comparisons, and the index fast path."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.mapping import MappingSet, load_mapping_set
from cdp_tiktok.mapping.compiler import Compiler, EvalError
from cdp_tiktok.mapping.problems import Reporter
from cdp_tiktok.mapping.triggers import Trigger, compile_trigger
from cdp_tiktok.settings import TikTokSettings

COMPILER = Compiler(plugin_filters={}, settings={"event_source": "web"})
ROOTS = {"type", "event", "properties", "context", "userId", "traits", "settings"}


@functools.cache
def trigger(source: str) -> Trigger:
    report = Reporter("t.yaml", {})
    found = compile_trigger(COMPILER, source, report, ("when",), ROOTS)
    assert found is not None, report.problems
    return found


def fires(source: str, message: dict[str, Any]) -> bool:
    t = trigger(source)
    fast, slow = t.test(message), t.test_full(message)
    assert fast == slow
    return fast


ORDER = {"type": "track", "event": "Order Completed", "properties": {"total": 30, "n": "3"}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('type == "track" and event == "Order Completed"', True),
        ('type == "track" and event in ["Order Completed", "Order Placed"]', True),
        ('type == "track" and event in ["Order Placed"]', False),
        ('type == "page" or event == "Order Completed"', True),
        # `and` binds tighter than `or`
        ('type == "page" and event == "X" or properties.total > 20', True),
        ('type == "page" and (event == "X" or properties.total > 20)', False),
        ('not type == "page" and properties.total >= 30', True),
        ('not (type == "track" and properties.total >= 30)', False),
        ("properties.total > 20 and properties.total < 40", True),
        ("20 < properties.total < 40", True),
        ("20 < properties.total < 25", False),
        # typed: no cross-type equality
        ("properties.n == 3", False),
        ('properties.n == "3"', True),
        ("properties.total == 30.0", True),
        ("properties.total == true", False),
        # a missing field is false in comparisons, absent in tests
        ("properties.missing > 1", False),
        ("properties.missing == none", False),
        ("properties.missing is defined", False),
        ("properties.total is defined", True),
        ('"Order" in event', True),
        ('"x" in properties.missing', False),
        ('properties.missing not in ["a"]', True),
    ],
)
def test_precedence_nesting_and_typed_comparisons(source: str, expected: bool) -> None:
    assert fires(source, ORDER) is expected


def test_ordering_across_types_is_an_error_not_a_silent_false() -> None:
    t = trigger("properties.n > 2")
    with pytest.raises(EvalError, match="cannot order text and number"):
        t.test(ORDER)


@pytest.mark.parametrize(
    ("source", "types", "events", "rest"),
    [
        ('type == "track" and event == "A"', {"track"}, {"A"}, False),
        ('"track" == type and event in ["A", "B"]', {"track"}, {"A", "B"}, False),
        ('type == "track" and event == "A" and properties.x > 1', {"track"}, {"A"}, True),
        ('type in ["page", "screen"]', {"page", "screen"}, None, False),
        ('type == "track" or event == "A"', None, None, True),
        ("properties.x > 1", None, None, True),
    ],
)
def test_index_key_extraction(
    source: str, types: set[str] | None, events: set[str] | None, rest: bool
) -> None:
    t = trigger(source)
    assert t.types == (None if types is None else frozenset(types))
    assert t.events == (None if events is None else frozenset(events))
    assert (t.rest is not None) is rest


TRIGGERS = [
    'type == "track" and event == "A"',
    'type == "track" and event in ["A", "B"] and properties.v > 1',
    'type == "page" or (type == "track" and event == "B")',
    'event == "A" and not (properties.v < 0)',
    'type in ["page", "screen"] and properties.name == "x"',
    '(type == "track" and event == "C") or properties.v == 2',
    "properties.v is defined and properties.v >= 1",
]

messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "screen", "identify"]),
        "event": st.sampled_from(["A", "B", "C", "D"]),
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "v": st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False)),
                "name": st.sampled_from(["x", "y"]),
            },
        ),
    }
)


@settings(max_examples=300)
@given(message=messages)
def test_indexed_route_equals_full_evaluation(message: dict[str, Any]) -> None:
    for source in TRIGGERS:
        t = trigger(source)
        assert t.test(message) == t.test_full(message), source


def write_rules(tmp_path: Path, rules: str, match: str = "all") -> MappingSet:
    (tmp_path / "r.yaml").write_text(
        f"version: 1\nmatch: {match}\ndefaults:\n  event_time: timestamp\n"
        f"  page: {{url: context.page.url}}\nrules:\n{rules}",
        encoding="utf-8",
    )
    return load_mapping_set([tmp_path], settings=TikTokSettings(event_source_id="C"))


@pytest.fixture(scope="module")
def every_trigger(tmp_path_factory: pytest.TempPathFactory) -> MappingSet:
    rules = "".join(
        f"  - name: r{i}\n    when: '{source}'\n    event: Search\n"
        for i, source in enumerate(TRIGGERS)
    )
    return write_rules(tmp_path_factory.mktemp("triggers"), rules)


@settings(max_examples=200)
@given(message=messages)
def test_mapping_set_candidates_match_a_scan_of_every_rule(
    every_trigger: MappingSet, message: dict[str, Any]
) -> None:
    full = {
        **message,
        "timestamp": "2025-01-01T00:00:00Z",
        "context": {"page": {"url": "https://x.example/"}},
    }
    fired = [e.rule for e in every_trigger.map(full).events]
    scanned = [r.name for r in every_trigger.rules if r.trigger.test_full(full)]
    assert fired == scanned


def test_explain_says_why_each_rule_did_or_did_not_fire(tmp_path: Path) -> None:
    mapping = write_rules(
        tmp_path,
        '  - name: a\n    when: type == "page"\n    event: Search\n'
        '  - name: b\n    when: type == "track" and event == "X" and properties.v > 1\n'
        "    event: Search\n"
        '  - name: c\n    when: type == "track" and event == "X"\n    event: Lead\n'
        '  - name: d\n    when: type == "track" and event == "X"\n    event: Contact\n',
        match="first",
    )
    message = {
        "type": "track",
        "event": "X",
        "properties": {"v": 0},
        "timestamp": "2025-01-01T00:00:00Z",
        "context": {"page": {"url": "https://x.example/"}},
    }
    result = mapping.map(message, explain=True)
    assert [e.rule for e in result.events] == ["c"]
    text = "\n".join(result.explain)
    assert "'a'" in text and "not a candidate (index: type in ['page'])" in text
    assert "'b'" in text and "trigger false" in text
    assert "'c'" in text and "fired -> Lead" in text
    assert "'d'" in text and "not evaluated (match: first, rule 'c' fired)" in text

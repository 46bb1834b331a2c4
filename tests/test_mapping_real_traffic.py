"""Issue 8: real traffic through the mappings: match-first, pageless web events,
normalized event names, honest validate, located skip warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdp_tiktok.host import Host
from cdp_tiktok.mapping import MappingLoadError, MappingSet, load_mapping_set, validate_directory
from cdp_tiktok.mapping.problems import Problem
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.payload import validate_event
from tests.test_mapping_engine import mapping, message, one


def test_match_first_stops_at_the_first_matching_rule_even_when_it_sends_nothing(
    tmp_path: Path,
) -> None:
    m: MappingSet = mapping(
        tmp_path,
        """
        - name: needs-a-time
          when: type == "track" and event == "E"
          event: Purchase
          event_time: properties.paid_at
        - name: catch-all
          when: type == "track"
          event: Search
        """,
    )
    result = m.map(message())
    assert result.events == []
    assert any("needs-a-time" in w and "event_time" in w for w in result.warnings)
    explained = m.map(message(), explain=True).explain
    assert any("'catch-all'" in line and "not evaluated" in line for line in explained)
    assert not any("no rule fired" in line for line in explained)


NAMED = """
- name: order
  when: type == "track" and event is named "Order Completed"
  event: Purchase
- name: search
  when: type == "track" and event is named ["Products Searched", "Search Done"]
  event: Search
"""


@pytest.mark.parametrize(
    "name",
    ["Order Completed", "order completed", "order_completed", "Order-Completed", "ORDER COMPLETED",
     "OrderCompleted", " order  completed "],
)  # fmt: skip
def test_named_compares_event_names_ignoring_case_and_separators(tmp_path: Path, name: str) -> None:
    m = mapping(tmp_path, NAMED)
    assert [e.rule for e in m.map(message(event=name)).events] == ["order"]


def test_named_terms_are_indexed_and_explained(tmp_path: Path) -> None:
    m = mapping(tmp_path, NAMED)
    (rule_file,) = m.files
    assert set(rule_file._by_key) == {"ordercompleted", "productssearched", "searchdone"}
    assert rule_file._any_event == []
    assert [r.name for r in rule_file.candidates("track", "search_done")] == ["search"]
    assert rule_file.candidates("track", "Order Refunded") == ()
    assert rule_file.candidates("page", "Order Completed") == ()
    explained = m.map(message(event="order_completed"), explain=True).explain
    assert any("'search'" in line and "not a candidate" in line for line in explained)
    # the slow route agrees with the index
    for rule in m.rules:
        for event in ("order_completed", "Search-Done", "Order Refunded"):
            scope = message(event=event)
            assert rule.trigger.test(scope) == rule.trigger.test_full(scope)


def test_validate_sees_a_named_rule_shadowing_a_later_exact_one(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        NAMED + '- name: late\n  when: type == "track" and event == "order_completed"\n'
        "  event: Purchase\n",
    )
    assert any("'late' can never fire" in p.message for p in m.problems)


def test_standard_event_names_in_any_spelling_map_to_the_catalog_name(tmp_path: Path) -> None:
    rules = """
    - name: std
      when: type == "track" and event | standard_event is defined
      event: "{{ event | standard_event }}"
    """
    web = mapping(tmp_path, rules)
    assert one(web, message(event="view_content"))["event"] == "ViewContent"
    legacy = web.map(message(event="complete_payment"))
    assert [e.data["event"] for e in legacy.events] == ["Purchase"]
    assert any("legacy" in w and "sent as Purchase" in w for w in legacy.warnings)
    assert web.map(message(event="checkout")).events == []  # reserved on web
    assert web.map(message(event="pageview")).events == []  # a page view is not a track
    app_rules = rules + "  app: {app_id: settings.app_id}\n"
    app = mapping(tmp_path, app_rules, event_source="app", app_id="123")
    assert one(app, message(event="checkout"))["event"] == "Checkout"
    assert one(app, message(event="launch_app"))["event"] == "LaunchAPP"


def _errors(m_problems: list[Problem]) -> list[str]:
    return [p.message for p in m_problems if p.severity == "error"]


@pytest.mark.parametrize(
    ("source", "rule", "expected"),
    [
        ("web", "  event_time: null\n", "can never send an event: no source for event_time"),
        ("crm", "  lead: null\n", "crm events need lead.lead_id and the rule has no source"),
        ("app", "  app: {app_id: null}\n", "app events need app.app_id and the rule has no source"),
        ("web", "  page: null\n", "web events need page.url and the rule has no source"),
    ],
)
def test_validate_reports_a_rule_that_can_never_send_as_an_error(
    tmp_path: Path, source: str, rule: str, expected: str
) -> None:
    text = HEAD_FOR_SENDABLE + '- name: r\n  when: type == "track"\n  event: Purchase\n' + rule
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    settings = TikTokSettings(event_source=source, app_id="1", require_page_url=True)
    errors = _errors(validate_directory([tmp_path], settings=settings))
    assert len(errors) == 1 and expected in errors[0], errors
    with pytest.raises(MappingLoadError):
        load_mapping_set([tmp_path], settings=settings)


def test_a_rule_with_every_source_is_ok_and_a_skip_names_the_rule_and_the_field(
    tmp_path: Path,
) -> None:
    text = HEAD_FOR_SENDABLE + '- name: r\n  when: type == "track"\n  event: Purchase\n'
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    settings = TikTokSettings(event_source="crm")
    assert _errors(validate_directory([tmp_path], settings=settings)) == []
    result = load_mapping_set([tmp_path], settings=settings).map(message(), explain=True)
    assert result.events == []
    assert result.warnings == [
        "rule r: crm events need lead.lead_id and the message gives none; no event sent"
    ]
    assert "rule 'r'" in result.explain[-2] and "fired, but no event" in result.explain[-2]
    assert result.explain[-1] == "no TikTok event: a rule fired but its event could not be sent"


HEAD_FOR_SENDABLE = """version: 1
defaults:
  event_id: messageId
  event_time: timestamp
  page: {url: context.page.url}
  app: {app_id: settings.app_id}
  lead: {lead_id: properties.lead_id}
rules:
"""


DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize(
    ("file", "source", "extra"),
    [
        ("server_side_events.jsonl", "web", {}),
        ("crm_leads.jsonl", "crm", {"lead_event_source": "HubSpot"}),
    ],
)
def test_backend_streams_without_page_context_give_one_event_per_message(
    file: str, source: str, extra: dict[str, str]
) -> None:
    settings = TikTokSettings(event_source=source, event_source_id="7123456789", **extra)
    lines = (DATA / file).read_text(encoding="utf-8").splitlines()
    with Host(settings, load_entry_points=False, identity="memory://") as host:
        produced = [host.process(json.loads(line)) for line in lines]
    assert [len(events) for events in produced] == [1] * len(lines)
    for (event,) in produced:
        assert "page" not in event.data
        assert validate_event(event.data, source) == []
        if source == "crm":
            assert event.data["lead"]["lead_event_source"] == "HubSpot"
    names = {e.data["event"] for (e,) in produced}
    expected = {"Purchase", "InitiateCheckout", "CompleteRegistration", "ViewContent", "AddToCart"}
    assert names == (expected if source == "web" else {"CompleteRegistration", "Lead"})


def test_validate_and_the_engine_agree_on_what_match_first_means(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: first
          when: type == "track" and event == "E"
          event: "{{ properties.kind }}"
        - name: shadowed
          when: type == "track" and event == "E"
          event: Search
        """,
    )
    # validate: the second rule can never fire, whatever the first one sends
    assert any("'shadowed' can never fire" in p.message for p in m.problems)
    # engine: a first rule whose event is refused at run time (reserved name) still decides
    refused = m.map(message(properties={"kind": "Checkout"}))
    assert refused.events == []
    assert any("first" in w and "reserved" in w for w in refused.warnings)
    assert [e.rule for e in m.map(message(properties={"kind": "Purchase"})).events] == ["first"]

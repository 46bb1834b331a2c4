"""Issue 8: every event of the default table, in any case or separators, on every event
source gives exactly one event that TikTok's request schema accepts."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.mapping import MappingSet, default_mapping_dir, load_mapping_set
from cdp_tiktok.messages import validate_message
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.testing.strategies import name_variants, track_messages_named
from cdp_tiktok.tiktok.catalog import load_catalog, name_key
from cdp_tiktok.tiktok.payload import build_request, validate_event, validate_request

SETTINGS = {
    "web": TikTokSettings(event_source_id="CPIXEL0000000000000A"),
    "app": TikTokSettings(event_source="app", event_source_id="7123456789", app_id="123456"),
    "offline": TikTokSettings(event_source="offline", event_source_id="7234567890123456789"),
    "crm": TikTokSettings(
        event_source="crm", event_source_id="7334567890123456789", lead_event_source="HubSpot"
    ),
}
_NAMED = re.compile(r'event is named "([^"]+)"')


def table(source: str) -> list[str]:
    """The Segment names the packaged rules map for ``source``, and the catalog's
    standard names of ``source`` (the lowest-precedence rule)."""
    rules = yaml.safe_load((default_mapping_dir() / "segment.yaml").read_text())["rules"]
    names = [
        found
        for rule in rules
        if source in rule.get("sources", [source])
        for found in _NAMED.findall(rule["when"])
    ]
    return sorted(set(names)) + sorted(load_catalog().standard(source))


@pytest.fixture(scope="module")
def mappings() -> dict[str, MappingSet]:
    return {
        source: load_mapping_set([default_mapping_dir()], settings=s)
        for source, s in SETTINGS.items()
    }


def _with_lead(raw: dict[str, Any], lead_id: str) -> dict[str, Any]:
    return {**raw, "properties": {**(raw.get("properties") or {}), "lead_id": lead_id}}


def _messages(source: str) -> st.SearchStrategy[dict[str, Any]]:
    messages = track_messages_named(table(source))
    if source == "crm":  # a CRM event is TikTok's only when it names the lead
        return st.builds(_with_lead, messages, st.from_regex(r"7[0-9]{18}", fullmatch=True))
    return messages


@pytest.mark.parametrize("source", sorted(SETTINGS))
def test_every_default_table_event_in_any_spelling_gives_exactly_one_valid_event(
    mappings: dict[str, MappingSet], source: str
) -> None:
    mapping = mappings[source]

    @settings(max_examples=150)
    @given(_messages(source))
    def check(raw: dict[str, Any]) -> None:
        message = validate_message(raw)
        result = mapping.map(message)
        assert len(result.events) == 1, (message["event"], result.warnings)
        (event,) = result.events
        assert validate_event(event.data, source) == []
        body = build_request(event.key, [event.data], mapping.settings.partner_name)
        assert validate_request(body, names=True) == []

    check()


@settings(max_examples=200)
@given(st.sampled_from(table("web")).flatmap(lambda n: st.tuples(st.just(n), name_variants(n))))
def test_name_variants_share_the_name_key(pair: tuple[str, str]) -> None:
    name, variant = pair
    assert name_key(variant) == name_key(name)

"""The built-in TikTok destination plugin through the real host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdp_tiktok.backends import open_identity_store
from cdp_tiktok.destination import Destination
from cdp_tiktok.events import MapResult
from cdp_tiktok.hookspecs import hookimpl
from cdp_tiktok.host import Host
from cdp_tiktok.mapping import MappingLoadError
from cdp_tiktok.matchkeys import sha256_hex
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.destination import TikTokPlugin

SETTINGS = TikTokSettings(event_source_id="CPIXEL")
PAGE = {"page": {"url": "https://shop.example/"}}


def host(**kwargs: Any) -> Host:
    kwargs.setdefault("settings", SETTINGS)
    return Host(load_entry_points=False, **kwargs)


def test_registers_the_tiktok_destination_with_its_segment_alias() -> None:
    with host() as h:
        destination = h.destinations["TikTok"]
        assert destination.plugin == "tiktok"
        assert destination.aliases == ("TikTok Conversions",)
        assert h.route({"type": "track", "integrations": {"TikTok Conversions": False}}) == []


def test_hooks_ignore_other_plugins_destinations() -> None:
    plugin = TikTokPlugin(SETTINGS)
    other = Destination("Other", plugin="other")
    message = {"type": "track", "event": "Order Completed", "userId": "u"}
    for hook in ("track", "identify", "page", "screen", "group", "alias"):
        assert getattr(plugin, f"cdp_on_{hook}")(message=message, destination=other) is None


def test_mapping_set_is_compiled_once_per_destination() -> None:
    with host() as h:
        h.track(user_id="u", event="Order Completed", context=PAGE)
        destination = h.destinations["TikTok"]
        first = destination.state["mapping_set"]
        h.track(user_id="u", event="Order Completed", context=PAGE)
        assert destination.state["mapping_set"] is first


def test_identify_then_track_and_alias_enrich_events(tmp_path: Path) -> None:
    # ids long enough never to occur by chance in the file's binary parts (a two-byte
    # "u1" did, once in a while, inside a stored timestamp)
    user_id = "crm-user-4711"
    store = open_identity_store(f"sqlite:///{tmp_path / 'id.db'}", 86400.0)
    with host(identity=store) as h:
        traits = {"email": "Jo@Example.com"}
        assert h.identify(user_id=user_id, anonymous_id="anon-4711", traits=traits) == []
        assert h.alias(previous_id="anon-4712", user_id=user_id) == []
        (event,) = h.track(anonymous_id="anon-4712", event="Order Completed", context=PAGE)
    user = event.data["user"]
    assert user["email"] == [sha256_hex("jo@example.com")]
    assert user["external_id"] == [sha256_hex(user_id)]
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("id.db*"))  # WAL included
    assert b"jo@example.com" not in raw.lower()
    assert b"crm-user-4711" not in raw and b"anon-471" not in raw


def test_without_an_identity_store_nothing_is_enriched() -> None:
    with host(identity=None) as h:
        h.identify(user_id="u1", anonymous_id="a1", traits={"email": "jo@example.com"})
        (event,) = h.track(anonymous_id="a1", event="Order Completed", context=PAGE)
    assert "user" not in event.data


def test_observer_and_explain_state_keys() -> None:
    seen: list[MapResult] = []
    with host() as h:
        destination = h.destinations["TikTok"]
        destination.state["explain"] = True
        destination.state["observer"] = lambda message, result: seen.append(result)
        h.track(user_id="u", event="Nope", context=PAGE)
    assert seen and seen[0].events == []
    assert "no TikTok event: no rule fired" in seen[0].explain


def test_a_user_plugin_adds_filters_and_mapping_dirs(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "quotes.yaml").write_text(
        "version: 1\nrules:\n  - name: quote\n    when: type == 'track' and event == 'Quote'\n"
        "    event: Contact\n    event_time: timestamp\n    page: {url: context.page.url}\n"
        "    properties: {description: properties.text | shout}\n",
        encoding="utf-8",
    )

    class Extras:
        @hookimpl
        def cdp_register_filters(self, register: Any) -> None:
            register("shout", lambda value: str(value).upper() + "!")

        @hookimpl
        def cdp_register_mapping_dirs(self, register: Any) -> None:
            register(extra)

    with host(plugins=[Extras()]) as h:
        (event,) = h.track(user_id="u", event="Quote", properties={"text": "hi"}, context=PAGE)
    assert event.rule == "quote"
    assert event.data["properties"] == {"description": "HI!"}


def test_broken_mappings_raise_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\nrules:\n  - name: x\n", encoding="utf-8")
    settings = TikTokSettings(event_source_id="C", mappings=tmp_path)
    with host(settings=settings) as h, pytest.raises(MappingLoadError, match=r"bad\.yaml:3"):
        h.track(user_id="u", event="Order Completed", context=PAGE)

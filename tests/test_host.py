"""The host: plugin registration, routing by ``integrations``, blocking, the Python API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdp_tiktok import hookimpl
from cdp_tiktok.destination import Destination
from cdp_tiktok.events import BatchKey, Outcome, OutgoingEvent, Verdict
from cdp_tiktok.host import Host, PluginError
from cdp_tiktok.messages import MessageError
from cdp_tiktok.settings import TikTokSettings


class Recorder:
    """A destination plugin that records what it was called with."""

    def __init__(self, name: str = "Recorder", aliases: tuple[str, ...] = ()) -> None:
        self.name = name
        self.aliases = aliases
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def cdp_register_destinations(self, register: Callable[[Destination], None]) -> None:
        register(Destination(self.name, plugin=self.name, aliases=self.aliases))

    def _record(
        self, kind: str, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        if destination.plugin != self.name:
            return None
        self.calls.append((kind, message))
        key = BatchKey(self.name, "web", "CPIXEL")
        return [OutgoingEvent(key, {"event": kind, "event_id": message["messageId"]})]

    @hookimpl
    def cdp_on_track(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        return self._record("track", message, destination)

    @hookimpl
    def cdp_on_identify(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        return self._record("identify", message, destination)

    @hookimpl
    def cdp_on_page(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        return self._record("page", message, destination)

    @hookimpl
    def cdp_on_screen(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        return self._record("screen", message, destination)

    @hookimpl
    def cdp_on_group(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        return self._record("group", message, destination)

    @hookimpl
    def cdp_on_alias(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        return self._record("alias", message, destination)


def make_host(*plugins: object, **kwargs: Any) -> Host:
    return Host(plugins=plugins, builtins=False, load_entry_points=False, identity=None, **kwargs)


def test_python_api_calls_the_hook_of_each_call_type() -> None:
    recorder = Recorder()
    host = make_host(recorder)
    host.track(user_id="u1", event="Order Completed", properties={"revenue": 0})
    host.identify(user_id="u1", traits={"plan": "pro"})
    host.page(anonymous_id="a1", name="Home")
    host.screen(user_id="u1", name="Cart")
    host.group(user_id="u1", group_id="g1")
    host.alias(previous_id="a1", user_id="u1")
    assert [kind for kind, _ in recorder.calls] == [
        "track",
        "identify",
        "page",
        "screen",
        "group",
        "alias",
    ]
    track = recorder.calls[0][1]
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"revenue": 0}
    assert track["messageId"] and track["timestamp"]


def test_invalid_message_is_rejected_before_any_hook_runs() -> None:
    recorder = Recorder()
    host = make_host(recorder)
    with pytest.raises(MessageError) as info:
        host.process({"type": "track", "event": "Signed Up"})
    assert "anonymousId" in str(info.value) and "userId" in str(info.value)
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("integrations", "expected"),
    [
        (None, {"A", "B"}),
        ({}, {"A", "B"}),
        ({"All": False}, set()),
        ({"All": False, "A": True}, {"A"}),
        ({"B": False}, {"A"}),
        ({"All": False, "B-alias": {"ttclid": "x"}}, {"B"}),
        ({"a": False}, {"A", "B"}),  # keys are case-sensitive, like Segment's
    ],
)
def test_routing_honours_integrations(
    integrations: dict[str, Any] | None, expected: set[str]
) -> None:
    a, b = Recorder("A"), Recorder("B", aliases=("B-alias",))
    host = make_host(a, b)
    message: dict[str, Any] = {"type": "track", "userId": "u", "event": "E"}
    if integrations is not None:
        message["integrations"] = integrations
    events = host.process(message)
    assert {event.key.destination for event in events} == expected
    assert {d.name for d in host.route(message)} == expected


def test_process_uses_the_routes_it_is_given() -> None:
    a, b = Recorder("A"), Recorder("B")
    host = make_host(a, b)
    message = {"type": "track", "userId": "u", "event": "E", "integrations": {"B": False}}
    routes = host.route(message)
    assert [d.name for d in routes] == ["A"]
    assert host.process(message, routes=routes) == host.process(message)
    assert host.process(message, routes=[]) == []
    assert [kind for kind, _ in a.calls] == ["track", "track"] and b.calls == []


def test_duplicate_destination_keys_name_both_plugins() -> None:
    with pytest.raises(PluginError, match=r"'A'.*'B'|'B'.*'A'"):
        make_host(Recorder("A", aliases=("Shared",)), Recorder("B", aliases=("Shared",)))


def test_registration_hooks_collect_filters_and_mapping_dirs(tmp_path: Path) -> None:
    class Extras:
        @hookimpl
        def cdp_register_filters(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
            register("double", lambda value: value * 2)

        @hookimpl
        def cdp_register_mapping_dirs(self, register: Callable[[Path], None]) -> None:
            register(tmp_path)

    recorder = Recorder()
    host = make_host(recorder, Extras())
    assert host.filters["double"](21) == 42
    assert host.mapping_dirs == [tmp_path]
    state = host.destinations["Recorder"].state
    assert state["filters"] is host.filters and state["mapping_dirs"] == [tmp_path]


def test_duplicate_filter_names_both_plugins() -> None:
    class One:
        @hookimpl
        def cdp_register_filters(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
            register("same", str)

    class Two(One):
        pass

    with pytest.raises(PluginError, match=r"filter .same. registered by both"):
        make_host(One(), Two())


def test_mapping_dir_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    class Bad:
        @hookimpl
        def cdp_register_mapping_dirs(self, register: Callable[[Path], None]) -> None:
            register(tmp_path / "missing")

    with pytest.raises(PluginError, match="not a directory"):
        make_host(Bad())


def test_user_plugin_overrides_builtin_firstresult_delivery_hooks() -> None:
    class Override:
        @hookimpl
        def cdp_batch_key(self, event: OutgoingEvent) -> BatchKey:
            return BatchKey("override", "web", "X")

        @hookimpl
        def cdp_encode_batch(
            self, key: BatchKey, events: list[dict[str, Any]], partner_name: str | None
        ) -> bytes:
            return b"custom"

        @hookimpl
        def cdp_classify_response(
            self, status_code: int | None, body: bytes, error: str | None, batch_size: int
        ) -> Verdict:
            return Verdict(Outcome.DEAD, reason="override")

    host = Host(plugins=[Override()], load_entry_points=False, identity=None)
    event = OutgoingEvent(BatchKey("TikTok", "web", "C1"), {"event": "Purchase"})
    assert host.hooks.batch_key(event) == BatchKey("override", "web", "X")
    assert host.hooks.encode_batch(event.key, [event.data], None) == b"custom"
    assert host.hooks.classify_response(200, b'{"code":0}', None, 1).reason == "override"


def test_builtin_delivery_hooks_answer_when_no_user_plugin_does() -> None:
    host = Host(load_entry_points=False, identity=None)
    event = OutgoingEvent(BatchKey("TikTok", "web", "C1", "TEST1"), {"event": "Purchase"})
    assert host.hooks.batch_key(event) == event.key
    body = host.hooks.encode_batch(event.key, [event.data], "cdp_tiktok")
    assert b'"test_event_code":"TEST1"' in body and b'"data":[{"event":"Purchase"}]' in body
    assert (
        host.hooks.classify_response(200, b'{"code":0,"message":"OK"}', None, 1).outcome
        is Outcome.DELIVERED
    )
    assert (
        host.hooks.classify_response(200, b'{"code":40100,"message":"x"}', None, 5).outcome
        is Outcome.THROTTLED
    )


def test_builtin_plugins_can_be_blocked_by_environment() -> None:
    host = Host(
        load_entry_points=False,
        identity=None,
        environ={"CDP_TIKTOK_DISABLE_PLUGINS": "delivery, tiktok"},
    )
    assert host.plugin("delivery") is None and host.plugin("tiktok") is None
    assert host.destinations == {}
    with pytest.raises(PluginError, match="cdp_encode_batch"):
        host.hooks.encode_batch(BatchKey("TikTok", "web", "C"), [], None)


def test_plugin_info_lists_builtins_with_their_hooks() -> None:
    host = Host(load_entry_points=False, identity=None)
    infos = {info.name: info for info in host.plugin_info()}
    assert infos["tiktok"].source == "built-in"
    assert "cdp_on_track" in infos["tiktok"].hooks
    assert "cdp_classify_response" in infos["delivery"].hooks


PAGE = {"page": {"url": "https://shop.example/checkout"}}


def test_host_with_an_outbox_refuses_unsendable_tiktok_settings() -> None:
    from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
    from cdp_tiktok.settings import Secret, SettingsError

    outbox = MemoryOutbox()
    with pytest.raises(SettingsError, match=r"destination 'TikTok' cannot deliver.*pixel_code"):
        Host(TikTokSettings(access_token=Secret("t")), outbox=outbox, load_entry_points=False)
    with pytest.raises(SettingsError, match=r"destination 'TikTok' cannot deliver.*access_token"):
        Host(TikTokSettings(event_source_id="C1"), outbox=MemoryOutbox(), load_entry_points=False)
    assert outbox.stats().pending == 0
    sendable = TikTokSettings(event_source_id="C1", access_token=Secret("t"))
    with Host(sendable, outbox=MemoryOutbox(), load_entry_points=False) as host:
        host.track(user_id="u1", event="Order Completed", properties={"revenue": 1}, context=PAGE)
        assert host.outbox is not None and host.outbox.stats().pending == 1


def test_host_without_an_outbox_maps_without_credentials() -> None:
    with Host(TikTokSettings(), load_entry_points=False) as host:
        events = host.track(
            user_id="u1", event="Order Completed", properties={"revenue": 1}, context=PAGE
        )
    assert [e.data["event"] for e in events] == ["Purchase"]


def test_deliverer_refuses_unsendable_settings() -> None:
    from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
    from cdp_tiktok.delivery.worker import Deliverer
    from cdp_tiktok.settings import SettingsError

    with pytest.raises(SettingsError, match=r"destination 'TikTok' cannot deliver.*access_token"):
        Deliverer(MemoryOutbox(), {"TikTok": TikTokSettings()})

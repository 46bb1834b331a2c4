"""The host calls a built-in's sole call-hook implementation directly, exactly as pluggy
would; any other implementation, or any hook-call monitoring, goes through pluggy."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from cdp_tiktok import hookimpl
from cdp_tiktok.destination import Destination
from cdp_tiktok.events import OutgoingEvent
from cdp_tiktok.host import CALL_HOOKS, Host
from cdp_tiktok.messages import validate_message
from cdp_tiktok.plugins import TRACE_PREFIX, trace_hook_calls
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.testing.strategies import ecommerce_track_messages, valid_messages

SETTINGS = TikTokSettings(event_source_id="CPIXEL0000000000000A")
ORDER = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u-1",
    "timestamp": "2025-03-01T12:00:00Z",  # fixed: events made at different times are equal
    "properties": {"order_id": "o1", "revenue": 5, "currency": "USD"},
    "context": {"traits": {"email": "ada@example.com"}},
}


class Spy:
    """Sees every track call, for every destination; adds no event."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def cdp_on_track(
        self, message: dict[str, Any], destination: Destination
    ) -> list[OutgoingEvent] | None:
        self.seen.append(destination.name)
        return None


def _through_pluggy(host: Host, message: dict[str, Any]) -> list[OutgoingEvent]:
    caller = getattr(host.pm.hook, CALL_HOOKS[message["type"]])
    events: list[OutgoingEvent] = []
    for destination in host.route(message):
        for result in caller(message=message, destination=destination):
            events.extend(result or ())
    return events


def _host(**kwargs: Any) -> Host:
    return Host(SETTINGS, load_entry_points=False, identity=None, environ={}, **kwargs)


HOST = _host()


def test_every_call_hook_of_the_builtins_alone_is_called_directly() -> None:
    assert set(HOST.hooks._sole) == set(CALL_HOOKS.values())


@settings(max_examples=200)
@given(valid_messages() | ecommerce_track_messages())
def test_the_direct_call_returns_what_pluggy_returns(message: dict[str, Any]) -> None:
    valid = validate_message(message)
    assert HOST.process(valid, validated=True) == _through_pluggy(HOST, valid)


def test_a_third_party_plugin_beside_the_builtin_is_called() -> None:
    spy = Spy()
    with _host(plugins=[spy]) as host:
        assert "cdp_on_track" not in host.hooks._sole  # two implementations: pluggy's way
        events = host.process(ORDER)
    assert spy.seen == ["TikTok"]
    assert [event.data["event"] for event in events] == ["Purchase"]


def test_a_plugin_registered_after_the_host_was_built_is_called() -> None:
    spy = Spy()
    with _host() as host:
        before = host.process(ORDER)
        host.pm.register(spy)
        after = host.process(ORDER)
        host.pm.unregister(spy)
        again = host.process(ORDER)
    assert spy.seen == ["TikTok"]
    assert [e.data for e in before] == [e.data for e in after] == [e.data for e in again]


def test_hook_call_monitoring_sees_every_call_while_installed() -> None:
    calls: list[str] = []

    def before(hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        calls.append(hook_name)

    def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        return None

    with _host() as host:
        undo = host.pm.add_hookcall_monitoring(before, after)
        host.process(ORDER)
        undo()
        host.process(ORDER)
    assert calls == ["cdp_on_track"]


def test_tracing_switched_on_after_the_host_was_built_prints_the_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _host() as host:
        trace_hook_calls(host.pm)
        host.process(ORDER)
    assert f"{TRACE_PREFIX} cdp_on_track <- tiktok(" in capsys.readouterr().err


class OwnSpy(Spy):
    """A spy with a destination of its own."""

    name = "own-spy"

    @hookimpl
    def cdp_register_destinations(self, register: Any) -> None:
        register(Destination("Own", plugin=self.name))


def test_only_builtins_are_called_directly() -> None:
    spy = OwnSpy()
    with Host(SETTINGS, plugins=[spy], builtins=False, load_entry_points=False, identity=None) as h:
        assert h.hooks._sole == {}  # the sole implementation is not a built-in's
        assert h.process(ORDER) == []
    assert spy.seen == ["Own"]

"""The built-in delivery plugin answers the delivery hooks, and yields to user plugins."""

from __future__ import annotations

import inspect
import json

import pluggy

from cdp_tiktok import hookspecs
from cdp_tiktok.delivery.plugin import DeliveryPlugin
from cdp_tiktok.events import BatchKey, Outcome, OutgoingEvent
from cdp_tiktok.hookspecs import hookimpl
from tests.helpers_delivery import key_for, mapped_event


def manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_delivery_hooks_answer_with_key_envelope_and_verdict() -> None:
    pm = manager(DeliveryPlugin())
    event = OutgoingEvent(key_for(test_event_code="TEST42"), mapped_event(1))
    assert pm.hook.cdp_batch_key(event=event) == event.key
    body = pm.hook.cdp_encode_batch(key=event.key, events=[event.data], partner_name="acme")
    assert json.loads(body) == {
        "event_source": "web",
        "event_source_id": event.key.event_source_id,
        "partner_name": "acme",
        "test_event_code": "TEST42",
        "data": [event.data],
    }
    verdict = pm.hook.cdp_classify_response(
        status_code=200, body=b'{"code":40100,"message":"slow"}', error=None, batch_size=3
    )
    assert verdict.outcome is Outcome.THROTTLED and verdict.code == 40100


def test_a_user_plugin_is_asked_first() -> None:
    class PerRuleKey:
        @hookimpl
        def cdp_batch_key(self, event: OutgoingEvent) -> BatchKey:
            return BatchKey(event.key.destination, "web", "OTHER", None)

    pm = manager(DeliveryPlugin(), PerRuleKey())
    event = OutgoingEvent(key_for(), mapped_event(2))
    assert pm.hook.cdp_batch_key(event=event).event_source_id == "OTHER"


def test_hook_implementations_have_no_parameter_defaults() -> None:
    for name in ("cdp_batch_key", "cdp_encode_batch", "cdp_classify_response"):
        parameters = inspect.signature(getattr(DeliveryPlugin(), name)).parameters.values()
        assert all(p.default is inspect.Parameter.empty for p in parameters)

"""Plugin tracing (CDP_TIKTOK_TRACE_PLUGINS / --trace-plugins) and redaction."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.host import Host
from cdp_tiktok.plugins import TRACE_ENV, TRACE_PREFIX
from cdp_tiktok.redaction import redact
from cdp_tiktok.settings import TikTokSettings

MESSAGE = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user_123",
    "messageId": "m-trace",
    "timestamp": "2025-03-01T12:00:00Z",
    "properties": {"order_id": "o1", "revenue": 5, "email": "Ada@Example.com"},
    "context": {
        "page": {"url": "https://shop.example/"},
        "traits": {"phone": "+1 415 555 0100", "name": "Ada Lovelace"},
    },
}
RAW = ("user_123", "Ada@Example.com", "ada@example.com", "555 0100", "Ada Lovelace")


def test_tracing_prints_each_hook_call_with_plugin_arguments_and_result_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = TikTokSettings(event_source_id="CPIXEL0000000000000A")
    with Host(settings, load_entry_points=False, environ={TRACE_ENV: "1"}) as host:
        events = host.process(MESSAGE)
        host.hooks.batch_key(events[0])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(TRACE_PREFIX)]
    track = next(line for line in lines if " cdp_on_track <- tiktok(" in line)
    assert '"order_id": "o1"' in track and "destination=\"<Destination 'TikTok'" in track
    assert '"rule": "order-completed"' in track and '"event": "Purchase"' in track
    email_hash = events[0].data["user"]["email"][0]
    assert email_hash in track  # match keys appear hashed, as TikTok receives them
    assert '"email": "<redacted sha256:' in track and '"userId": "<redacted sha256:' in track
    for raw in RAW:
        assert raw not in err
    assert any(" cdp_register_destinations <- tiktok(register=" in line for line in lines)
    assert any(" cdp_batch_key <- delivery(event=" in line for line in lines)


def test_tracing_is_off_by_default_and_wraps_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    settings = TikTokSettings(event_source_id="CPIXEL0000000000000A")
    with Host(settings, load_entry_points=False, environ={}) as host:
        host.process(MESSAGE)
        impls = host.pm.hook.cdp_on_track.get_hookimpls()
    assert TRACE_PREFIX not in capsys.readouterr().err
    assert not any(getattr(i.function, "__cdp_traced__", False) for i in impls)


def test_trace_flag_on_the_command_line() -> None:
    result = CliRunner().invoke(  # env: restored afterwards, so the switch does not leak
        main,
        ["--trace-plugins", "map", "-"],
        input='{"type":"page","userId":"user_123"}\n',
        env={TRACE_ENV: ""},
    )
    assert result.exit_code == 0, result.output
    assert f"{TRACE_PREFIX} cdp_on_page <- tiktok(" in result.stderr
    assert "user_123" not in result.stderr
    assert TRACE_ENV not in os.environ


def test_redact_keeps_hashes_and_redacts_personal_fields() -> None:
    digest = "a" * 64
    shown = redact(
        {"traits": {"name": "Ada", "email": "a@b.co"}, "name": "Home", "user": {"email": [digest]}}
    )
    assert shown["name"] == "Home"
    assert shown["user"]["email"] == [digest]
    assert shown["traits"]["name"].startswith("<redacted sha256:")
    assert shown["traits"]["email"].startswith("<redacted sha256:")

"""``cdp-tiktok worker``: processes sharing one SQLite outbox, stopped by SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, Secret
from tests.workers import until, worker_process

KEY = BatchKey("TikTok", "web", "CWORKERPIXEL00000001")
EVENTS = 400
DEADLINE = 60.0


def _event(n: int) -> OutgoingEvent:
    return OutgoingEvent(
        KEY,
        {
            "event": "Purchase",
            "event_id": f"w-{n}",
            "event_time": int(time.time()),
            "user": {"external_id": ["a" * 64]},
            "page": {"url": "https://shop.example/"},
            "properties": {"value": n, "currency": "EUR"},
        },
    )


def test_two_workers_share_one_outbox_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("batch_max_events: 10\n")
    box = SQLiteOutbox(tmp_path / "outbox.db")
    box.enqueue([_event(n) for n in range(EVENTS)])
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    with SandboxServer(latency_ms=50) as sandbox:
        first = worker_process(url, sandbox.url, settings, "--concurrency", "1")
        second = worker_process(url, sandbox.url, settings, "--concurrency", "1")
        try:
            until(lambda: sandbox.stats().accepted_events >= 60, "the first deliveries")
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=DEADLINE) == 0
            assert box.stats().delivered < EVENTS  # stopped mid-stream
            until(lambda: box.stats().delivered == EVENTS, "the second worker to finish")
            second.send_signal(signal.SIGINT)
            assert second.wait(timeout=DEADLINE) == 0
        finally:
            for process in (first, second):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        events = sandbox.events()
        stats = sandbox.stats()
    ids = sorted(e["data"]["event_id"] for e in events)
    assert ids == sorted(f"w-{n}" for n in range(EVENTS))  # every event, each once
    assert stats.duplicates == 0
    assert box.stats().pending == box.stats().leased == 0
    for process in (first, second):
        assert process.stderr is not None
        log = process.stderr.read().decode()
        assert "worker stopped: delivered" in log and "Traceback" not in log
        assert SANDBOX_ACCESS_TOKEN not in log
    box.close()


def test_a_restart_says_it_waits_for_a_killed_workers_leases(tmp_path: Path) -> None:
    from cdp_tiktok.delivery.runner import run_delivery
    from cdp_tiktok.settings import TikTokSettings

    box = SQLiteOutbox(tmp_path / "outbox.db")
    box.enqueue([_event(n) for n in range(5)])
    assert len(box.claim("killed-worker", 10, lease_seconds=2.0)) == 5  # then it died
    notices: list[str] = []
    with SandboxServer() as sandbox:
        settings = TikTokSettings(access_token=Secret(SANDBOX_ACCESS_TOKEN), endpoint=sandbox.url)
        report = run_delivery(box, settings, drain=True, on_wait=notices.append)
        accepted = sandbox.stats().accepted_events
    assert report.delivered == 5 and accepted == 5
    assert len(notices) == 1
    assert "5 event(s) leased by another worker" in notices[0] and "expire" in notices[0]
    box.close()


def test_default_leases_are_short_and_follow_the_request_timeout() -> None:
    from cdp_tiktok.delivery.worker import default_lease_seconds
    from cdp_tiktok.settings import TikTokSettings

    assert default_lease_seconds({"TikTok": TikTokSettings()}) == 25.0
    assert default_lease_seconds({"TikTok": TikTokSettings(timeout_seconds=2)}) == 15.0
    assert default_lease_seconds({"TikTok": TikTokSettings(timeout_seconds=30)}) == 65.0

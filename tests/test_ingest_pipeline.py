"""The intake pipeline thread on a real SQLite outbox: group commit, and one request
whose events cannot be stored does not keep the others of its group out."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.ingest.pipeline import Job, JobResult, Pipeline

KEY = BatchKey("TikTok", "web", "CPIXEL", None)


def to_event(message: dict[str, Any]) -> list[OutgoingEvent]:
    """A stand-in mapping: one event per message; ``properties.bad`` makes it unstorable."""
    data: dict[str, Any] = {"event": "Purchase", "event_id": message["messageId"]}
    if message.get("properties", {}).get("bad"):
        data["not_json"] = {1, 2}  # a set: the outbox refuses it
    return [OutgoingEvent(KEY, data)]


def track(index: int, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"u{index}",
            "messageId": f"m{index}", "properties": properties}  # fmt: skip


def test_a_group_with_an_unstorable_request_commits_the_others(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    pipeline = Pipeline(
        to_event, outbox, {"TikTok"}, ServiceMetrics(),
        max_message_bytes=32_000, max_waiting=10, max_queue_records=1000,
    )  # fmt: skip
    results: dict[str, JobResult] = {}
    done = threading.Event()

    def finished(name: str) -> Any:
        def record(result: JobResult) -> None:
            results[name] = result
            if len(results) == 3:
                done.set()

        return record

    # Queued before the thread starts, so the thread takes all three as one group.
    for name, items in (
        ("good-1", [track(1), track(2)]),
        ("poison", [track(3, bad=True)]),
        ("good-2", [track(4)]),
    ):
        pipeline.submit(Job(items, None, "web", 100, finished(name)))
    pipeline.start()
    try:
        assert done.wait(30)
    finally:
        pipeline.stop()
    assert results["good-1"].refusal is None and results["good-1"].accepted == 2
    assert results["good-2"].refusal is None
    poison = results["poison"].refusal
    assert poison is not None and poison.status == 500
    stored = sorted(r.event_id for r in outbox.claim("t", 10, 60))
    outbox.close()
    assert stored == ["m1", "m2", "m4"]

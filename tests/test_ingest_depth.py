"""The outbox depth the backlog check reads, counted beside the pipeline on a real SQLite
outbox: read at start, read again as the outbox changes, ``None`` when unreadable; and
the pipeline refuses with 503 while the reading says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.ingest.depth import OutboxDepth, undelivered_count
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.ingest.pipeline import Pipeline
from tests.helpers_service import answer_of

KEY = BatchKey("TikTok", "web", "CPIXEL", None)


def event(name: str) -> OutgoingEvent:
    return OutgoingEvent(KEY, {"event": "Purchase", "event_id": name})


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the depth was not read again in time"
        time.sleep(0.005)


def test_depth_is_read_at_start_and_follows_the_outbox(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    outbox.enqueue([event("a"), event("b")])
    probe = SQLiteOutbox(tmp_path / "outbox.db")
    depth = OutboxDepth(probe.undelivered, every=0.01)
    depth.start()
    try:
        assert depth.current() == 2  # read before start returned
        outbox.enqueue([event("c")])
        wait_for(lambda: depth.current() == 3)
        probe.close()  # a closed connection cannot be read: the store is unreadable
        wait_for(lambda: depth.current() is None)
    finally:
        depth.stop()
        outbox.close()


def test_pipeline_refuses_while_the_outbox_cannot_be_counted(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    probe = SQLiteOutbox(tmp_path / "outbox.db")
    probe.close()
    pipeline = Pipeline(
        lambda message: [event(message["messageId"])], outbox, {"TikTok"}, ServiceMetrics(),
        max_message_bytes=32_000, max_waiting=10, max_queue_records=1000, depth=probe.undelivered,
    )  # fmt: skip
    pipeline.start()
    try:
        item = {"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m"}
        result = answer_of(pipeline, [item], None)
    finally:
        pipeline.stop()
    refusal = result.refusal
    assert refusal is not None and (refusal.status, refusal.code) == (503, "store_unavailable")
    assert outbox.stats().pending == 0
    outbox.close()


def test_undelivered_count_falls_back_to_stats_without_a_cheap_count() -> None:
    outbox = MemoryOutbox()
    outbox.enqueue([event("a"), event("b"), event("c")])
    outbox.claim("w", 1, 60.0)
    (dead,) = outbox.claim("w", 1, 60.0)
    outbox.mark_dead([dead.id], None, "test")
    count = undelivered_count(outbox)
    assert not hasattr(outbox, "undelivered")
    assert count() == 2  # one pending, one leased; the dead letter is not counted

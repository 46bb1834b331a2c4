"""The delivery process enqueues what the parent hands it, in order, then delivers it.

Real parts: a forked child, real SQLite outbox files, the real loopback sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.outbox import Outbox, StoredEvent, encode_data, stored_event
from cdp_tiktok.delivery.process import DeliveryFailed, DeliveryProcess, prepare
from cdp_tiktok.delivery.runner import build_deliverer
from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, SANDBOX_PIXEL_CODE, Secret, TikTokSettings

KEY = BatchKey("TikTok", "web", SANDBOX_PIXEL_CODE, None)


def _event(n: int) -> OutgoingEvent:
    return OutgoingEvent(
        KEY,
        {
            "event": "Purchase",
            "event_time": 1_735_689_600 + n,
            "event_id": f"order-{n:05d}",
            "properties": {"value": n + 0.5, "currency": "EUR"},
        },
    )


def _describe(exc: BaseException) -> tuple[str, int]:
    return f"{type(exc).__name__}: {exc}", 3


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """An outbox file, created as the parent creates it before the child starts."""
    outbox = tmp_path / "outbox.db"
    SQLiteOutbox(outbox).close()
    return outbox


def _pending(path: Path) -> int:
    outbox = SQLiteOutbox(path)
    try:
        return outbox.stats().pending
    finally:
        outbox.close()


def _process(
    sandbox: SandboxServer, open_outbox: Any, skipped: list[int] | None = None
) -> DeliveryProcess:
    settings = TikTokSettings(
        access_token=Secret(SANDBOX_ACCESS_TOKEN),
        event_source_id=SANDBOX_PIXEL_CODE,
        endpoint=sandbox.url,
    )

    def build(outbox: Outbox, on_wait: Any) -> Any:
        return build_deliverer(outbox, settings, on_wait=on_wait)

    return DeliveryProcess(
        open_outbox,
        build,
        _describe,
        on_enqueued=None if skipped is None else skipped.append,
    ).start()


def test_chunks_are_enqueued_in_order_deduplicated_and_delivered(
    sandbox: SandboxServer, path: Path
) -> None:
    skipped: list[int] = []
    child = _process(sandbox, lambda: SQLiteOutbox(path), skipped)
    first = [prepare(_event(n)) for n in range(300)]
    child.enqueue(first, dedup_seconds=3600.0)
    child.enqueue(first[:100], dedup_seconds=3600.0)  # pending or sent already: skipped
    child.enqueue([prepare(_event(n)) for n in range(300, 350)], dedup_seconds=3600.0)
    report = child.finish()
    assert skipped == [0, 100, 0]
    assert report.delivered == 350 and report.dead == 0
    recorded = [e["data"]["event_id"] for e in sandbox.events()]
    assert sorted(recorded) == [f"order-{n:05d}" for n in range(350)]
    sent = {e["data"]["event_id"]: e["data"] for e in sandbox.events()}
    assert sent["order-00007"] == _event(7).data  # stored and sent as the parent encoded it


def test_a_chunk_that_cannot_be_enqueued_fails_the_run_and_later_chunks_are_dropped(
    sandbox: SandboxServer, path: Path, tmp_path: Path
) -> None:
    attempts: list[int] = []

    def open_outbox() -> SQLiteOutbox:
        if threading.current_thread().name != "cdp-tiktok-deliver-listen":
            return SQLiteOutbox(path)  # the delivery connection
        attempts.append(1)
        # The enqueueing connection fails to open at the first chunk (a directory is no
        # database); a child that went on with later chunks would open it and store them.
        return SQLiteOutbox(tmp_path if len(attempts) == 1 else path)

    child = _process(sandbox, open_outbox)
    child.enqueue([prepare(_event(0))])
    with pytest.raises(DeliveryFailed) as failed:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the error arrives at the next hand-over
            child.enqueue([prepare(_event(1))])
            time.sleep(0.05)
        child.finish()
    assert failed.value.exit_code == 3
    assert failed.value.message.startswith(f"StorageError: outbox {tmp_path}: unable to open")
    child.stop()
    assert _pending(path) == 0  # nothing half-applied, nothing of later chunks
    assert sandbox.events() == []


def test_a_child_that_dies_is_reported_at_the_next_hand_over(
    sandbox: SandboxServer, path: Path
) -> None:
    child = _process(sandbox, lambda: SQLiteOutbox(path))
    child.enqueue([prepare(_event(n)) for n in range(10)])
    pid = child._process.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(DeliveryFailed) as failed:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            child.enqueue([prepare(_event(n)) for n in range(10, 1010)])
        child.finish()
    assert "ended without a report" in failed.value.message
    assert f"exit status {-signal.SIGKILL}" in failed.value.message


def test_a_message_cut_short_stops_the_child_instead_of_hanging_it(
    sandbox: SandboxServer, path: Path
) -> None:
    child = _process(sandbox, lambda: SQLiteOutbox(path))
    child.enqueue([prepare(_event(n)) for n in range(5)])
    assert child._conn is not None
    child._conn.send_bytes(b"\x80\x05garbage")  # what a write cut in the middle leaves
    reports: list[Any] = []
    finishing = threading.Thread(target=lambda: reports.append(child.finish()), daemon=True)
    finishing.start()
    finishing.join(60)
    assert reports, "the child did not stop: it waits for a word it can no longer read"
    (report,) = reports
    assert report.dead == 0
    # what it stored before is delivered or still there, never lost
    assert report.delivered + _pending(path) == 5


def test_ctrl_c_is_held_while_a_chunk_is_written() -> None:
    from cdp_tiktok.delivery.process import _whole_message

    held = False
    with pytest.raises(KeyboardInterrupt):
        with _whole_message():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # delivered now, it would interrupt here
            held = True
        time.sleep(5)  # raised once the write is done: before this sleep ends
    assert held


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


event_ids = st.none() | st.integers() | st.sampled_from(["", "order-1", "order-2"])


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    event_ids,
    st.sampled_from([KEY, BatchKey("TikTok EU", "web", SANDBOX_PIXEL_CODE, "TEST1")]),
)
def test_an_outbox_stores_a_stored_event_as_the_event_it_was_made_from(
    data: dict[str, Any], event_id: Any, key: BatchKey
) -> None:
    if event_id is not None:
        data = {**data, "event": "Purchase", "event_id": event_id}
    event = OutgoingEvent(key, data)
    stored = stored_event(event)
    assert prepare(event) == (stored.key, stored.data_json, stored.event_id, stored.identity)
    assert stored.data_json == encode_data(data) and json.loads(stored.data_json) == data
    for made in (event, StoredEvent(*prepare(event))):  # the second as the child makes it
        outbox = MemoryOutbox()
        assert len(outbox.enqueue([made], dedup_seconds=3600.0)) == 1
        # idempotent enqueue compares the same identity: an event with an id is skipped
        again = outbox.enqueue([made], dedup_seconds=3600.0)
        assert len(again) == (0 if isinstance(event.event_id, str) and event.event_id else 1)
        record = outbox.claim("w", 10, 60.0, key=key)[0]
        assert (record.key, record.data_json, record.event_id) == (
            key,
            encode_data(data),
            event.event_id,
        )


def test_an_integer_beyond_64_bits_is_stored_exactly(path: Path) -> None:
    big = OutgoingEvent(KEY, {"event": "Purchase", "event_id": "big", "n": 2**70})
    outbox = SQLiteOutbox(path)
    try:
        outbox.enqueue([StoredEvent(*prepare(big))])
        (record,) = outbox.claim("w", 10, 60.0)
    finally:
        outbox.close()
    assert record.data["n"] == 2**70 and record.event_id == "big"

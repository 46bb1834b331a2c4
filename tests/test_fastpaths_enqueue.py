"""SQLite enqueue by multi-row VALUES statements stores exactly what one execution per
row stores (the reference below: the statement every row went through before).

Compared: every column of every ``outbox`` and ``outbox_data`` row and the
AUTOINCREMENT counter, after the same enqueues (idempotent or not, with repeats), and
the ids each enqueue returned.
"""

from __future__ import annotations

import sqlite3
import tempfile
from operator import itemgetter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.delivery.outbox import EncodedEvent, dedup_identity, event_fields
from cdp_tiktok.delivery.sqlite_outbox import (
    _INSERT,
    _ROWS_PER_INSERT,
    SQLiteOutbox,
    _chunks,
)
from cdp_tiktok.events import BatchKey, OutgoingEvent

KEYS = [BatchKey("TikTok", "web", "CPIXEL1", None), BatchKey("Other", "app", "CAPP2", "TEST1")]
AT = 1_700_000_000.5


def reference_enqueue(box: SQLiteOutbox, events: list[Any], dedup_seconds: float) -> list[int]:
    """One execution of the general statement per row (the enqueue before VALUES lists)."""
    rows = []
    for event in events:
        key = event.key
        data, event_id = event_fields(event)
        head = (key.destination, key.event_source, key.event_source_id, key.test_event_code)
        rows.append((*head, event_id, data, AT, False, dedup_identity(event)))
    with box._write() as conn:
        if dedup_seconds > 0:
            rows = box._new_rows(conn, rows, AT - dedup_seconds)
            if not rows:
                return []
        conn.executemany(_INSERT, rows)
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        ids = range(last - len(rows) + 1, last + 1)
        conn.executemany(
            "INSERT INTO outbox_data (id, data) VALUES (?, ?)",
            zip(ids, map(itemgetter(5), rows), strict=True),
        )
    return list(ids)


def contents(path: Path) -> tuple[list[Any], ...]:
    conn = sqlite3.connect(path)
    try:
        return tuple(
            conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("outbox", "outbox_data", "sqlite_sequence")
        )
    finally:
        conn.close()


def event(key: int, name: str, event_id: str | None, encoded: bool) -> Any:
    data: dict[str, Any] = {"event": name, "properties": {"value": 1.5, "note": "é"}}
    if event_id is not None:
        data["event_id"] = event_id
    if encoded:
        return EncodedEvent(KEYS[key], event_fields(OutgoingEvent(KEYS[key], data))[0])
    return OutgoingEvent(KEYS[key], data)


events = st.builds(
    event,
    st.integers(0, 1),
    st.sampled_from(["Purchase", "ViewContent"]),
    st.none() | st.sampled_from([f"e{i}" for i in range(40)]) | st.text(max_size=4),
    st.booleans(),
)
# Sizes around the statement's row count, so that every piece size occurs.
enqueues = st.lists(
    st.lists(events, max_size=3)
    | st.integers(0, 3 * _ROWS_PER_INSERT).flatmap(
        lambda n: st.lists(events, min_size=n, max_size=n)
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=40, deadline=None)
@given(enqueues, st.sampled_from([0.0, 3600.0]))
def test_values_lists_store_what_one_row_per_execution_stores(
    batches: list[list[Any]], dedup_seconds: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fast_box = SQLiteOutbox(Path(tmp) / "fast.db")
        slow_box = SQLiteOutbox(Path(tmp) / "slow.db")
        try:
            for batch in batches:
                plain = [e for e in batch if dedup_seconds > 0 or isinstance(e, OutgoingEvent)]
                fast = fast_box.enqueue(plain, now=AT, dedup_seconds=dedup_seconds)
                assert fast == reference_enqueue(slow_box, plain, dedup_seconds)
        finally:
            fast_box.close()
            slow_box.close()
        assert contents(Path(tmp) / "fast.db") == contents(Path(tmp) / "slow.db")


@given(st.integers(0, 5 * _ROWS_PER_INSERT))
def test_pieces_cover_the_rows_in_order_with_few_sizes(count: int) -> None:
    pieces = list(_chunks(count))
    covered = [i for start, size in pieces for i in range(start, start + size)]
    assert covered == list(range(count))
    sizes = {size for _, size in pieces}
    assert sizes <= {_ROWS_PER_INSERT >> shift for shift in range(_ROWS_PER_INSERT.bit_length())}

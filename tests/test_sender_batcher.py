"""Batch packing: caps are never exceeded, nothing is lost or reordered, linger works."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.delivery.batcher import Batcher, Item
from cdp_tiktok.delivery.outbox import OutboxRecord
from tests.helpers_delivery import FakeClock, key_for


def item(i: int, size: int) -> Item:
    record = OutboxRecord(i, key_for(), "{}", f"e{i}", 0, 0.0, ())
    return Item(record, b"x" * size)


@given(
    sizes=st.lists(st.integers(1, 3000), max_size=400),
    max_events=st.integers(1, 1000),
    max_bytes=st.integers(100, 20_000),
    overhead=st.integers(2, 200),
)
def test_batches_respect_both_caps_and_keep_every_item_in_order(
    sizes: list[int], max_events: int, max_bytes: int, overhead: int
) -> None:
    batcher = Batcher(max_events, max_bytes)
    items = [item(i, size) for i, size in enumerate(sizes)]
    too_large = batcher.add(key_for(), items, overhead)
    assert [i.record.id for i in too_large] == [
        i for i, size in enumerate(sizes) if overhead + size > max_bytes
    ]
    batches = batcher.take(flush=True)
    assert batcher.held == 0
    for batch in batches:
        assert 1 <= len(batch.items) <= max_events
        joined = overhead + sum(len(i.body) for i in batch.items) + len(batch.items) - 1
        assert batch.size == joined <= max_bytes
    sent = [i.record.id for batch in batches for i in batch.items]
    assert sent == [i for i, size in enumerate(sizes) if overhead + size <= max_bytes]


def test_a_partial_batch_lingers_unless_flushed() -> None:
    clock = FakeClock()
    batcher = Batcher(10, 100_000, linger_seconds=0.5, clock=clock)
    batcher.add(key_for(), [item(i, 50) for i in range(25)], 20)
    assert [len(b.items) for b in batcher.take()] == [10, 10]  # full ones go at once
    assert batcher.held == 5 and batcher.next_due() == clock.now + 0.5
    clock.sleep(0.2)
    batcher.add(key_for(), [item(i, 50) for i in range(25, 28)], 20)
    assert batcher.take() == []
    clock.sleep(0.3)
    [late] = batcher.take()
    assert len(late.items) == 8 and batcher.held == 0


def test_keys_never_share_a_batch_and_removal_returns_held_items() -> None:
    batcher = Batcher(1000, 1_000_000, linger_seconds=10.0)
    batcher.add(key_for("A"), [item(i, 10) for i in range(3)], 20)
    batcher.add(key_for("B"), [item(i, 10) for i in range(3, 5)], 20)
    removed = batcher.remove(lambda key: key.destination == "A")
    assert [i.record.id for i in removed] == [0, 1, 2]
    [batch] = batcher.take(flush=True)
    assert batch.key == key_for("B") and len(batch.items) == 2

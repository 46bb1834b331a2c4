"""Packing claimed records into request batches that respect TikTok's caps.

Each event is serialized once (:func:`cdp_tiktok.tiktok.payload.encode_event`); its byte
length is then the exact size it adds to a request body built by joining the serialized
events (plus one comma), so a batch's body size is known without encoding it.

A :class:`Batcher` keeps, per :class:`~cdp_tiktok.events.BatchKey`, closed batches ready
to send and one *open* batch still accepting events; an open batch goes out when it is
full, when the caller flushes (draining), or when it has lingered ``linger_seconds``
(streaming).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cdp_tiktok.delivery.outbox import OutboxRecord
from cdp_tiktok.events import BatchKey

TIKTOK_MAX_EVENTS = 1000
"""TikTok rejects a whole request with more than 1,000 events in ``data[]``."""


@dataclass(slots=True)
class Item:
    """A claimed record with its serialized event."""

    record: OutboxRecord
    body: bytes


@dataclass(slots=True)
class Batch:
    """Events of one key that travel in one request; ``size`` is the exact joined body size."""

    key: BatchKey
    items: list[Item]
    size: int
    opened_at: float = 0.0

    @property
    def ids(self) -> list[int]:
        """The outbox ids of the batch's records."""
        return [item.record.id for item in self.items]


@dataclass(slots=True)
class _Lane:
    overhead: int
    closed: list[Batch] = field(default_factory=list)
    open: Batch | None = None


class Batcher:
    """Groups items by key into batches of at most ``max_events`` and ``max_bytes``.

    Guarantees: every batch holds items of one key only, at most ``max_events`` (never
    above TikTok's 1,000) and a joined body (``overhead + sum(len) + commas``) of at most
    ``max_bytes``; items keep their order within a key; an item that cannot fit even alone
    is returned by :meth:`add` instead of being batched. Not thread-safe.
    """

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        *,
        linger_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= max_events <= TIKTOK_MAX_EVENTS:
            raise ValueError(f"max_events must be between 1 and {TIKTOK_MAX_EVENTS}")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_seconds = max(0.0, linger_seconds)
        self._clock = clock
        self._lanes: dict[BatchKey, _Lane] = {}
        self._held = 0

    @property
    def held(self) -> int:
        """How many items wait in batches not yet taken."""
        return self._held

    def add(self, key: BatchKey, items: Iterable[Item], overhead: int) -> list[Item]:
        """Batch ``items`` of ``key``; return the items too large to send even alone.

        ``overhead`` is the size of an empty request body for ``key`` (the envelope).
        """
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(overhead)
        too_large: list[Item] = []
        limit = self.max_bytes
        for item in items:
            length = len(item.body)
            if lane.overhead + length > limit:
                too_large.append(item)
                continue
            batch = lane.open
            if batch is not None and batch.size + length + 1 > limit:
                lane.closed.append(batch)
                batch = None
            if batch is None:
                batch = lane.open = Batch(key, [item], lane.overhead + length, self._clock())
            else:
                batch.items.append(item)
                batch.size += length + 1
            self._held += 1
            if len(batch.items) >= self.max_events:
                lane.closed.append(batch)
                lane.open = None
        return too_large

    def take(self, *, flush: bool = False) -> list[Batch]:
        """Remove and return the batches due: closed ones, and open ones when ``flush`` or
        when they have waited ``linger_seconds``."""
        now = self._clock()
        due: list[Batch] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            due.extend(lane.closed)
            lane.closed = []
            # The same sum as next_due(), so a sleep until that time always makes it due.
            if lane.open is not None and (
                flush or now >= lane.open.opened_at + self.linger_seconds
            ):
                due.append(lane.open)
                lane.open = None
            if lane.open is None:
                del self._lanes[key]
        self._held -= sum(len(batch.items) for batch in due)
        return due

    def next_due(self) -> float | None:
        """The clock time the oldest open batch stops lingering, if any batch is held."""
        times = [
            lane.open.opened_at + self.linger_seconds
            for lane in self._lanes.values()
            if lane.open is not None
        ]
        if any(lane.closed for lane in self._lanes.values()):
            return self._clock()
        return min(times) if times else None

    def remove(self, predicate: Callable[[BatchKey], bool]) -> list[Item]:
        """Remove and return every held item whose key matches ``predicate``."""
        removed: list[Item] = []
        for key in [k for k in self._lanes if predicate(k)]:
            lane = self._lanes.pop(key)
            for batch in [*lane.closed, *([lane.open] if lane.open else [])]:
                removed.extend(batch.items)
        self._held -= len(removed)
        return removed


def split_to_fit(items: list[Item], encoded_size: int, max_bytes: int) -> list[list[Item]]:
    """Halve ``items`` when an encoder made the body (``encoded_size``) exceed ``max_bytes``.

    Used only with custom encoders whose output may be larger than the joined estimate;
    returns ``[items]`` unchanged when it fits or cannot be split.
    """
    if encoded_size <= max_bytes or len(items) < 2:
        return [items]
    middle = len(items) // 2
    return [items[:middle], items[middle:]]

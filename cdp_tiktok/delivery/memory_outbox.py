"""An in-process outbox with exactly the SQLite outbox's semantics, for tests and dry runs.

Nothing survives the process. Events are stored as compact JSON, as in SQLite, so
callers get fresh copies and a non-JSON value fails at enqueue in both backends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdp_tiktok.delivery.outbox import (
    DELIVERED_KEYS_RETENTION,
    DeadLetter,
    DestinationStatus,
    EncodedEvent,
    Enqueueable,
    OutboxRecord,
    OutboxStats,
    StatusBuilder,
    dedup_identity,
    event_fields,
    without_known,
)
from cdp_tiktok.events import Attempt, BatchKey
from cdp_tiktok.hookspecs import hookimpl


@dataclass(slots=True)
class _Row:
    id: int
    key: BatchKey
    data: str
    event_id: str | None
    enqueued_at: float
    next_attempt_at: float  # retry time while pending, lease expiry while leased
    ready_at: float  # the retry time, kept during a lease for release()
    state: str = "pending"
    attempts: int = 0
    history: list[Attempt] = field(default_factory=list)
    lease_owner: str | None = None
    reason: str | None = None
    dead_at: float | None = None
    dedup: str | None = None

    def record(self) -> OutboxRecord:
        return OutboxRecord(
            id=self.id,
            key=self.key,
            data_json=self.data,
            event_id=self.event_id,
            attempts=self.attempts,
            enqueued_at=self.enqueued_at,
            history=tuple(self.history),
        )

    def dead_letter(self) -> DeadLetter:
        assert self.reason is not None and self.dead_at is not None
        return DeadLetter(
            id=self.id,
            key=self.key,
            data_json=self.data,
            event_id=self.event_id,
            reason=self.reason,
            history=tuple(self.history),
            enqueued_at=self.enqueued_at,
            dead_at=self.dead_at,
        )


class MemoryOutbox:
    """An :class:`~cdp_tiktok.delivery.outbox.Outbox` held in a dict; thread-safe."""

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}  # insertion order is id order
        self._next_id = 1
        self._delivered = 0
        self._lock = threading.Lock()
        self._delivered_keys: dict[str, float] = {}  # dedup identity -> delivered at
        self._stops: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"MemoryOutbox({len(self._rows)} records)"

    def _settleable(self, ids: Sequence[int], worker: str | None) -> list[_Row]:
        rows = (self._rows.get(i) for i in dict.fromkeys(ids))
        if worker is None:
            return [r for r in rows if r is not None and r.state != "dead"]
        return [
            r for r in rows if r is not None and r.state == "leased" and r.lease_owner == worker
        ]

    def enqueue(
        self,
        events: Sequence[Enqueueable],
        *,
        now: float | None = None,
        dedup_seconds: float = 0.0,
    ) -> list[int]:
        """Store ``events`` as pending records, all or none; return their ids (idempotent
        with ``dedup_seconds``; see the protocol)."""
        at = time.time() if now is None else float(now)
        encoded = [(e.key, *event_fields(e)) for e in events]
        identities = [
            dedup_identity(e) if dedup_seconds > 0 or not isinstance(e, EncodedEvent) else None
            for e in events
        ]
        with self._lock:
            ids = []
            rows = list(zip(encoded, identities, strict=True))
            if dedup_seconds > 0:
                since = at - dedup_seconds
                known = {r.dedup for r in self._rows.values() if r.dedup and r.state != "dead"}
                known.update(k for k, when in self._delivered_keys.items() if when >= since)
                rows = without_known(rows, identities, known)
            for (key, data, event_id), identity in rows:
                row = _Row(self._next_id, key, data, event_id, at, at, at, dedup=identity)
                self._rows[row.id] = row
                ids.append(row.id)
                self._next_id += 1
        return ids

    def claim(
        self,
        worker: str,
        limit: int,
        lease_seconds: float,
        *,
        key: BatchKey | None = None,
        now: float | None = None,
    ) -> list[OutboxRecord]:
        """Lease up to ``limit`` ready records to ``worker`` (longest ready first), by id."""
        at = time.time() if now is None else now
        with self._lock:
            ready = [
                r
                for r in self._rows.values()
                if r.state != "dead" and r.next_attempt_at <= at and key in (None, r.key)
            ]
            ready.sort(key=lambda r: (r.next_attempt_at, r.id))
            chosen = sorted(ready[: max(limit, 0)], key=lambda r: r.id)
            for row in chosen:
                if row.state == "pending":
                    row.ready_at = row.next_attempt_at
                row.state, row.lease_owner = "leased", worker
                row.next_attempt_at = at + lease_seconds
            claimed = [row.record() for row in chosen]
        return claimed

    def ready_keys(self, *, now: float | None = None) -> list[BatchKey]:
        """The distinct batch keys with claimable records, in a stable order."""
        at = time.time() if now is None else now
        with self._lock:
            keys = {
                r.key for r in self._rows.values() if r.state != "dead" and r.next_attempt_at <= at
            }
        return sorted(
            keys,
            key=lambda k: (
                k.destination,
                k.event_source,
                k.event_source_id,
                k.test_event_code is not None,
                k.test_event_code or "",
            ),
        )

    def next_ready_at(self) -> float | None:
        """The earliest retry time or lease expiry; ``None`` when nothing is live."""
        with self._lock:
            times = [r.next_attempt_at for r in self._rows.values() if r.state != "dead"]
        return min(times) if times else None

    def mark_delivered(
        self, ids: Sequence[int], attempt: Attempt, *, worker: str | None = None
    ) -> int:
        """Delete the records as delivered and count them; return how many."""
        with self._lock:
            rows = self._settleable(ids, worker)
            for row in rows:
                del self._rows[row.id]
                if row.dedup is not None:
                    self._delivered_keys[row.dedup] = attempt.at
            self._delivered += len(rows)
            since = attempt.at - DELIVERED_KEYS_RETENTION
            for identity in [k for k, at in self._delivered_keys.items() if at < since]:
                del self._delivered_keys[identity]
        return len(rows)

    def mark_retry(
        self,
        ids: Sequence[int],
        attempt: Attempt,
        not_before: float,
        *,
        worker: str | None = None,
    ) -> int:
        """Make the records pending again from ``not_before``, recording ``attempt``."""
        with self._lock:
            rows = self._settleable(ids, worker)
            for row in rows:
                row.state, row.lease_owner = "pending", None
                row.attempts += 1
                row.history.append(attempt)
                row.next_attempt_at = row.ready_at = not_before
        return len(rows)

    def mark_dead(
        self,
        ids: Sequence[int],
        attempt: Attempt | None,
        reason: str,
        *,
        worker: str | None = None,
    ) -> int:
        """Move the records to the dead letters with ``reason`` (and ``attempt``)."""
        dead_at = float(attempt.at) if attempt is not None else time.time()
        with self._lock:
            rows = self._settleable(ids, worker)
            for row in rows:
                row.state, row.lease_owner = "dead", None
                row.reason, row.dead_at = reason, dead_at
                if attempt is not None:
                    row.attempts += 1
                    row.history.append(attempt)
        return len(rows)

    def release(self, ids: Sequence[int], *, worker: str | None = None) -> int:
        """Give leases back without counting an attempt; the records are ready again."""
        with self._lock:
            rows = [
                r
                for r in (self._rows.get(i) for i in dict.fromkeys(ids))
                if r is not None and r.state == "leased" and worker in (None, r.lease_owner)
            ]
            for row in rows:
                row.state, row.lease_owner = "pending", None
                row.next_attempt_at = row.ready_at
        return len(rows)

    def stats(self, *, now: float | None = None) -> OutboxStats:
        """Counts by state at ``now``; see :class:`~cdp_tiktok.delivery.outbox.OutboxStats`."""
        at = time.time() if now is None else now
        counts = dict.fromkeys(("pending", "leased", "dead", "held"), 0)
        with self._lock:
            for row in self._rows.values():
                later = row.next_attempt_at > at
                if row.state == "dead":
                    counts["dead"] += 1
                elif row.state == "leased" and later:
                    counts["leased"] += 1
                else:
                    counts["pending"] += 1
                    counts["held"] += row.state == "pending" and later
            return OutboxStats(delivered=self._delivered, **counts)

    def status(self, *, now: float | None = None) -> list[DestinationStatus]:
        """Per destination: counts by state, oldest age, stop reason; see the protocol."""
        at = time.time() if now is None else now
        with self._lock:
            builder = StatusBuilder(dict(self._stops))
            for row in self._rows.values():
                builder.add(
                    row.key.destination,
                    dead=row.state == "dead",
                    leased=row.state == "leased",
                    later=row.next_attempt_at > at,
                    count=1,
                    oldest=row.enqueued_at,
                )
        return builder.result()

    def stop_destination(
        self, destination: str, reason: str | None, *, now: float | None = None
    ) -> None:
        """Record (or with ``None`` clear) why ``destination`` is stopped."""
        with self._lock:
            if reason is None:
                self._stops.pop(destination, None)
            else:
                self._stops[destination] = (reason, time.time() if now is None else now)

    def _waiting(self, destination: str, at: float) -> list[_Row]:
        return [
            r
            for r in self._rows.values()
            if r.key.destination == destination
            and r.state != "dead"
            and not (r.state == "leased" and r.next_attempt_at > at)
        ]

    def release_destination(self, destination: str, *, now: float | None = None) -> int:
        """Clear the stop and make the destination's waiting records ready at ``now``."""
        at = time.time() if now is None else now
        with self._lock:
            self._stops.pop(destination, None)
            rows = self._waiting(destination, at)
            for row in rows:
                row.state, row.lease_owner = "pending", None
                row.next_attempt_at = row.ready_at = at
        return len(rows)

    def purge_destination(self, destination: str, *, now: float | None = None) -> int:
        """Delete the destination's pending and waiting records; clear its stop."""
        at = time.time() if now is None else now
        with self._lock:
            self._stops.pop(destination, None)
            rows = self._waiting(destination, at)
            for row in rows:
                del self._rows[row.id]
        return len(rows)

    def dead_letters(self, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, oldest death first, at most ``limit``."""
        with self._lock:
            dead = [r.dead_letter() for r in self._rows.values() if r.state == "dead"]
        dead.sort(key=lambda d: (d.dead_at, d.id))
        return iter(dead if limit is None else dead[: max(limit, 0)])

    def get_dead_letter(self, id: int) -> DeadLetter | None:
        """One dead letter by id, or ``None``."""
        with self._lock:
            row = self._rows.get(id)
            return row.dead_letter() if row is not None and row.state == "dead" else None

    def _dead(self, ids: Sequence[int] | None) -> list[_Row]:
        if ids is None:
            return [r for r in self._rows.values() if r.state == "dead"]
        rows = (self._rows.get(i) for i in dict.fromkeys(ids))
        return [r for r in rows if r is not None and r.state == "dead"]

    def replay(self, ids: Sequence[int] | None = None, *, now: float | None = None) -> int:
        """Move dead letters back to pending, ready at ``now``, attempts reset."""
        at = time.time() if now is None else now
        with self._lock:
            rows = self._dead(ids)
            for row in rows:
                row.state, row.attempts = "pending", 0
                row.reason = row.dead_at = None
                row.next_attempt_at = row.ready_at = at
        return len(rows)

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good; return how many."""
        with self._lock:
            rows = self._dead(ids)
            for row in rows:
                del self._rows[row.id]
        return len(rows)

    def close(self) -> None:
        """Nothing to release; the records stay readable until the object is dropped."""


def open_memory_outbox(url: str) -> MemoryOutbox:
    """A new, empty in-process outbox for ``memory://``."""
    if url != "memory://":
        raise ValueError(f"unsupported outbox url {url!r}; the memory outbox is memory://")
    return MemoryOutbox()


@hookimpl
def cdp_register_outbox_backends(register: Any) -> None:
    """The built-in ``memory://`` outbox."""
    register("memory", open_memory_outbox)

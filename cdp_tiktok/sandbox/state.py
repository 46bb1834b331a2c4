"""What the sandbox remembers: counters, accepted events, seen de-duplication keys."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class SandboxStats:
    """Counters since start (or the last reset).

    ``requests`` counts every POST to the track endpoint; each one is also counted in
    exactly one of ``accepted_requests``, ``rejected_requests`` (token, JSON or
    validation refusals, answered with a non-zero code), ``throttled``, ``errors``
    (HTTP 503) or ``dropped`` (connection closed without an answer).
    ``accepted_events`` includes ``duplicates``: events whose (event_source_id, event,
    event_id) was already accepted.
    """

    requests: int = 0
    accepted_requests: int = 0
    accepted_events: int = 0
    duplicates: int = 0
    rejected_requests: int = 0
    throttled: int = 0
    errors: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return asdict(self)


class EventStore:
    """Thread-safe record of accepted events, in memory (bounded) and in a JSONL file.

    Each record is ``{"seq", "received_at", "request_id", "event_source",
    "event_source_id", "test_event_code", "duplicate", "data"}``; ``seq`` numbers every
    accepted event from 0 and never restarts before :meth:`reset`.
    """

    def __init__(self, record_path: Path | None = None, memory_limit: int = 1_000_000) -> None:
        self.lock = threading.Lock()
        self._memory_limit = memory_limit
        self._events: deque[dict[str, Any]] = deque(maxlen=memory_limit or None)
        self._next_seq = 0
        self._seen: set[tuple[str, str, str]] = set()
        self._counts: dict[str, int] = dict.fromkeys(SandboxStats().as_dict(), 0)
        self._file: IO[str] | None = None
        if record_path is not None:
            self._file = Path(record_path).open("a", encoding="utf-8")  # noqa: SIM115

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to one counter (caller holds no lock)."""
        with self.lock:
            self._counts[name] += amount

    def accept(self, envelope: Mapping[str, Any], data: Sequence[Any], request_id: str) -> int:
        """Record one accepted request's events; returns how many were duplicates."""
        source_id = envelope["event_source_id"]
        now = time.time()
        lines: list[str] = []
        duplicates = 0
        with self.lock:
            for item in data:
                event_id = item.get("event_id")
                duplicate = False
                if event_id is not None:
                    key = (source_id, item["event"], event_id)
                    duplicate = key in self._seen
                    self._seen.add(key)
                duplicates += duplicate
                record = {
                    "seq": self._next_seq,
                    "received_at": now,
                    "request_id": request_id,
                    "event_source": envelope["event_source"],
                    "event_source_id": source_id,
                    "test_event_code": envelope.get("test_event_code"),
                    "duplicate": duplicate,
                    "data": item,
                }
                self._next_seq += 1
                if self._memory_limit:
                    self._events.append(record)
                if self._file is not None:
                    lines.append(_dumps(record))
            self._counts["accepted_requests"] += 1
            self._counts["accepted_events"] += len(data)
            self._counts["duplicates"] += duplicates
            if self._file is not None and lines:
                self._file.write("\n".join(lines) + "\n")
                self._file.flush()
        return duplicates

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Records with ``seq >= since`` still held in memory, oldest first."""
        with self.lock:
            if not self._events:
                return []
            first = self._events[0]["seq"]
            start = max(0, since - first)
            return [self._events[i] for i in range(start, len(self._events))]

    def stats(self) -> SandboxStats:
        """A snapshot of the counters."""
        with self.lock:
            return SandboxStats(**self._counts)

    def reset(self) -> None:
        """Forget events, de-duplication keys and counters (the record file is kept)."""
        with self.lock:
            self._events.clear()
            self._next_seq = 0
            self._seen.clear()
            self._counts = dict.fromkeys(self._counts, 0)

    def close(self) -> None:
        """Close the record file."""
        with self.lock:
            if self._file is not None:
                self._file.close()
                self._file = None

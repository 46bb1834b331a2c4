"""What the sandbox remembers: counters, accepted events, seen de-duplication keys.

Accepted events are kept in memory as the request bodies they arrived in (bytes), not
as decoded objects: a body is a few hundred bytes per event where the decoded dicts take
several kilobytes, and a large live heap of small objects would make every garbage
collection, and so every request, slower. :meth:`EventStore.events` decodes on demand.

The de-duplication keys of every accepted event are kept in :class:`SeenKeys`, a private
temporary SQLite database (16-byte digests; SQLite's page cache bounds the memory it
takes and spills the rest to a temporary file), so memory does not grow with the events
a long run sends.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

DEFAULT_MEMORY_LIMIT = 100_000
"""Events the sandbox keeps in memory for ``/sandbox/events`` unless told otherwise."""
_LOOKUP_CHUNK = 500
"""Keys per ``IN (...)`` query (well under SQLite's variable limit)."""


def _digest(source_id: str, event: str, event_id: str) -> bytes:
    key = "\x00".join((source_id, event, event_id)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=16).digest()


class SeenKeys:
    """The set of (event_source_id, event, event_id) keys accepted so far, on disk.

    Not thread-safe: the caller serialises calls (``EventStore`` holds its lock).
    """

    def __init__(self) -> None:
        # "" is a private temporary database, deleted when the connection closes.
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (key BLOB PRIMARY KEY) WITHOUT ROWID")

    def add_new(self, keys: Sequence[tuple[str, str, str] | None]) -> list[int]:
        """Add ``keys`` in order (``None``: an event without an id, never a duplicate);
        return the positions of the keys already seen, earlier in ``keys`` included."""
        digests = [None if key is None else _digest(*key) for key in keys]
        wanted = list({d for d in digests if d is not None})
        known: set[bytes] = set()
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM seen WHERE key IN ({marks})", chunk)
            known.update(row[0] for row in rows)
        duplicates: list[int] = []
        fresh: list[tuple[bytes]] = []
        for position, digest in enumerate(digests):
            if digest is None:
                continue
            if digest in known:
                duplicates.append(position)
            else:
                known.add(digest)
                fresh.append((digest,))
        if fresh:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO seen (key) VALUES (?)", fresh)
            self._db.execute("COMMIT")
        return duplicates

    def clear(self) -> None:
        """Forget every key."""
        self._db.execute("DELETE FROM seen")


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


@dataclass(frozen=True, slots=True)
class _Accepted:
    """One accepted request as kept in memory: its events are ``seq`` ``first`` onwards."""

    first: int
    count: int
    received_at: float
    request_id: str
    event_source: str
    event_source_id: str
    test_event_code: str | None
    body: bytes  # the request body as received; it passed validation
    duplicates: frozenset[int]  # positions in data[] that were duplicates

    def records(self, start: int) -> list[dict[str, Any]]:
        """The records of this request's events with ``seq >= start``."""
        data = json.loads(self.body)["data"]
        return [
            {
                "seq": self.first + position,
                "received_at": self.received_at,
                "request_id": self.request_id,
                "event_source": self.event_source,
                "event_source_id": self.event_source_id,
                "test_event_code": self.test_event_code,
                "duplicate": position in self.duplicates,
                "data": data[position],
            }
            for position in range(max(0, start - self.first), self.count)
        ]


class EventStore:
    """Thread-safe record of accepted events, in memory (bounded) and in a JSONL file.

    Each record is ``{"seq", "received_at", "request_id", "event_source",
    "event_source_id", "test_event_code", "duplicate", "data"}``; ``seq`` numbers every
    accepted event from 0 and never restarts before :meth:`reset`. Memory holds the
    newest ``memory_limit`` events at most (0: none); counters and de-duplication keys
    cover every event whatever the limit.
    """

    def __init__(
        self, record_path: Path | None = None, memory_limit: int = DEFAULT_MEMORY_LIMIT
    ) -> None:
        if memory_limit < 0:
            raise ValueError("memory_limit must not be negative")
        self.lock = threading.Lock()
        self._memory_limit = memory_limit
        self._requests: deque[_Accepted] = deque()
        self._kept_from = 0  # the lowest seq still held in memory
        self._next_seq = 0
        self._seen = SeenKeys()
        self._counts: dict[str, int] = dict.fromkeys(SandboxStats().as_dict(), 0)
        self._file: IO[str] | None = None
        if record_path is not None:
            self._file = Path(record_path).open("a", encoding="utf-8")  # noqa: SIM115

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to one counter (caller holds no lock)."""
        with self.lock:
            self._counts[name] += amount

    def accept(
        self,
        envelope: Mapping[str, Any],
        data: Sequence[Mapping[str, Any]],
        request_id: str,
        body: bytes,
    ) -> int:
        """Record one accepted request (``body`` parsed as ``envelope``, its ``data``
        list); return how many of its events were duplicates."""
        source_id: str = envelope["event_source_id"]
        now = time.time()
        keys = [
            None if item.get("event_id") is None else (source_id, item["event"], item["event_id"])
            for item in data
        ]
        with self.lock:
            duplicates = self._seen.add_new(keys)
            accepted = _Accepted(
                first=self._next_seq,
                count=len(data),
                received_at=now,
                request_id=request_id,
                event_source=envelope["event_source"],
                event_source_id=source_id,
                test_event_code=envelope.get("test_event_code"),
                body=body,
                duplicates=frozenset(duplicates),
            )
            self._next_seq += len(data)
            self._keep(accepted)
            self._counts["accepted_requests"] += 1
            self._counts["accepted_events"] += len(data)
            self._counts["duplicates"] += len(duplicates)
            if self._file is not None:
                self._write(accepted, data)
        return len(duplicates)

    def _keep(self, accepted: _Accepted) -> None:
        if not self._memory_limit:
            self._kept_from = self._next_seq
            return
        self._requests.append(accepted)
        self._kept_from = max(self._kept_from, self._next_seq - self._memory_limit)
        requests = self._requests
        while requests and requests[0].first + requests[0].count <= self._kept_from:
            requests.popleft()

    def _write(self, accepted: _Accepted, data: Sequence[Mapping[str, Any]]) -> None:
        assert self._file is not None
        head = {
            "received_at": accepted.received_at,
            "request_id": accepted.request_id,
            "event_source": accepted.event_source,
            "event_source_id": accepted.event_source_id,
            "test_event_code": accepted.test_event_code,
        }
        lines = [
            _dumps(
                {
                    "seq": accepted.first + position,
                    **head,
                    "duplicate": position in accepted.duplicates,
                    "data": item,
                }
            )
            for position, item in enumerate(data)
        ]
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Records with ``seq >= since`` still held in memory, oldest first."""
        start = max(since, 0)
        with self.lock:
            start = max(start, self._kept_from)
            wanted = [r for r in self._requests if r.first + r.count > start]
        return [record for accepted in wanted for record in accepted.records(start)]

    def stats(self) -> SandboxStats:
        """A snapshot of the counters."""
        with self.lock:
            return SandboxStats(**self._counts)

    def reset(self) -> None:
        """Forget events, de-duplication keys and counters (the record file is kept)."""
        with self.lock:
            self._requests.clear()
            self._kept_from = 0
            self._next_seq = 0
            self._seen.clear()
            self._counts = dict.fromkeys(self._counts, 0)

    def close(self) -> None:
        """Close the record file (counters and de-duplication keys stay, for a restart)."""
        with self.lock:
            if self._file is not None:
                self._file.close()
                self._file = None

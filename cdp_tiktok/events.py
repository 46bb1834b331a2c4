"""Value types that cross stage boundaries: outgoing events, batch keys, delivery verdicts.

These are the only shapes the map, enqueue, deliver and settle stages exchange, so each
stage can be tested alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BatchKey:
    """What events must share to travel in one TikTok request.

    TikTok applies ``event_source``, ``event_source_id`` and ``test_event_code`` to every
    event of a request; ``destination`` keeps two configured destinations (two tokens)
    apart even when they target the same pixel.
    """

    destination: str
    event_source: str
    event_source_id: str
    test_event_code: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One TikTok ``data[]`` item, ready to send, with where it must go.

    ``data`` is JSON-ready and already typed; every match key in ``data["user"]`` is
    already normalized and hashed. ``rule`` names the mapping rule that produced it.
    """

    key: BatchKey
    data: dict[str, Any]
    rule: str | None = None

    @property
    def event_id(self) -> str | None:
        """The event's de-duplication id, if it has one."""
        value = self.data.get("event_id")
        return value if isinstance(value, str) else None


class Outcome(enum.Enum):
    """How one response settles the events of the request that caused it."""

    DELIVERED = "delivered"  # TikTok accepted the whole batch
    RETRY = "retry"  # transient: send again later with backoff
    THROTTLED = "throttled"  # rate limited: retry later and slow down
    SPLIT = "split"  # payload error: bisect the batch; a single event is dead-lettered
    DEAD = "dead"  # permanent for these events: dead-letter them
    STOP = "stop"  # configuration error (auth, permission): stop this destination, keep events


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one delivery attempt."""

    outcome: Outcome
    reason: str
    code: int | None = None
    http_status: int | None = None
    message: str = ""
    request_id: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt as remembered by the outbox and shown in dead letters."""

    at: float
    outcome: str
    code: int | None = None
    http_status: int | None = None
    message: str = ""
    request_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "at": self.at,
            "outcome": self.outcome,
            "code": self.code,
            "http_status": self.http_status,
            "message": self.message,
            "request_id": self.request_id,
        }


@dataclass(slots=True)
class MapResult:
    """What mapping one message produced, and why."""

    events: list[OutgoingEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    explain: list[str] = field(default_factory=list)
    dropped_keys: dict[str, int] = field(default_factory=dict)
    phone_regions: dict[str, int] = field(default_factory=dict)
    """Phone numbers without country code read with a region, by the region's source."""

"""The outbox contract: durable storage of outgoing events until they are settled.

An event enters the outbox as a *pending* record. A worker *claims* ready records, which
leases them to it for a while; it then settles each one as *delivered*, as *retry* at a
later time (pending again), or as a *dead letter* with a reason, or *releases* it
untouched. A lease that is not settled expires, and the record becomes claimable again:
delivery is at least once. Every attempt is kept with its record and its dead letter.

Backends: :class:`~cdp_tiktok.delivery.sqlite_outbox.SQLiteOutbox` (the default; one file
shared safely by several worker processes) and
:class:`~cdp_tiktok.delivery.memory_outbox.MemoryOutbox` (same semantics, for tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cdp_tiktok.events import Attempt, BatchKey, OutgoingEvent

ACCEPTED_URLS = "sqlite:///relative/path.db, sqlite:////absolute/path.db, memory://"


_decode = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A claimed record: one event plus what the outbox knows about its delivery.

    ``data_json`` is the event exactly as stored: compact UTF-8 JSON text, the same text
    :func:`~cdp_tiktok.tiktok.payload.encode_event` gives, so a worker joins it into a
    request body without decoding or re-encoding. ``data`` decodes it on each access
    and returns a fresh dict (read it once; changing it changes nothing stored).
    """

    id: int
    key: BatchKey
    data_json: str  # the data[] item (hashed, typed), compact JSON
    event_id: str | None
    attempts: int  # attempts so far
    enqueued_at: float
    history: tuple[Attempt, ...]  # every attempt so far, oldest first

    @property
    def data(self) -> dict[str, Any]:
        """The ``data[]`` item, decoded from ``data_json`` (a new dict on each access)."""
        value: dict[str, Any] = _decode(self.data_json)
        return value


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that will not be sent again unless replayed, with why and every attempt.

    ``data_json`` and ``data`` are as in :class:`OutboxRecord`.
    """

    id: int
    key: BatchKey
    data_json: str
    event_id: str | None
    reason: str
    history: tuple[Attempt, ...]
    enqueued_at: float
    dead_at: float

    @property
    def data(self) -> dict[str, Any]:
        """The ``data[]`` item, decoded from ``data_json`` (a new dict on each access)."""
        value: dict[str, Any] = _decode(self.data_json)
        return value


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An outgoing event whose ``data[]`` item is already JSON text.

    For events that were mapped and serialized earlier (for example a JSON Lines file of
    mapped events): :meth:`Outbox.enqueue` stores ``data_json`` as given, without
    decoding and re-encoding it. The backend checks that it is exactly one JSON object
    (anything else fails the whole enqueue with ``ValueError``) and reads its
    ``event_id`` (a string, or none) itself. Like an ``OutgoingEvent``'s ``data``, the
    object must already be typed and hashed: it is sent as it is.
    """

    key: BatchKey
    data_json: str


def event_fields(event: OutgoingEvent | EncodedEvent) -> tuple[str, str | None]:
    """The stored text and ``event_id`` of ``event``, checked (the memory outbox's way).

    Raises ``ValueError`` when an encoded event is not one JSON object (NaN and
    Infinity included) and as :func:`encode_data` does for a dict.
    """
    if isinstance(event, EncodedEvent):
        try:
            value = json.loads(event.data_json, parse_constant=_no_constant)
        except ValueError:
            raise ValueError("an encoded event is not valid JSON") from None
        if type(value) is not dict:
            raise ValueError("an encoded event is not a JSON object")
        event_id = value.get("event_id")
        return event.data_json, event_id if isinstance(event_id, str) else None
    return encode_data(event.data), event.event_id


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode_data(data: Mapping[str, Any]) -> str:
    """The stored form of an event's ``data[]`` item: compact JSON, non-ASCII kept.

    Exactly the text :func:`~cdp_tiktok.tiktok.payload.encode_event` embeds in a request.
    Raises ``ValueError`` for NaN or infinite numbers and ``TypeError`` for values JSON
    cannot hold, so a bad event fails at enqueue, never later at send time.
    """
    return _encode(data)


_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
).encode


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Record counts by state, at one moment.

    Every record that is not delivered is in exactly one of ``pending``, ``leased`` and
    ``dead``. ``pending`` counts records no live lease holds (including records whose
    lease expired unsettled); ``held`` is the part of ``pending`` still waiting for its
    retry time (not claimable yet); ``leased`` counts records under a live lease;
    ``dead`` counts dead letters. ``delivered`` is the total ever delivered, kept even
    though delivered records are deleted.
    """

    pending: int
    leased: int
    delivered: int
    dead: int
    held: int


@runtime_checkable
class Outbox(Protocol):
    """Durable storage of outgoing events; see the module docstring for the model.

    Settling (``mark_*``, ``release``) with ``worker`` changes only records still leased
    by that worker: once its lease expired *and* another worker claimed the record, its
    late settle changes nothing (the count returned says so). Without ``worker`` any
    record not yet delivered or dead is settled. Ids that match nothing are ignored.
    ``now`` arguments default to the current time; tests pass a fake clock.
    """

    def enqueue(
        self, events: Sequence[OutgoingEvent | EncodedEvent], *, now: float | None = None
    ) -> list[int]:
        """Store ``events`` as pending records in one transaction; return their ids.

        Durable on return: an acknowledged enqueue survives a crash of the process (and,
        for SQLite, power loss: WAL with ``synchronous=FULL``). All or nothing: an event
        that is not JSON (a NaN, an object JSON cannot hold, an encoded event that is not
        one JSON object) raises and nothing is stored.
        """
        ...

    def claim(
        self,
        worker: str,
        limit: int,
        lease_seconds: float,
        *,
        key: BatchKey | None = None,
        now: float | None = None,
    ) -> list[OutboxRecord]:
        """Lease up to ``limit`` ready records to ``worker`` for ``lease_seconds``.

        Ready means pending with ``next_attempt_at <= now`` or leased with an expired
        lease. The records ready the longest are chosen (earliest ready time, then
        enqueue order: new events go oldest first) and returned in id (enqueue) order.
        With ``key``, only records of that batch key. Atomic: two workers (or two
        processes) never hold a live lease on the same record.
        """
        ...

    def ready_keys(self, *, now: float | None = None) -> list[BatchKey]:
        """The distinct batch keys that have at least one claimable record."""
        ...

    def next_ready_at(self) -> float | None:
        """The earliest time a record becomes claimable (a retry time or a lease expiry).

        ``None`` when nothing is pending or leased; a worker can sleep until then.
        """
        ...

    def mark_delivered(
        self, ids: Sequence[int], attempt: Attempt, *, worker: str | None = None
    ) -> int:
        """Settle leased records as delivered; return how many were settled.

        With ``worker``, only records still leased by that worker are settled.
        """
        ...

    def mark_retry(
        self,
        ids: Sequence[int],
        attempt: Attempt,
        not_before: float,
        *,
        worker: str | None = None,
    ) -> int:
        """Make leased records pending again, claimable from ``not_before``.

        ``attempts`` grows by one, ``attempt`` is appended to the history and the lease is
        released. With ``worker``, only records still leased by that worker change.
        """
        ...

    def mark_dead(
        self,
        ids: Sequence[int],
        attempt: Attempt | None,
        reason: str,
        *,
        worker: str | None = None,
    ) -> int:
        """Move records to the dead letters with ``reason`` (and ``attempt``, if any).

        With ``worker``, only records still leased by that worker move.
        """
        ...

    def release(self, ids: Sequence[int], *, worker: str | None = None) -> int:
        """Give leases back without counting an attempt; the records are ready at once."""
        ...

    def stats(self, *, now: float | None = None) -> OutboxStats:
        """Counts by state at ``now`` (default: the current time); see :class:`OutboxStats`."""
        ...

    def dead_letters(self, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, oldest death first, at most ``limit``."""
        ...

    def get_dead_letter(self, id: int) -> DeadLetter | None:
        """One dead letter by id, or ``None``."""
        ...

    def replay(self, ids: Sequence[int] | None = None, *, now: float | None = None) -> int:
        """Move dead letters (``None``: all) back to pending, ready at ``now``.

        Attempts are reset to 0; the history is kept. Returns how many moved.
        """
        ...

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters (``None``: all) for good; return how many."""
        ...

    def close(self) -> None:
        """Release the backend's resources; leases held stay until they expire."""
        ...


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` outbox url (relative to the working directory unless
    absolute), or ``None`` for any other url."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def open_outbox(url: str) -> Outbox:
    """Open the outbox at ``url``, creating an SQLite file (and its directory) if needed.

    Accepted forms: ``sqlite:///relative/path.db`` (relative to the working directory),
    ``sqlite:////absolute/path.db``, and ``memory://`` (a new, empty, in-process outbox).
    Anything else raises :class:`ValueError` naming the url and the accepted forms.
    """
    path = sqlite_path(url)
    if path is not None:
        from cdp_tiktok.delivery.sqlite_outbox import SQLiteOutbox

        return SQLiteOutbox(path)
    if url == "memory://":
        from cdp_tiktok.delivery.memory_outbox import MemoryOutbox

        return MemoryOutbox()
    raise ValueError(f"unsupported outbox url {url!r}; accepted forms: {ACCEPTED_URLS}")

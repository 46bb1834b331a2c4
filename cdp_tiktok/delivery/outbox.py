"""The outbox contract: durable storage of outgoing events until they are settled.

An event enters the outbox as a *pending* record. A worker *claims* ready records, which
leases them to it for a while; it then settles each one as *delivered*, as *retry* at a
later time (pending again), or as a *dead letter* with a reason, or *releases* it
untouched. A lease that is not settled expires, and the record becomes claimable again:
delivery is at least once. Every attempt is kept with its record and its dead letter.

Backends live in their own modules and are found by url scheme
(:func:`cdp_tiktok.backends.open_outbox`); this module imports none of them:
``sqlite_outbox`` (the default; one file shared safely by several worker processes),
``memory_outbox`` (same semantics, for tests) and ``postgres_outbox`` (many machines).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

import orjson

from cdp_tiktok.events import Attempt, BatchKey, OutgoingEvent

_decode = json.JSONDecoder().decode

DEDUP_WINDOW_SECONDS = 48 * 3600.0
"""TikTok de-duplicates on (event_source_id, event, event_id) within this window (48 h):
the default idempotent-enqueue window, and the age past which a replay may double-count."""
DELIVERED_KEYS_RETENTION = 7 * 86400.0
"""Identities of delivered events are kept this long (the longest dedup window allowed)."""


class RecordState(StrEnum):
    """The states of an outbox record, named once for code, ``outbox status``, metrics, docs.

    A record is *pending* (claimable now), *retry_scheduled* (pending, waiting for its
    retry time), *leased* (a worker holds a live lease), *stopped* (pending or waiting,
    but its destination was stopped on an auth or permission error), *dead* (a dead
    letter), or *delivered* (accepted by TikTok; the row is deleted, only counted).
    """

    PENDING = "pending"
    RETRY_SCHEDULED = "retry_scheduled"
    LEASED = "leased"
    STOPPED = "stopped"
    DEAD = "dead"
    DELIVERED = "delivered"


def record_state(*, dead: bool, leased: bool, later: bool, stopped: bool) -> RecordState:
    """The state of a stored record: ``leased`` means a lease owner is set and ``later``
    that its next claimable time is in the future (an unexpired lease or retry time)."""
    if dead:
        return RecordState.DEAD
    if leased and later:
        return RecordState.LEASED
    if stopped:
        return RecordState.STOPPED
    return RecordState.RETRY_SCHEDULED if later else RecordState.PENDING


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    """What the outbox holds for one destination, at one moment.

    ``counts`` has every :class:`RecordState` but ``delivered`` (counted outbox-wide in
    :class:`OutboxStats`); ``oldest_enqueued_at`` is the enqueue time of its oldest
    record not yet delivered nor dead; ``stopped_reason`` says why a worker stopped it.
    """

    destination: str
    counts: dict[RecordState, int]
    oldest_enqueued_at: float | None
    stopped_reason: str | None
    stopped_at: float | None


class StatusBuilder:
    """Accumulates grouped counts into :class:`DestinationStatus` rows (every backend)."""

    def __init__(self, stops: Mapping[str, tuple[str, float]]) -> None:
        self._stops = stops
        self._rows: dict[str, DestinationStatus] = {}

    def _row(self, destination: str) -> DestinationStatus:
        row = self._rows.get(destination)
        if row is None:
            reason, at = self._stops.get(destination, (None, None))
            counts: dict[RecordState, int] = {
                state: 0 for state in RecordState if state is not RecordState.DELIVERED
            }
            row = self._rows[destination] = DestinationStatus(destination, counts, None, reason, at)
        return row

    def add(
        self, destination: str, *, dead: bool, leased: bool, later: bool, count: int, oldest: Any
    ) -> None:
        """Count ``count`` records of one group; ``oldest`` is their earliest enqueue time."""
        row = self._row(destination)
        state = record_state(
            dead=dead, leased=leased, later=later, stopped=destination in self._stops
        )
        row.counts[state] += count
        if not dead and oldest is not None:
            first = row.oldest_enqueued_at
            if first is None or float(oldest) < first:
                self._rows[destination] = DestinationStatus(
                    destination, row.counts, float(oldest), row.stopped_reason, row.stopped_at
                )

    def result(self) -> list[DestinationStatus]:
        """Every destination with records or a stop, by name."""
        for destination in self._stops:
            self._row(destination)
        return [self._rows[name] for name in sorted(self._rows)]


R = TypeVar("R")


def without_known(rows: Sequence[R], identities: Sequence[str | None], known: set[str]) -> list[R]:
    """``rows`` without those whose identity (same position in ``identities``) is in
    ``known`` or repeats an earlier row's; ``known`` grows with the rows kept. The rule of
    idempotent enqueue, shared by every backend."""
    fresh = []
    for row, identity in zip(rows, identities, strict=True):
        if identity is not None:
            if identity in known:
                continue
            known.add(identity)
        fresh.append(row)
    return fresh


def dedup_identity(event: Enqueueable) -> str | None:
    """The identity that idempotent enqueue compares: destination, event_source_id, event
    name and event_id, joined; ``None`` for an event without event_id (never skipped)."""
    if isinstance(event, StoredEvent):
        return event.identity
    if isinstance(event, EncodedEvent):
        value = _decode(event.data_json)
        name, event_id = value.get("event"), value.get("event_id")
    else:
        name, event_id = event.data.get("event"), event.event_id
    if not isinstance(event_id, str) or not event_id:
        return None
    key = event.key
    return "\x1f".join((key.destination, key.event_source_id, str(name), event_id))


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A claimed record: one event plus what the outbox knows about its delivery.

    ``data_json`` is the event exactly as stored: compact UTF-8 JSON text that decodes
    equal to what :func:`~cdp_tiktok.tiktok.payload.encode_event` gives (the same text
    but for the spelling of some floats), so a worker joins it into a request body
    without decoding or re-encoding. ``data`` decodes it on each access
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


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An outgoing event already in the form every outbox stores it; made by
    :func:`stored_event` only.

    ``data_json`` is :func:`encode_data` of the event's data, ``event_id`` and
    ``identity`` (:func:`dedup_identity`) are read from that data. An outbox stores it
    exactly as it would store the :class:`~cdp_tiktok.events.OutgoingEvent` it was made
    from, without decoding, encoding or checking it again: an event is encoded once even
    when it is mapped in one process and enqueued in another (``cdp-tiktok send``).
    """

    key: BatchKey
    data_json: str
    event_id: str | None
    identity: str | None


Enqueueable = OutgoingEvent | EncodedEvent | StoredEvent
"""What :meth:`Outbox.enqueue` stores: an event, its JSON text, or its stored form."""


def stored_event(event: OutgoingEvent) -> StoredEvent:
    """``event`` as every outbox stores it; raises as :func:`encode_data` does (an event
    that is not JSON fails here, not at enqueue)."""
    return StoredEvent(event.key, encode_data(event.data), event.event_id, dedup_identity(event))


def event_fields(event: Enqueueable) -> tuple[str, str | None]:
    """The stored text and ``event_id`` of ``event``, checked (the memory outbox's way).

    Raises ``ValueError`` when an encoded event is not one JSON object (NaN and
    Infinity included) and as :func:`encode_data` does for a dict.
    """
    if isinstance(event, StoredEvent):
        return event.data_json, event.event_id
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

    The text decodes equal to what :func:`~cdp_tiktok.tiktok.payload.encode_event`
    embeds in a request (orjson writes it; only a float's spelling may differ, e.g.
    ``1e16`` for ``1e+16``). Raises ``ValueError`` for NaN or infinite numbers and
    ``TypeError`` for values JSON cannot hold, so a bad event fails at enqueue, never
    later at send time: what orjson refuses, or would write as ``null`` (NaN and
    infinity), is encoded by :mod:`json`, which refuses the same values with the same
    errors, and writes the rest (integers beyond 64 bits, non-string keys) as before.
    """
    try:
        text = _fast(data, option=_FAST_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: unsupported type, big integer, key, depth
        return _encode(data)
    if b"null" in text:  # NaN and infinity become null in orjson: let json decide
        return _encode(data)
    return text.decode()


_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
).encode
_fast = orjson.dumps
# Subclasses (str and int enums, ...), dataclasses and datetimes go to json, which
# writes or refuses them as it always did.
_FAST_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


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

    def by_state(self) -> dict[RecordState, int]:
        """The counts under the :class:`RecordState` names (``stopped`` is per destination,
        see :meth:`Outbox.status`, and counted here as pending or retry_scheduled)."""
        return {
            RecordState.PENDING: self.pending - self.held,
            RecordState.RETRY_SCHEDULED: self.held,
            RecordState.LEASED: self.leased,
            RecordState.DEAD: self.dead,
            RecordState.DELIVERED: self.delivered,
        }


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
        self,
        events: Sequence[Enqueueable],
        *,
        now: float | None = None,
        dedup_seconds: float = 0.0,
    ) -> list[int]:
        """Store ``events`` as pending records in one transaction; return their ids.

        Durable on return: an acknowledged enqueue survives a crash of the process (and,
        for SQLite, power loss: WAL with ``synchronous=FULL``). All or nothing: an event
        that is not JSON (a NaN, an object JSON cannot hold, an encoded event that is not
        one JSON object) raises and nothing is stored.

        With ``dedup_seconds > 0`` the enqueue is idempotent: an event whose
        :func:`dedup_identity` is already live (pending, leased, waiting) or was delivered
        in the last ``dedup_seconds`` is skipped (its id is not in the result), and so is
        a repeat within ``events``; the result then lists the ids of the stored events
        only, in order. Events without event_id are always stored.
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

    def status(self, *, now: float | None = None) -> list[DestinationStatus]:
        """Per destination: counts by :class:`RecordState`, oldest age, why it is stopped."""
        ...

    def stop_destination(
        self, destination: str, reason: str | None, *, now: float | None = None
    ) -> None:
        """Record that ``destination`` is stopped and why (``None`` clears the record).

        Informational: claims do not consult it; a worker that delivers to the
        destination again clears it.
        """
        ...

    def release_destination(self, destination: str, *, now: float | None = None) -> int:
        """Clear the stop of ``destination`` and make its waiting records ready at ``now``.

        Records under a live lease are left alone. Returns how many records changed.
        """
        ...

    def purge_destination(self, destination: str, *, now: float | None = None) -> int:
        """Delete the pending and waiting records of ``destination`` and clear its stop.

        Records under a live lease and dead letters are kept. Returns how many went.
        """
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

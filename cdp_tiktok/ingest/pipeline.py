"""The intake's blocking half: validate, map, hash and durably enqueue, on one thread.

Requests become :class:`Job` objects queued to a single pipeline thread, which owns the
host (mapping, identity store) and the outbox connection, so no SQLite connection or
compiled mapping is shared across threads. The thread takes every job waiting, maps
them, and enqueues all their events in one transaction (group commit): one fsync for
many requests. A job's answer is given only after that transaction committed.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdp_tiktok.delivery.outbox import Outbox
from cdp_tiktok.events import OutgoingEvent
from cdp_tiktok.ingest.body import Refusal
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.messages import FieldError, MessageError, format_timestamp, validate_message

log = logging.getLogger("cdp_tiktok.ingest")

GROUP_MAX_MESSAGES = 5000
"""At most this many messages are mapped before their events are committed together."""
DEPTH_CHECK_SECONDS = 1.0
"""How often the pipeline re-reads the outbox depth for the backlog check."""
STORE_RETRY_AFTER = 5
BUSY_RETRY_AFTER = 1

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


@dataclass(frozen=True, slots=True)
class Rejected:
    """One refused message of a request: its index in the batch (0 for a single call)."""

    index: int
    errors: tuple[FieldError, ...]

    def as_json(self) -> dict[str, Any]:
        """The JSON form of the answer body (pointers and reasons, never values)."""
        return {
            "index": self.index,
            "errors": [{"field": e.pointer or "/", "reason": e.reason} for e in self.errors],
        }


@dataclass(slots=True)
class JobResult:
    """What the pipeline did with a job: how many messages it accepted, which it refused,
    or a refusal of the whole job (nothing of it enqueued)."""

    accepted: int = 0
    events: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    refusal: Refusal | None = None


@dataclass(slots=True)
class Job:
    """The items of one request. ``kind`` is the endpoint's message type (``None``: batch
    items carry their own); ``done`` is called from the pipeline thread, and must ignore
    any call after the first."""

    items: Sequence[Any]
    kind: str | None
    source: str
    body_size: int
    done: Callable[[JobResult], None]
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[OutgoingEvent] = field(default_factory=list)
    result: JobResult = field(default_factory=JobResult)


def _type_mismatch(kind: str) -> FieldError:
    return FieldError("/type", f"must be {kind!r} (or absent) on this endpoint")


class Pipeline:
    """The single thread that turns jobs into durable outbox records.

    ``process`` maps one validated message to events (the host's
    :meth:`~cdp_tiktok.host.Host.process` without an outbox); ``deliverable`` names the
    destinations with delivery settings, whose events are enqueued. Refuses new jobs
    with 503 while ``max_waiting`` jobs wait, or while the outbox holds more than
    ``max_queue_records`` undelivered records.
    """

    def __init__(
        self,
        process: Callable[[dict[str, Any]], list[OutgoingEvent]],
        outbox: Outbox,
        deliverable: Collection[str],
        metrics: ServiceMetrics,
        *,
        max_message_bytes: int,
        max_waiting: int,
        max_queue_records: int,
    ) -> None:
        self._process = process
        self._outbox = outbox
        self._deliverable = frozenset(deliverable)
        self._metrics = metrics
        self._max_message = max_message_bytes
        self._max_waiting = max_waiting
        self._max_queue = max_queue_records
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._depth = 0
        self._depth_at = 0.0
        self._undeliverable_warned: set[str] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the pipeline thread."""
        self._thread = threading.Thread(target=self._run, name="cdp-tiktok-intake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, job: Job) -> None:
        """Queue ``job``; raise a 503 :class:`Refusal` when too many jobs already wait."""
        if self._jobs.qsize() >= self._max_waiting:
            raise Refusal(
                503, "backlog", "the intake is busy; retry later", retry_after=BUSY_RETRY_AFTER
            )
        self._jobs.put(job)

    # --- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            group, size, stopping = [first], len(first.items), False
            while size < GROUP_MAX_MESSAGES:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
                size += len(more.items)
            try:
                self._handle(group)
            except Exception as exc:  # never leave a request waiting for an answer
                log.error("intake pipeline failed: %s", type(exc).__name__)
                failed = JobResult(refusal=Refusal(500, "internal_error", "internal error"))
                for job in group:
                    job.done(failed)  # a job already answered ignores a second answer
            if stopping:
                return

    def _handle(self, group: list[Job]) -> None:
        backlog = self._backlog()
        for job in group:
            if backlog is not None:
                job.result.refusal = backlog
                continue
            try:
                self._map(job)
            except Exception as exc:  # a plugin failed: refuse this job, keep serving
                log.error(
                    "mapping failed: %s (nothing of the request enqueued)", type(exc).__name__
                )
                job.result = JobResult(
                    refusal=Refusal(500, "internal_error", "the messages could not be mapped")
                )
        mapped = [job for job in group if job.result.refusal is None]
        try:
            self._enqueue(mapped)
        except (ValueError, TypeError):
            # An event that is not JSON (a plugin bug) rolled the group back: commit job by
            # job so that one request cannot keep the others out.
            for job in mapped:
                try:
                    self._enqueue([job])
                except (ValueError, TypeError) as exc:
                    log.error("events not storable: %s", type(exc).__name__)
                    job.result = JobResult(
                        refusal=Refusal(500, "internal_error", "the events could not be stored")
                    )
                except Exception as exc:
                    self._store_failed(mapped, exc)
                    break
        except Exception as exc:  # store down or full: nothing of the group was stored
            self._store_failed(mapped, exc)
        for job in group:
            self._account(job)
            job.done(job.result)

    def _enqueue(self, jobs: list[Job]) -> None:
        events = [event for job in jobs for event in job.events]
        if events:
            self._outbox.enqueue(events)

    @staticmethod
    def _store_failed(jobs: list[Job], exc: Exception) -> None:
        log.error("outbox enqueue failed: %s", type(exc).__name__)
        refusal = Refusal(
            503,
            "store_unavailable",
            "the outbox cannot store messages now; retry later",
            retry_after=STORE_RETRY_AFTER,
        )
        for job in jobs:
            if job.result.refusal is None:
                job.result = JobResult(refusal=refusal)

    def _backlog(self) -> Refusal | None:
        now = time.monotonic()
        if now - self._depth_at >= DEPTH_CHECK_SECONDS:
            self._depth_at = now
            try:
                stats = self._outbox.stats()
            except Exception as exc:
                log.error("outbox stats failed: %s", type(exc).__name__)
                return Refusal(
                    503,
                    "store_unavailable",
                    "the outbox cannot be read now; retry later",
                    retry_after=STORE_RETRY_AFTER,
                )
            self._depth = stats.pending + stats.leased
        if self._depth > self._max_queue:
            return Refusal(
                503,
                "backlog",
                "the delivery backlog is full; retry later",
                retry_after=STORE_RETRY_AFTER,
            )
        return None

    def _map(self, job: Job) -> None:
        received_at = format_timestamp_now()
        check_size = job.body_size > self._max_message and len(job.items) > 1
        for index, item in enumerate(job.items):
            try:
                if check_size:
                    self._check_size(item)
                message = self._validate(item, job.kind, received_at)
            except MessageError as exc:
                job.result.rejected.append(Rejected(index, tuple(exc.errors)))
                continue
            job.messages.append(message)
        for message in job.messages:
            for event in self._process(message):
                name = event.key.destination
                if name in self._deliverable:
                    job.events.append(event)
                elif name not in self._undeliverable_warned:
                    self._undeliverable_warned.add(name)
                    log.warning(
                        "destination %r has no delivery settings; its events are dropped", name
                    )
        job.result.accepted = len(job.messages)
        job.result.events = len(job.events)

    def _check_size(self, item: Any) -> None:
        text = _compact(item)
        # A character is 1 to 4 bytes of UTF-8: encode only when the length cannot decide.
        if len(text) * 4 <= self._max_message:
            return
        if len(text) > self._max_message or len(text.encode("utf-8")) > self._max_message:
            raise MessageError(
                [FieldError("", f"message is larger than {self._max_message} bytes")]
            )

    @staticmethod
    def _validate(item: Any, kind: str | None, received_at: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            return validate_message(item)
        message = dict(item)
        message.pop("writeKey", None)  # the key never travels further
        if kind is not None and message.get("type") not in (None, kind):
            raise MessageError([_type_mismatch(kind)])
        message["receivedAt"] = received_at
        return validate_message(message, default_type=kind)

    def _account(self, job: Job) -> None:
        metrics = self._metrics
        result = job.result
        if result.refusal is not None:
            metrics.refused.labels(result.refusal.code).inc(max(1, len(job.items)))
            return
        if result.rejected:
            metrics.refused.labels("invalid_message").inc(len(result.rejected))
        # One increment per label set, not per message.
        for kind, count in Counter(m["type"] for m in job.messages).items():
            metrics.received.labels(kind, job.source).inc(count)
        names = Counter((e.key.destination, str(e.data.get("event"))) for e in job.events)
        for (destination, name), count in names.items():
            metrics.mapped.labels(destination, name).inc(count)


def format_timestamp_now() -> str:
    """The current time as Segment's ``receivedAt`` (ISO 8601, milliseconds, UTC)."""
    from datetime import UTC, datetime

    return format_timestamp(datetime.now(UTC))

"""The intake's blocking half: validate, map, hash and durably enqueue, on two threads.

Requests become :class:`Job` objects queued to the mapping thread, which owns the host
(mapping, identity store): it takes every job waiting, validates and maps them, and
hands the group to the writing thread, which owns the outbox connection and enqueues
the events of every group waiting in one transaction (group commit): one fsync for many
requests. So no SQLite connection or compiled mapping is shared across threads, and
the next group is mapped while the last one is written (SQLite writes without holding
the interpreter). A job's answer is given only after its transaction committed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cdp_tiktok.delivery.outbox import Outbox
from cdp_tiktok.events import OutgoingEvent
from cdp_tiktok.ingest.body import Refusal, lone_surrogate_at
from cdp_tiktok.ingest.depth import OutboxDepth, undelivered_count
from cdp_tiktok.ingest.metrics import ServiceMetrics
from cdp_tiktok.ingest.sizes import over_limit
from cdp_tiktok.messages import FieldError, MessageError, format_timestamp, validate_message

log = logging.getLogger("cdp_tiktok.ingest")
T = TypeVar("T")

GROUP_MAX_MESSAGES = 5000
"""At most this many messages are mapped as one group."""
GROUP_MAX_JOBS = 1000
"""At most this many requests' events are committed in one transaction."""
MAPPED_GROUPS_WAITING = 2
"""Mapped groups that may wait for the writer before the mapping thread waits too."""
LONE_SURROGATE = "is not Unicode text: it holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)"
"""The reason a message with such a string is refused (it could not be hashed or stored)."""
STORE_RETRY_AFTER = 5
BUSY_RETRY_AFTER = 1


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
    surrogates: bool = True
    """Whether a string of the items may hold a lone surrogate (see
    :func:`~cdp_tiktok.ingest.body.read_json`): each item is then checked."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[OutgoingEvent] = field(default_factory=list)
    result: JobResult = field(default_factory=JobResult)


def _gather(
    source: queue.Queue[T | None], first: T, weight: Callable[[T], int], limit: int
) -> tuple[list[T], bool]:
    """``first`` and what else waits in ``source``, until the weights reach ``limit``;
    and whether the stop marker (``None``) was taken."""
    taken, total = [first], weight(first)
    while total < limit:
        try:
            more = source.get_nowait()
        except queue.Empty:
            break
        if more is None:
            return taken, True
        taken.append(more)
        total += weight(more)
    return taken, False


def _fail(group: list[Job], exc: Exception) -> None:
    log.error("intake pipeline failed: %s", type(exc).__name__)
    failed = JobResult(refusal=Refusal(500, "internal_error", "internal error"))
    for job in group:
        job.done(failed)  # a job already answered ignores a second answer


def _type_mismatch(kind: str) -> FieldError:
    return FieldError("/type", f"must be {kind!r} (or absent) on this endpoint")


class Pipeline:
    """The two threads that turn jobs into durable outbox records.

    ``process`` maps one validated message to events (the host's
    :meth:`~cdp_tiktok.host.Host.process` without an outbox); ``deliverable`` names the
    destinations with delivery settings, whose events are enqueued; ``flush_identity``
    (:meth:`~cdp_tiktok.host.Host.flush`) runs on the mapping thread before each group is
    mapped (it sees what other processes committed) and after (before the group goes to
    the writer). Refuses new jobs with 503 while ``max_waiting`` jobs wait, or while the
    outbox holds more than ``max_queue_records`` undelivered records as counted by
    ``depth`` (by default :func:`~cdp_tiktok.ingest.depth.undelivered_count` of the
    outbox itself; better of another connection to it, so that counting never waits for
    a write) at most :data:`~cdp_tiktok.ingest.depth.DEPTH_CHECK_SECONDS` ago.
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
        depth: Callable[[], int] | None = None,
        flush_identity: Callable[[], None] = lambda: None,
    ) -> None:
        self._process = process
        self._flush_identity = flush_identity
        self._outbox = outbox
        self._deliverable = frozenset(deliverable)
        self._metrics = metrics
        self._max_message = max_message_bytes
        self._max_waiting = max_waiting
        self._max_queue = max_queue_records
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        # Mapped groups waiting to be written; bounded, so mapping cannot run far ahead.
        self._mapped: queue.Queue[list[Job] | None] = queue.Queue(MAPPED_GROUPS_WAITING)
        self._threads: list[threading.Thread] = []
        self._depth = OutboxDepth(depth or undelivered_count(outbox))
        self._undeliverable_warned: set[str] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Read the outbox depth, then start the threads."""
        self._depth.start()
        self._threads = [
            threading.Thread(target=self._map_loop, name="cdp-tiktok-intake-map", daemon=True),
            threading.Thread(target=self._write_loop, name="cdp-tiktok-intake-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Finish the jobs already queued (mapped, written and answered), then stop."""
        if self._threads:
            self._jobs.put(None)
            for thread in self._threads:
                thread.join()
            self._threads = []
            self._depth.stop()

    def submit(self, job: Job) -> None:
        """Queue ``job``; raise a 503 :class:`Refusal` when too many jobs already wait."""
        if self._jobs.qsize() >= self._max_waiting:
            raise Refusal(
                503, "backlog", "the intake is busy; retry later", retry_after=BUSY_RETRY_AFTER
            )
        self._jobs.put(job)

    # --- the threads -------------------------------------------------------------------

    def _map_loop(self) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                group, stopping = _gather(
                    self._jobs, first, lambda job: len(job.items), GROUP_MAX_MESSAGES
                )
                try:
                    self._map_group(group)
                except Exception as exc:  # never leave a request waiting for an answer
                    _fail(group, exc)
                else:
                    self._mapped.put(group)
                if stopping:
                    return
        finally:
            self._mapped.put(None)  # the writer finishes what was mapped, then stops

    def _write_loop(self) -> None:
        while True:
            first = self._mapped.get()
            if first is None:
                return
            groups, stopping = _gather(self._mapped, first, len, GROUP_MAX_JOBS)
            jobs = [job for group in groups for job in group]
            try:
                self._commit(jobs)
            except Exception as exc:  # never leave a request waiting for an answer
                _fail(jobs, exc)
            if stopping:
                return

    def _map_group(self, group: list[Job]) -> None:
        backlog = self._backlog()
        if not self._sync_identity(group):  # sees identifies answered before these jobs
            return
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
        # The group's identity writes are durable before any of its events is committed
        # or any of its jobs answered (an identify, even without events, enriches what
        # any process maps next).
        self._sync_identity(group)

    def _sync_identity(self, group: list[Job]) -> bool:
        try:
            self._flush_identity()
        except Exception as exc:  # identity store full or down: refuse the group
            self._store_failed(group, exc, "identity store")
            return False
        return True

    def _commit(self, group: list[Job]) -> None:
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
    def _store_failed(jobs: list[Job], exc: Exception, store: str = "outbox") -> None:
        log.error("%s write failed: %s", store, type(exc).__name__)
        refusal = Refusal(
            503,
            "store_unavailable",
            f"the {store} cannot store messages now; retry later",
            retry_after=STORE_RETRY_AFTER,
        )
        for job in jobs:
            if job.result.refusal is None:
                job.result = JobResult(refusal=refusal)

    def _backlog(self) -> Refusal | None:
        depth = self._depth.current()
        if depth is None:
            return Refusal(
                503,
                "store_unavailable",
                "the outbox cannot be read now; retry later",
                retry_after=STORE_RETRY_AFTER,
            )
        if depth > self._max_queue:
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
                if job.surrogates:
                    self._check_text(item)
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

    @staticmethod
    def _check_text(item: Any) -> None:
        # Before the size check and the mapping, which would fail to encode the string.
        pointer = lone_surrogate_at(item)
        if pointer is not None:
            raise MessageError([FieldError(pointer, LONE_SURROGATE)])

    def _check_size(self, item: Any) -> None:
        if over_limit(item, self._max_message):
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

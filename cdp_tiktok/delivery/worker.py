"""The delivery loop: claim from the outbox, batch, send concurrently, settle.

:class:`Deliverer` runs on one thread (the *run thread*), which makes every outbox call,
so a SQLite connection is never shared across threads; only the HTTP requests run on a
small thread pool sharing one ``httpx.Client``. Per destination, at most
``settings.concurrency`` requests are in flight and an adaptive rate limiter spaces them.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from cdp_tiktok.delivery.batcher import Batch, Batcher, Item, split_to_fit
from cdp_tiktok.delivery.outbox import Outbox, OutboxRecord
from cdp_tiktok.delivery.retry import AdaptiveRate, Backoff, RatePolicy, RetryPolicy
from cdp_tiktok.delivery.sender import (
    BodyEncoder,
    ClassifyFn,
    EncodeFn,
    HttpSender,
    Response,
    Settler,
    classify_response,
    sub_batch,
)
from cdp_tiktok.events import BatchKey, Outcome
from cdp_tiktok.settings import SettingsError, TikTokSettings
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH

log = logging.getLogger(__name__)

MAX_POOL = 64
"""Upper bound on simultaneous requests of one run, whatever the settings say."""
PROGRESS_INTERVAL = 0.25
"""Seconds between two ``on_progress`` calls (one more is made at the end)."""
PENDING_REFRESH_SECONDS = 5.0
"""Seconds between two reads of the outbox's pending count for ``on_progress`` (and one
at the end): counting scans the outbox, ~0.15 s for 100,000 records in SQLite."""
MIN_LEASE_SECONDS = 15.0
"""Shortest default lease; the default is ``max(MIN_LEASE_SECONDS, 2 * timeout + 5)``, so a
request (and its bisection) settles well inside its lease, and a killed worker's records
come back within half a minute."""
WAIT_NOTICE_SECONDS = 1.0
"""A drain that must wait longer than this for another worker's leases says so."""
NOTIFIED_IDLE_SECONDS = 5.0
"""Longest idle sleep of a worker on a backend that notifies new work (PostgreSQL)."""
STOP_RETRY_SECONDS = 60.0
"""A long-running worker tries a stopped destination again after this long (one request:
the cause may have been fixed, e.g. after ``cdp-tiktok outbox release``)."""


def default_lease_seconds(settings: Mapping[str, TikTokSettings]) -> float:
    """The lease a run takes by default: long enough for its slowest request to settle."""
    timeout = max((s.timeout_seconds for s in settings.values()), default=10.0)
    return max(MIN_LEASE_SECONDS, 2 * timeout + 5)


@dataclass(frozen=True, slots=True)
class DeliveryProgress:
    """Live counters of a run, passed to ``on_progress``.

    ``delivered``, ``dead`` and ``retried`` count records; ``requests`` counts HTTP
    requests (bisection included); ``pending`` is the outbox's pending count, read at
    most every :data:`PENDING_REFRESH_SECONDS` and at the end of the run.
    """

    delivered: int
    dead: int
    retried: int
    requests: int
    pending: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :meth:`Deliverer.run` did.

    ``retried`` counts records scheduled for a later attempt; ``stopped`` maps each
    destination that was stopped (auth or permission error, or no settings) to a message
    naming it and TikTok's code and message; their events stay in the outbox.
    """

    delivered: int
    dead: int
    retried: int
    requests: int
    stopped: dict[str, str]
    elapsed: float
    dead_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Route:
    settings: TikTokSettings
    url: str
    headers: dict[str, str]
    secret: str
    limiter: AdaptiveRate
    batcher: Batcher
    in_flight: int = 0


class Deliverer:
    """Delivers the outbox's events to the configured destinations.

    ``destinations`` maps a destination name (``BatchKey.destination``) to its settings;
    events of an unknown destination are left pending and reported in ``stopped``.
    ``encode`` and ``classify`` default to the built-in TikTok encoder and classifier; the
    host passes its plugin-hook facade instead. ``transport`` replaces the HTTP transport
    (tests). ``clock``/``sleep``/``rng`` make timing and jitter deterministic in tests.

    Guarantees: at-least-once (a record leaves the outbox only when TikTok accepted it or
    it is dead-lettered with a reason); a record is settled delivered only on a
    ``DELIVERED`` verdict; outbox calls happen on the thread calling :meth:`run`.
    A destination stopped on an auth or permission answer is recorded in the outbox
    with its reason (``outbox status`` shows it); a later delivery to it clears that.
    ``on_wait`` receives a sentence whenever a drain waits on leases other workers hold
    (a killed process's leases expire after ``lease_seconds``). Idle without ``drain``,
    the run sleeps until the outbox's next ready time, at most ``poll_seconds``; a
    backend with ``wait_for_work(timeout)`` (PostgreSQL: LISTEN/NOTIFY) wakes it early.
    Raises :class:`~cdp_tiktok.settings.SettingsError` at construction when a
    destination's settings cannot send (no access token; the event source id is in each
    event's key).
    """

    def __init__(
        self,
        outbox: Outbox,
        destinations: Mapping[str, TikTokSettings],
        *,
        encode: EncodeFn | None = None,
        classify: ClassifyFn | None = None,
        transport: httpx.BaseTransport | None = None,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        lease_seconds: float | None = None,
        linger_seconds: float = 0.05,
        retry_policy: RetryPolicy | None = None,
        rate_policy: RatePolicy | None = None,
        poll_seconds: float = 0.25,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        if classify is None:
            from cdp_tiktok.tiktok.codes import classify as default_classify

            classify = default_classify
        for name, settings in destinations.items():
            # The event source id travels in each event's key; the token is per destination.
            if not settings.access_token:
                raise SettingsError(
                    f"destination {name!r} cannot deliver: access_token is required: pass "
                    "--access-token, set CDP_TIKTOK_ACCESS_TOKEN (Python: "
                    "TikTokSettings(access_token=Secret(...)))"
                )
        self._outbox = outbox
        self._destinations = dict(destinations)
        self._encode = encode
        self._classify: ClassifyFn = classify
        self._transport = transport
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lease = (
            default_lease_seconds(self._destinations) if lease_seconds is None else lease_seconds
        )
        self._on_wait = on_wait
        self._linger = linger_seconds
        self._retry_policy = retry_policy or RetryPolicy()
        self._rate_policy = rate_policy or RatePolicy()
        self._poll = poll_seconds

    def run(
        self,
        *,
        drain: bool = True,
        stop: threading.Event | None = None,
        on_progress: Callable[[DeliveryProgress], None] | None = None,
    ) -> DeliveryReport:
        """Deliver until done (``drain``) or until ``stop`` is set.

        With ``drain`` the run returns once nothing left in the outbox can be delivered
        now or later: it sleeps until retry times come; records of stopped destinations
        stay pending. Without ``drain`` it keeps polling for new events (batches linger
        ``linger_seconds`` to fill up) until ``stop`` is set. On ``stop`` the requests in
        flight are finished and settled, and records not yet sent are released.
        """
        return _Run(self, drain, stop, on_progress).execute()


def _serialized(record: OutboxRecord) -> bytes:
    """The record's event as request bytes: the stored compact JSON, never re-encoded.

    ``data_json`` decodes equal to what :func:`~cdp_tiktok.tiktok.payload.encode_event`
    produces, so joining these bytes gives the body ``encode_request`` would.
    """
    return record.data_json.encode("utf-8")


class _Run:
    """The state of one :meth:`Deliverer.run`."""

    def __init__(
        self,
        owner: Deliverer,
        drain: bool,
        stop: threading.Event | None,
        on_progress: Callable[[DeliveryProgress], None] | None,
    ) -> None:
        self.o = owner
        self.drain = drain
        self.stop_event = stop
        self.on_progress = on_progress
        self.started = owner._clock()
        self.last_progress = 0.0
        self.pending = 0
        self.pending_read_at: float | None = None
        self.stopped: dict[str, str] = {}
        self.stopped_at: dict[str, float] = {}  # when an auth/permission answer stopped it
        self.routes: dict[str, _Route] = {}
        for name, settings in owner._destinations.items():
            secret = settings.access_token.reveal()
            self.routes[name] = _Route(
                settings=settings,
                url=settings.endpoint.rstrip("/") + ENDPOINT_PATH,
                headers={"Access-Token": secret, "Content-Type": "application/json"},
                secret=secret,
                limiter=AdaptiveRate(owner._rate_policy, clock=owner._clock),
                batcher=Batcher(
                    min(settings.batch_max_events, 1000),
                    settings.batch_max_bytes,
                    linger_seconds=owner._linger,
                    clock=owner._clock,
                ),
            )
        self.pool = max(1, min(MAX_POOL, sum(r.settings.concurrency for r in self.routes.values())))
        self.encoder = BodyEncoder(
            owner._encode,
            {name: (r.settings.partner_name or None) for name, r in self.routes.items()},
        )
        self.settler = Settler(
            owner._outbox,
            owner.worker_id,
            Backoff(owner._retry_policy, owner._rng),
            clock=owner._clock,
        )
        self.persisted_stops = {
            row.destination for row in owner._outbox.status() if row.stopped_reason
        }
        self.waiting_notice: float | None = None
        self.queue: deque[Batch] = deque()
        self.hot_keys: list[BatchKey] = []
        self.in_flight: dict[cf.Future[Response], Batch] = {}

    # --- main loop ---------------------------------------------------------------------

    def execute(self) -> DeliveryReport:
        sender = HttpSender(
            pool=self.pool,
            timeout=max((r.settings.timeout_seconds for r in self.routes.values()), default=10.0),
            transport=self.o._transport,
            clock=self.o._clock,
        )
        executor = cf.ThreadPoolExecutor(self.pool, thread_name_prefix="cdp-tiktok-send")
        try:
            self._loop(sender, executor)
        finally:
            try:
                self._finish_in_flight()
            finally:
                self._release_unsent()
                executor.shutdown(wait=True)
                sender.close()
        self._progress(force=True)
        counters = self.settler.counters
        return DeliveryReport(
            delivered=counters.delivered,
            dead=counters.dead,
            retried=counters.retried,
            requests=counters.requests,
            stopped=dict(self.stopped),
            elapsed=self.o._clock() - self.started,
            dead_reasons=dict(counters.dead_reasons),
        )

    def _stopping(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def _loop(self, sender: HttpSender, executor: cf.ThreadPoolExecutor) -> None:
        while not self._stopping():
            self._progress()
            hungry = self._fill()
            wait = self._dispatch(sender, executor)
            if self.in_flight:
                self._await(0.0 if hungry and len(self.queue) < self.pool else wait)
                continue
            if self.queue:
                self._pause(wait if wait is not None else 0.0)
                continue
            held = [r.batcher.next_due() for r in self.routes.values()]
            due = min((t for t in held if t is not None), default=None)
            if due is not None:
                self._pause(max(0.0, due - self.o._clock()))
                continue
            if not self.drain:
                self._idle_wait()
                continue
            pause = self._idle_drain_pause()
            if pause is None:
                return
            self._pause(pause)

    def _idle_drain_pause(self) -> float | None:
        """Nothing claimable now: how long to sleep before more is, or ``None`` if done."""
        now = self.o._clock()
        waiting = [k for k in self.o._outbox.ready_keys(now=now) if self._deliverable(k)]
        if waiting:
            return 0.0
        if self.stopped:
            # Records of stopped destinations are ready but never claimed, so the outbox's
            # next_ready_at would always be "now": wait only for retries this run scheduled.
            future = [t for t in self.settler.retry_times if t > now]
            return min(future) - now if future else None
        next_at = self.o._outbox.next_ready_at()
        if next_at is None:
            return None
        pause = max(next_at - now, 0.01)
        if pause > WAIT_NOTICE_SECONDS and next_at != self.waiting_notice:
            leased = self.o._outbox.stats(now=now).leased
            if leased:
                self.waiting_notice = next_at
                self._notice(
                    f"waiting {pause:.0f} s for {leased} event(s) leased by another worker "
                    "(running, or killed: its leases expire) before they can be sent"
                )
        return pause

    def _notice(self, text: str) -> None:
        log.warning("%s", text)
        if self.o._on_wait is not None:
            self.o._on_wait(text)

    def _idle_wait(self) -> None:
        """Nothing to do now (worker mode): sleep until the next ready time, at most the
        poll interval (:data:`NOTIFIED_IDLE_SECONDS` on a backend that notifies new work),
        waking early on a notification or ``stop``."""
        now = self.o._clock()
        stop = self.stop_event
        wait_for_work = None if stop is None else getattr(self.o._outbox, "wait_for_work", None)
        longest = self.o._poll if wait_for_work is None else NOTIFIED_IDLE_SECONDS
        next_at = self.o._outbox.next_ready_at()
        # Ready now yet not claimed: records of stopped destinations; sleep the full time.
        timeout = longest if next_at is None or next_at <= now else min(longest, next_at - now)
        if wait_for_work is None or stop is None:
            self._pause(timeout)
            return
        end = now + timeout
        while not stop.is_set() and (left := end - self.o._clock()) > 0:
            if wait_for_work(min(left, 0.25)):
                return

    # --- claiming and batching -----------------------------------------------------------

    def _deliverable(self, key: BatchKey) -> bool:
        name = key.destination
        if name in self.stopped:
            since = self.stopped_at.get(name)
            if self.drain or since is None or self.o._clock() - since < STOP_RETRY_SECONDS:
                return False
            del self.stopped[name], self.stopped_at[name]  # worker mode: try it again
        if name not in self.routes:
            self.stopped[name] = (
                f"destination {name!r} has no settings in this run; its events are kept "
                f"in the outbox"
            )
            log.error("%s", self.stopped[name])
            return False
        return True

    def _fill(self) -> bool:
        """Claim one batch worth of records per ready key while fewer than ``pool`` batches
        wait; return whether more may be claimable right away (a claim came back full).

        Small claims keep the run thread responsive: settling and dispatching interleave
        with claiming, so the requests in flight never wait on a large claim.
        """
        if len(self.queue) >= self.pool:
            return False
        outbox = self.o._outbox
        keys = self.hot_keys or [
            k for k in outbox.ready_keys(now=self.o._clock()) if self._deliverable(k)
        ]
        hot: list[BatchKey] = []
        for key in keys:
            if not self._deliverable(key):
                continue
            route = self.routes[key.destination]
            limit = route.settings.batch_max_events
            records = outbox.claim(
                self.o.worker_id, limit, self.o._lease, key=key, now=self.o._clock()
            )
            if records:
                self._batch(route, key, records)
            if len(records) >= limit:
                hot.append(key)
        self.hot_keys = hot
        for route in self.routes.values():
            self.queue.extend(route.batcher.take(flush=self.drain))
        return bool(hot)

    def _batch(self, route: _Route, key: BatchKey, records: list[OutboxRecord]) -> None:
        limit = route.settings.max_attempts
        exhausted = [Item(r, b"") for r in records if r.attempts >= limit]
        if exhausted:
            self.settler.exhausted(exhausted)
            records = [r for r in records if r.attempts < limit]
        items = [Item(record, _serialized(record)) for record in records]
        too_large = route.batcher.add(key, items, self.encoder.overhead(key))
        if too_large:
            self.settler.too_large(too_large, route.settings.batch_max_bytes)

    # --- sending -------------------------------------------------------------------------

    def _dispatch(self, sender: HttpSender, executor: cf.ThreadPoolExecutor) -> float | None:
        """Start every request the limits allow; return the shortest rate-limit wait."""
        wait: float | None = None
        blocked: set[str] = set()
        index = 0
        while index < len(self.queue) and len(self.in_flight) < self.pool:
            batch = self.queue[index]
            name = batch.key.destination
            route = self.routes[name]
            if name in self.stopped:
                del self.queue[index]
                self.settler.release(batch.items)
                continue
            if name in blocked or route.in_flight >= route.settings.concurrency:
                index += 1
                continue
            delay = route.limiter.acquire()
            if delay > 0:
                blocked.add(name)
                wait = delay if wait is None else min(wait, delay)
                index += 1
                continue
            del self.queue[index]
            body = self.encoder.body(batch)
            limit = route.settings.batch_max_bytes
            if len(body) > limit:  # only a custom encoder can outgrow the joined estimate
                parts = split_to_fit(batch.items, len(body), limit)
                if len(parts) == 1:
                    self.settler.too_large(batch.items, limit)
                else:
                    overhead = self.encoder.overhead(batch.key)
                    for part in reversed(parts):
                        self.queue.appendleft(sub_batch(batch.key, part, overhead))
                continue
            future = executor.submit(
                sender.post,
                route.url,
                route.headers,
                body,
                route.settings.timeout_seconds,
                route.secret,
            )
            self.in_flight[future] = batch
            route.in_flight += 1
            self.settler.counters.requests += 1
        return wait

    def _await(self, timeout: float | None) -> None:
        done, _ = cf.wait(list(self.in_flight), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        for future in done:
            self._settle(future)
        self._progress()

    def _settle(self, future: cf.Future[Response]) -> None:
        batch = self.in_flight.pop(future)
        name = batch.key.destination
        route = self.routes[name]
        route.in_flight -= 1
        verdict = classify_response(
            self.o._classify, future.result(), len(batch.items), route.secret
        )
        if verdict.outcome is Outcome.THROTTLED:
            route.limiter.throttled()
        elif verdict.outcome is Outcome.DELIVERED:
            route.limiter.succeeded()
            if name in self.persisted_stops:  # the cause was fixed
                self.persisted_stops.discard(name)
                self.o._outbox.stop_destination(name, None)
        if name in self.stopped and verdict.outcome is not Outcome.DELIVERED:
            self.settler.release(batch.items)
            return
        settled = self.settler.settle(batch, verdict, route.settings.max_attempts, route.secret)
        self.queue.extendleft(reversed(settled.followups))
        if settled.stop is not None:
            self.stopped[name] = settled.stop
            self.stopped_at[name] = self.o._clock()
            log.error("%s", settled.stop)
            self.o._outbox.stop_destination(name, settled.stop, now=self.o._clock())
            self.persisted_stops.add(name)
            self.settler.release(route.batcher.remove(lambda key: key.destination == name))

    # --- waiting, progress, shutdown -------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        if self.stop_event is None:
            self.o._sleep(seconds)
            return
        end = self.o._clock() + seconds
        while not self.stop_event.is_set():
            left = end - self.o._clock()
            if left <= 0:
                return
            self.o._sleep(min(left, 0.1))

    def _progress(self, *, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = self.o._clock()
        if not force and now - self.last_progress < PROGRESS_INTERVAL:
            return
        self.last_progress = now
        read_at = self.pending_read_at
        if force or read_at is None or now - read_at >= PENDING_REFRESH_SECONDS:
            self.pending = self.o._outbox.stats().pending
            self.pending_read_at = now
        counters = self.settler.counters
        self.on_progress(
            DeliveryProgress(
                delivered=counters.delivered,
                dead=counters.dead,
                retried=counters.retried,
                requests=counters.requests,
                pending=self.pending,
                elapsed=now - self.started,
            )
        )

    def _finish_in_flight(self) -> None:
        while self.in_flight:
            done, _ = cf.wait(list(self.in_flight), return_when=cf.FIRST_COMPLETED)
            for future in done:
                self._settle(future)
            # Halves produced by a late bisection are released with the rest of the queue.

    def _release_unsent(self) -> None:
        items = [item for batch in self.queue for item in batch.items]
        self.queue.clear()
        for route in self.routes.values():
            items.extend(route.batcher.remove(lambda key: True))
        self.settler.release(items)

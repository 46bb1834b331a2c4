"""Sending request bodies over HTTP, and settling each verdict in the outbox.

* :class:`BodyEncoder` builds request bodies: by default by joining the events serialized
  once at claim time into TikTok's envelope; a custom (plugin) encoder is called as is.
* :class:`HttpSender` owns the one ``httpx.Client`` of a run (HTTP/1.1 keep-alive, explicit
  timeouts, connection limits equal to the concurrency) and turns every transport
  failure into an ``error`` text for the classifier. Thread-safe.
* :class:`Settler` applies a :class:`~cdp_tiktok.events.Verdict` to a batch's records:
  delivered, retry at a backoff time, dead letter with a reason, bisection, or stop.
  It talks to the outbox and must stay on one thread (SQLite connections are).

Nothing is ever settled as delivered unless the verdict says ``DELIVERED``, and the
access token never appears in a log line, an attempt message or an error.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from cdp_tiktok.delivery.batcher import Batch, Item
from cdp_tiktok.delivery.outbox import Outbox
from cdp_tiktok.delivery.retry import Backoff
from cdp_tiktok.events import Attempt, BatchKey, Outcome, Verdict
from cdp_tiktok.tiktok.payload import encode_batch, envelope_overhead

log = logging.getLogger(__name__)

EncodeFn = Callable[[BatchKey, Sequence[dict[str, Any]], str | None], bytes | None]
ClassifyFn = Callable[[int | None, bytes, str | None, int], Verdict | None]

REASON_TOO_LARGE = "too_large"
REASON_MAX_ATTEMPTS = "max_attempts"
UNKNOWN_CODE_PREFIX = "unknown_code"
_MASK = "***"


def scrub(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` masked, in any letter case (no-op for
    an empty secret)."""
    if not secret or not text or secret.casefold() not in text.casefold():
        return text
    return _secret_pattern(secret).sub(_MASK, text)


@functools.lru_cache(maxsize=16)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    return re.compile(re.escape(secret), re.IGNORECASE)


def masked(verdict: Verdict, secret: str) -> Verdict:
    """``verdict`` with ``secret`` masked in every text it carries from the answer."""
    request_id = verdict.request_id
    clean = replace(
        verdict,
        message=scrub(verdict.message, secret),
        reason=scrub(verdict.reason, secret),
        request_id=None if request_id is None else scrub(request_id, secret),
    )
    return verdict if clean == verdict else clean


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


# --- bodies ------------------------------------------------------------------------------


class BodyEncoder:
    """Builds request bodies for batches; one instance per run, main thread only.

    Guarantees: with ``encode=None`` (the built-in TikTok encoder) a body is the batch's
    already-serialized events joined into the envelope by
    :func:`cdp_tiktok.tiktok.payload.encode_batch`, decoding equal to what
    ``encode_request(build_request(...))`` gives (byte for byte but for the spelling of
    some floats in the stored events), without serializing anything again.
    With a custom ``encode`` (the plugin hook) the body is exactly that function's answer.
    """

    def __init__(self, encode: EncodeFn | None, partner_names: dict[str, str | None]) -> None:
        self._encode = encode
        self._partners = partner_names
        self._overheads: dict[BatchKey, int] = {}

    def overhead(self, key: BatchKey) -> int:
        """The envelope size of a request for ``key`` (exact for the built-in encoder)."""
        size = self._overheads.get(key)
        if size is None:
            size = self._overheads[key] = envelope_overhead(
                key, self._partners.get(key.destination)
            )
        return size

    def body(self, batch: Batch) -> bytes:
        """The request body for ``batch``."""
        partner = self._partners.get(batch.key.destination)
        if self._encode is None:
            return encode_batch(batch.key, [item.body for item in batch.items], partner)
        body = self._encode(batch.key, [item.record.data for item in batch.items], partner)
        if body is None:
            raise RuntimeError("no plugin encoded the batch (cdp_encode_batch returned None)")
        return body


# --- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """What one POST produced: an HTTP answer, or the transport error text (never both)."""

    status: int | None
    body: bytes
    error: str | None
    retry_after: float | None
    elapsed: float


class HttpSender:
    """POSTs bodies with one shared ``httpx.Client``; safe to call from many threads.

    Guarantees: HTTP/1.1 with keep-alive; at most ``pool`` connections; every request
    carries an explicit timeout; a transport failure (timeout, refused or dropped
    connection, protocol error) is returned as ``Response.error`` rather than raised, with
    the secrets passed to :meth:`post` masked out of the text.
    """

    def __init__(
        self,
        *,
        pool: int,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._client = httpx.Client(
            transport=transport,
            timeout=_timeout(timeout),
            limits=httpx.Limits(
                max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=30.0
            ),
            follow_redirects=False,
        )

    def post(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float, secret: str
    ) -> Response:
        """POST ``body`` to ``url``; never raises for transport or HTTP errors."""
        started = time.monotonic()
        try:
            answer = self._client.post(
                url, content=body, headers=headers, timeout=_timeout(timeout)
            )
        except httpx.TimeoutException as exc:
            error = f"timeout ({type(exc).__name__}): {exc}"
        except httpx.HTTPError as exc:  # connect errors, dropped connections, protocol errors
            error = f"{type(exc).__name__}: {exc}"
        else:
            return Response(
                status=answer.status_code,
                body=answer.content,
                error=None,
                retry_after=parse_retry_after(answer.headers.get("retry-after"), self._clock()),
                elapsed=time.monotonic() - started,
            )
        return Response(None, b"", scrub(error, secret), None, time.monotonic() - started)

    def close(self) -> None:
        """Close the connections."""
        self._client.close()


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


# --- settling ----------------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    """What a run settled so far (records, except ``requests``)."""

    delivered: int = 0
    dead: int = 0
    retried: int = 0
    requests: int = 0
    dead_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settled:
    """The follow-up of one settle: halves to send next (bisection), or a stop message."""

    followups: list[Batch] = field(default_factory=list)
    stop: str | None = None


def attempt_of(verdict: Verdict, at: float, secret: str) -> Attempt:
    """The outbox's record of one attempt (message scrubbed of the secret)."""
    return Attempt(
        at=at,
        outcome=verdict.outcome.value,
        code=verdict.code,
        http_status=verdict.http_status,
        message=scrub(verdict.message, secret),
        request_id=verdict.request_id,
    )


def classify_response(
    classify: ClassifyFn, response: Response, batch_size: int, secret: str = ""
) -> Verdict:
    """Classify ``response``; a ``Retry-After`` header fills a verdict that has none.

    The one place a verdict is made from an answer: ``secret`` (the access token) is
    masked here, in any case, in the message, reason and request id, so every outbox
    backend, log line and printer only ever receives masked text.
    """
    verdict = classify(response.status, response.body, response.error, batch_size)
    if verdict is None:
        raise RuntimeError("no plugin classified the response (cdp_classify_response gave None)")
    if verdict.retry_after is None and response.retry_after is not None:
        verdict = replace(verdict, retry_after=response.retry_after)
    return masked(verdict, secret)


def halves(batch: Batch) -> list[Batch]:
    """``batch`` split into two batches of (nearly) equal length, sizes kept exact."""
    overhead = batch.size - sum(len(i.body) for i in batch.items) - (len(batch.items) - 1)
    middle = len(batch.items) // 2
    return [
        sub_batch(batch.key, batch.items[:middle], overhead, batch.opened_at),
        sub_batch(batch.key, batch.items[middle:], overhead, batch.opened_at),
    ]


def sub_batch(key: BatchKey, items: list[Item], overhead: int, opened_at: float = 0.0) -> Batch:
    """A batch of ``items`` with its exact joined size."""
    size = overhead + sum(len(i.body) for i in items) + max(0, len(items) - 1)
    return Batch(key, items, size, opened_at)


class Settler:
    """Applies verdicts to the outbox for one worker; one thread only.

    Guarantees (per batch): ``DELIVERED`` marks every record delivered; ``SPLIT`` of more
    than one event returns the two halves to send, of one event dead-letters it with the
    verdict's reason; ``DEAD`` dead-letters the batch; ``RETRY``/``THROTTLED`` schedule a
    retry at a backoff time, except records reaching ``max_attempts`` (dead,
    ``"max_attempts"``) and records that already met the same unknown code
    ``unknown_code_attempts`` times (dead, the verdict's reason); ``STOP`` releases the
    leases without counting an attempt and returns the stop message.
    """

    def __init__(
        self,
        outbox: Outbox,
        worker: str,
        backoff: Backoff,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._worker = worker
        self._backoff = backoff
        self._clock = clock
        self.counters = Counters()
        self.retry_times: list[float] = []  # not_before of every retry scheduled this run

    def settle(self, batch: Batch, verdict: Verdict, max_attempts: int, secret: str) -> Settled:
        """Act on ``verdict`` for ``batch``; see the class docstring."""
        outcome = verdict.outcome
        if outcome is Outcome.DELIVERED:
            attempt = attempt_of(verdict, self._clock(), secret)
            self.counters.delivered += self._outbox.mark_delivered(
                batch.ids, attempt, worker=self._worker
            )
            return Settled()
        if outcome is Outcome.SPLIT and len(batch.items) > 1:
            return Settled(followups=halves(batch))
        if outcome in (Outcome.SPLIT, Outcome.DEAD):
            attempt = attempt_of(verdict, self._clock(), secret)
            self._dead(batch.ids, attempt, verdict.reason)
            return Settled()
        if outcome is Outcome.STOP:
            self.release(batch.items)
            return Settled(stop=_stop_message(batch.key.destination, verdict, secret))
        self._retry(batch, verdict, max_attempts, secret)
        return Settled()

    def _retry(self, batch: Batch, verdict: Verdict, max_attempts: int, secret: str) -> None:
        policy = self._backoff.policy
        now = self._clock()
        attempt = attempt_of(verdict, now, secret)
        unknown = verdict.reason.startswith(UNKNOWN_CODE_PREFIX)
        exhausted: list[int] = []
        unknown_exhausted: list[int] = []
        by_attempt: dict[int, list[int]] = {}
        for item in batch.items:
            record = item.record
            number = record.attempts + 1
            if number >= max_attempts:
                exhausted.append(record.id)
            elif (
                unknown and _seen(record.history, verdict.code) + 1 >= policy.unknown_code_attempts
            ):
                unknown_exhausted.append(record.id)
            else:
                by_attempt.setdefault(number, []).append(record.id)
        if exhausted:
            self._dead(exhausted, attempt, REASON_MAX_ATTEMPTS)
        if unknown_exhausted:
            self._dead(unknown_exhausted, attempt, verdict.reason)
        for number, ids in by_attempt.items():
            not_before = now + self._backoff.delay(number, verdict.retry_after)
            self.counters.retried += self._outbox.mark_retry(
                ids, attempt, not_before, worker=self._worker
            )
            self.retry_times.append(not_before)
        if by_attempt:
            log.info(
                "batch of %d for %s: %s (%s); retrying later",
                len(batch.items),
                batch.key.destination,
                verdict.reason,
                scrub(verdict.message, secret)[:200],
            )

    def _dead(self, ids: list[int], attempt: Attempt | None, reason: str) -> None:
        moved = self._outbox.mark_dead(ids, attempt, reason, worker=self._worker)
        self.counters.dead += moved
        self.counters.dead_reasons[reason] = self.counters.dead_reasons.get(reason, 0) + moved
        log.warning("%d event(s) dead-lettered: %s", moved, reason)

    def too_large(self, items: Sequence[Item], max_bytes: int) -> None:
        """Dead-letter events that cannot fit in a request even alone (``"too_large"``)."""
        now = self._clock()
        for item in items:
            attempt = Attempt(
                at=now,
                outcome=Outcome.DEAD.value,
                message=f"encoded event is {len(item.body)} bytes; the request cap "
                f"(batch_max_bytes) is {max_bytes} bytes including the envelope",
            )
            self._dead([item.record.id], attempt, REASON_TOO_LARGE)

    def exhausted(self, items: Sequence[Item]) -> None:
        """Dead-letter records whose attempts already reached ``max_attempts``."""
        if items:
            self._dead([i.record.id for i in items], None, REASON_MAX_ATTEMPTS)

    def release(self, items: Sequence[Item]) -> None:
        """Give the leases of ``items`` back without counting an attempt."""
        if items:
            self._outbox.release([i.record.id for i in items], worker=self._worker)


def _seen(history: Sequence[Attempt], code: int | None) -> int:
    return sum(1 for attempt in history if attempt.code == code)


def _stop_message(destination: str, verdict: Verdict, secret: str) -> str:
    code = f"TikTok code {verdict.code}" if verdict.code is not None else "no TikTok code"
    status = f", HTTP {verdict.http_status}" if verdict.http_status is not None else ""
    request = f", request_id {verdict.request_id}" if verdict.request_id else ""
    message = scrub(verdict.message, secret) or verdict.reason
    return (
        f"destination {destination!r} stopped ({verdict.reason}): {code}{status}: {message}"
        f"{request}. Its events are kept in the outbox; fix the access token or its "
        f"permissions on the event source, then send again."
    )

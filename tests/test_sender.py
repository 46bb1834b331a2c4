"""Classification-driven delivery actions, with httpx.MockTransport standing in for TikTok.

The outbox is the real in-memory backend; time is a fake clock that moves when the
deliverer sleeps, so backoff schedules are observable without waiting.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cdp_tiktok.delivery.memory_outbox import MemoryOutbox
from cdp_tiktok.delivery.plugin import DeliveryPlugin
from cdp_tiktok.delivery.retry import RetryPolicy
from cdp_tiktok.delivery.worker import Deliverer, DeliveryProgress, DeliveryReport
from cdp_tiktok.events import OutgoingEvent
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH
from tests.helpers_delivery import (
    DESTINATION,
    TOKEN,
    FakeClock,
    key_for,
    mapped_event,
    outgoing,
    settings_for,
)

Handler = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "message": "OK", "request_id": "r-ok"})


def tiktok(code: int, message: str = "") -> httpx.Response:
    return httpx.Response(200, json={"code": code, "message": message, "request_id": f"r-{code}"})


class Recorder:
    """Wraps a handler; remembers every request (time on the fake clock, body, headers)."""

    def __init__(self, handler: Handler, clock: FakeClock) -> None:
        self.handler = handler
        self.clock = clock
        self.requests: list[tuple[float, dict[str, Any], httpx.Headers, httpx.URL]] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(
                (self.clock(), json.loads(request.content), request.headers, request.url)
            )
        return self.handler(request)

    def event_ids(self) -> list[str]:
        return [e["event_id"] for _, body, _, _ in self.requests for e in body["data"]]


def deliver(
    events: list[OutgoingEvent],
    handler: Handler,
    *,
    settings: dict[str, TikTokSettings] | None = None,
    retry: RetryPolicy | None = None,
    outbox: MemoryOutbox | None = None,
    **kwargs: Any,
) -> tuple[DeliveryReport, MemoryOutbox, Recorder, FakeClock]:
    clock = FakeClock()
    outbox = outbox or MemoryOutbox()
    outbox.enqueue(events, now=clock())
    recorder = Recorder(handler, clock)
    deliverer = Deliverer(
        outbox,
        settings or {DESTINATION: settings_for()},
        transport=httpx.MockTransport(recorder),
        clock=clock,
        sleep=clock.sleep,
        retry_policy=retry or RetryPolicy(base_delay=1.0, max_delay=8.0),
        **kwargs,
    )
    report = deliverer.run(drain=True)
    return report, outbox, recorder, clock


def test_delivers_every_event_with_the_token_header_and_tiktok_envelope() -> None:
    report, outbox, recorder, _ = deliver(outgoing(2500), ok)
    assert report.delivered == 2500 and report.dead == 0 and report.retried == 0
    assert report.requests == 3
    assert sorted(len(body["data"]) for _, body, _, _ in recorder.requests) == [500, 1000, 1000]
    assert sorted(recorder.event_ids()) == sorted(f"evt-{i:07d}" for i in range(2500))
    for _, body, headers, url in recorder.requests:
        assert headers["Access-Token"] == TOKEN
        assert headers["Content-Type"] == "application/json"
        assert url.path == ENDPOINT_PATH
        assert body["event_source"] == "web" and body["partner_name"] == "cdp_tiktok"
    stats = outbox.stats()
    assert (stats.pending, stats.leased, stats.delivered, stats.dead) == (0, 0, 2500, 0)


def test_byte_cap_is_never_exceeded_and_oversized_events_are_dead_lettered() -> None:
    events = outgoing(300)
    events.append(OutgoingEvent(key_for(), mapped_event(999, pad=20_000)))
    settings = {DESTINATION: settings_for(batch_max_bytes=12_000)}
    clock = FakeClock()
    outbox = MemoryOutbox()
    outbox.enqueue(events, now=clock())
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(request.content))
        return ok(request)

    report = Deliverer(
        outbox, settings, transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep
    ).run()
    assert report.delivered == 300 and report.dead == 1
    assert max(sizes) <= 12_000 and len(sizes) > 1
    [letter] = list(outbox.dead_letters())
    assert letter.reason == "too_large" and letter.event_id == "evt-0000999"
    assert "12000" in letter.history[-1].message


def test_gateway_errors_are_retried_with_backoff_then_delivered() -> None:
    answers = iter([httpx.Response(502, text="<html>Bad Gateway</html>"), tiktok(50001, "busy")])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or ok(request)

    report, outbox, recorder, _ = deliver(outgoing(10), handler)
    assert report.delivered == 10 and report.retried == 20 and report.dead == 0
    times = [at for at, _, _, _ in recorder.requests]
    assert len(times) == 3
    # full jitter: each wait is within [0, base * 2**(attempt-1)]
    assert 0 <= times[1] - times[0] <= 1.0 + 1e-6
    assert 0 <= times[2] - times[1] <= 2.0 + 1e-6
    assert outbox.stats().delivered == 10


def test_retry_after_header_is_honoured() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "30"}, text="slow down")])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or ok(request)

    report, _, recorder, _ = deliver(outgoing(5), handler)
    assert report.delivered == 5 and report.retried == 5
    first, second = (at for at, _, _, _ in recorder.requests)
    assert second - first >= 30.0


def test_throttled_code_is_retried_and_never_counted_delivered() -> None:
    answers = iter([tiktok(40100, "Too many requests")] * 3)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or ok(request)

    report, _, recorder, _ = deliver(outgoing(7), handler)
    assert len(recorder.requests) == 4
    assert report.delivered == 7 and report.retried == 21


def test_max_attempts_dead_letters_with_full_history() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="unavailable")

    settings = {DESTINATION: settings_for(max_attempts=3)}
    report, outbox, recorder, _ = deliver(outgoing(4), handler, settings=settings)
    assert report.delivered == 0 and report.dead == 4 and report.retried == 8
    assert len(recorder.requests) == 3
    letters = list(outbox.dead_letters())
    assert {letter.reason for letter in letters} == {"max_attempts"}
    assert all(len(letter.history) == 3 for letter in letters)
    assert all(a.http_status == 503 for letter in letters for a in letter.history)


def test_unknown_code_is_retried_a_bounded_number_of_times() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return tiktok(41234, "Something new")

    retry = RetryPolicy(base_delay=0.1, max_delay=1.0, unknown_code_attempts=5)
    report, outbox, recorder, _ = deliver(outgoing(3), handler, retry=retry)
    assert len(recorder.requests) == 5
    assert report.dead == 3 and report.delivered == 0
    letters = list(outbox.dead_letters())
    assert all(letter.reason.startswith("unknown_code") for letter in letters)
    assert all(len(letter.history) == 5 for letter in letters)
    assert letters[0].history[-1].message == "Something new"


def test_a_non_json_200_is_not_delivered() -> None:
    answers = iter([httpx.Response(200, text="<html>maintenance</html>")])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or ok(request)

    report, _, recorder, _ = deliver(outgoing(2), handler)
    assert len(recorder.requests) == 2 and report.retried == 2 and report.delivered == 2


def test_permanent_http_4xx_dead_letters_the_batch() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="no such route")

    report, outbox, recorder, _ = deliver(outgoing(6), handler)
    assert len(recorder.requests) == 1 and report.dead == 6
    assert {letter.reason for letter in outbox.dead_letters()} == {"http_4xx"}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "ConnectError"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "Server"),
    ],
)
def test_transport_errors_are_retried(error: Exception, expected: str) -> None:
    failures = [error]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop()
        return ok(request)

    clock = FakeClock()
    outbox = MemoryOutbox()
    outbox.enqueue(outgoing(3), now=clock())
    settings = {DESTINATION: settings_for(max_attempts=1)}  # dead on the first failure
    report = Deliverer(
        outbox, settings, transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep
    ).run()
    assert report.dead == 3
    [attempt] = next(iter(outbox.dead_letters())).history
    assert attempt.outcome == "retry" and attempt.http_status is None
    assert expected in attempt.message

    def always(request: httpx.Request) -> httpx.Response:
        raise error

    report, outbox, _, _ = deliver(outgoing(3), always)
    assert report.delivered == 0 and report.dead == 3
    assert {letter.reason for letter in outbox.dead_letters()} == {"max_attempts"}


def test_stop_on_auth_error_keeps_events_and_other_destinations_continue() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Access-Token"] == "bad-token-for-A":
            return tiktok(40105, f"Access token {request.headers['Access-Token']} is invalid")
        return ok(request)

    settings = {
        "A": settings_for(access_token="bad-token-for-A"),
        "B": settings_for(),
    }
    events = outgoing(1500, key=key_for("A")) + outgoing(700, key=key_for("B"), start=5000)
    report, outbox, recorder, _ = deliver(events, handler, settings=settings)
    assert report.delivered == 700 and report.dead == 0 and report.retried == 0
    assert set(report.stopped) == {"A"}
    message = report.stopped["A"]
    assert "'A'" in message and "40105" in message and "invalid" in message
    assert "bad-token-for-A" not in message
    stats = outbox.stats()
    assert stats.pending == 1500 and stats.leased == 0 and stats.dead == 0
    again = outbox.claim("inspector", 5000, 10.0)
    assert len(again) == 1500 and all(r.attempts == 0 and not r.history for r in again)
    # A stopped at its first answer: only the requests already in flight went out
    to_a = sum(1 for _, _, h, _ in recorder.requests if h["Access-Token"] != TOKEN)
    assert 1 <= to_a <= settings["A"].concurrency


def test_events_of_a_destination_without_settings_are_kept() -> None:
    events = outgoing(5, key=key_for("Unknown")) + outgoing(5)
    report, outbox, _, _ = deliver(events, ok)
    assert report.delivered == 5 and "Unknown" in report.stopped
    assert outbox.stats().pending == 5


def test_token_never_reaches_logs_attempts_or_reports(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls = iter(range(100))

    def handler(request: httpx.Request) -> httpx.Response:
        if next(calls) == 0:
            raise httpx.ConnectError(f"cannot connect with {TOKEN}")
        return tiktok(40001, f"token {TOKEN} has no permission on the pixel")

    settings = {DESTINATION: settings_for(max_attempts=5)}
    report, outbox, recorder, clock = deliver(outgoing(3), handler, settings=settings)
    assert len(recorder.requests) == 2 and report.stopped
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(report) and TOKEN not in str(report.stopped)
    records = outbox.claim("inspector", 10, 10.0, now=clock() + 3600)
    assert records and all(TOKEN not in a.message for r in records for a in r.history)
    assert "***" in records[0].history[0].message


def test_plugin_encoder_and_classifier_give_the_same_requests() -> None:
    plugin = DeliveryPlugin()
    _, _, default, _ = deliver(outgoing(1200), ok)
    report, _, hooked, _ = deliver(
        outgoing(1200), ok, encode=plugin.cdp_encode_batch, classify=plugin.cdp_classify_response
    )
    assert report.delivered == 1200
    assert [b for _, b, _, _ in default.requests] == [b for _, b, _, _ in hooked.requests]


def test_test_event_code_never_shares_a_request_with_live_events() -> None:
    events = outgoing(10) + outgoing(10, key=key_for(test_event_code="TEST123"), start=100)
    report, _, recorder, _ = deliver(events, ok)
    assert report.delivered == 20 and len(recorder.requests) == 2
    codes = {body.get("test_event_code") for _, body, _, _ in recorder.requests}
    assert codes == {None, "TEST123"}


def test_continuous_mode_runs_until_stopped_and_reports_progress() -> None:
    clock = FakeClock()
    outbox = MemoryOutbox()
    outbox.enqueue(outgoing(50), now=clock())
    stop = threading.Event()
    seen: list[DeliveryProgress] = []

    def progress(p: DeliveryProgress) -> None:
        seen.append(p)
        if p.delivered >= 50:
            stop.set()

    deliverer = Deliverer(
        outbox,
        {DESTINATION: settings_for()},
        transport=httpx.MockTransport(ok),
        clock=clock,
        sleep=clock.sleep,
        linger_seconds=0.5,
    )
    report = deliverer.run(drain=False, stop=stop, on_progress=progress)
    assert report.delivered == 50 and report.requests == 1  # lingered into one batch
    assert seen[-1].delivered == 50 and seen[-1].pending == 0
    assert stop.is_set()


def test_a_long_running_worker_tries_a_stopped_destination_again_later() -> None:
    from cdp_tiktok.delivery.worker import STOP_RETRY_SECONDS

    clock = FakeClock()
    outbox = MemoryOutbox()
    outbox.enqueue(outgoing(30), now=clock())
    answers = iter([tiktok(40105, "Access token is invalid")])
    stop = threading.Event()
    stops_seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stops_seen.append(outbox.status()[0].stopped_reason)
        return next(answers, None) or ok(request)  # fixed after the first answer

    def progress(p: DeliveryProgress) -> None:
        if p.delivered >= 30:
            stop.set()

    started = clock()
    report = Deliverer(
        outbox,
        {DESTINATION: settings_for()},
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
    ).run(drain=False, stop=stop, on_progress=progress)
    assert report.delivered == 30 and report.stopped == {}
    assert stops_seen[0] is None and "40105" in (stops_seen[1] or "")  # recorded while stopped
    assert clock() - started >= STOP_RETRY_SECONDS  # not retried at once
    assert outbox.status() == []  # the stop was cleared by the delivery, nothing waits
